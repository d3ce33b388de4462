"""What one protected request costs on Redis, and hostile input under hypothesis."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart
from redis.asyncio.connection import AbstractConnection

from sessionwatch.tokens import CookieSigner
from support.app_factory import make_app

JSON = {"Content-Type": "application/json"}


async def command_counts(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info"}


async def test_a_protected_request_costs_one_redis_round_trip(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(redis_url, key_prefix=key_prefix)
    probe = aioredis.Redis.from_url(redis_url, decode_responses=True)
    sends: list[object] = []
    original = AbstractConnection.send_packed_command

    async def counting(
        self: AbstractConnection, command: object, check_health: bool = True
    ) -> None:
        if self.port == int(redis_url.rsplit(":", 1)[1].split("/")[0]) and not getattr(
            self, "_probe", False
        ):
            sends.append(command)
        await original(self, command, check_health)

    async with app.test_app():
        client = app.test_client()
        token = (await (await client.post("/_sessionwatch/claim", json={})).get_json())["tab"]
        for _ in range(5):
            before = await command_counts(probe)
            monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
            response = await client.post("/transfer", headers={"X-SessionWatch-Tab": token})
            monkeypatch.setattr(AbstractConnection, "send_packed_command", original)
            assert response.status_code == 200
            after = await command_counts(probe)
            assert after["cmdstat_evalsha"] - before.get("cmdstat_evalsha", 0) == 1
            assert len(sends) == 1, sends  # one packet out, one reply: one round trip
            sends.clear()
    await probe.aclose()


@pytest.fixture(name="fuzz_app", scope="module")
async def _fuzz_app() -> AsyncIterator[Quart]:
    app = make_app("memory://")
    async with app.test_app():
        yield app


cookie_text = st.text(alphabet=string.printable + "éü€\u2028", max_size=600)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cookie=cookie_text, token=st.one_of(st.none(), st.text(max_size=200)))
async def test_hostile_cookie_and_token_never_500(cookie: str, token: str | None) -> None:
    app = make_app("memory://")
    async with app.test_app():
        client = app.test_client()
        headers = {"Cookie": f"session={cookie}"}
        if token is not None:
            headers["X-SessionWatch-Tab"] = token
        try:
            response = await client.post("/transfer", headers=headers)
        except (ValueError, UnicodeEncodeError):
            return  # the test client cannot even send it (newline, non-latin-1)
        assert response.status_code in (401, 409)
        assert (
            await client.get("/_sessionwatch/state", headers={"Cookie": f"session={cookie}"})
        ).status_code == 401


@settings(max_examples=200, deadline=None)
@given(token=st.text(max_size=120))
async def test_forged_tokens_on_a_live_session_are_refused(token: str) -> None:
    app = make_app("memory://")
    async with app.test_app():
        client = app.test_client()
        real = (await (await client.post("/_sessionwatch/claim", json={})).get_json())["tab"]
        if token == real:
            return
        try:
            response = await client.post("/transfer", headers={"X-SessionWatch-Tab": token})
        except (ValueError, UnicodeEncodeError):
            return
        assert response.status_code == 409


def test_signer_rejects_everything_but_its_own() -> None:
    signer = CookieSigner(["k" * 32])
    value = signer.sign("A" * 43)
    assert signer.unsign(value) == "A" * 43
    for bad in (
        value[:-1],
        value + "A",
        "A" * 43,
        value.replace(".", ","),
        "\x00" + value,
        "é" + value,
    ):
        assert signer.unsign(bad) is None
