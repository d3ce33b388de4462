"""What one protected request costs on Redis, and hostile input under hypothesis."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator, Awaitable

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart, Response, session
from redis.asyncio.connection import AbstractConnection

from sessionwatch.backends.multiplex import _Link
from sessionwatch.core.tokens import CookieSigner
from support.app_factory import make_app

JSON = {"Content-Type": "application/json"}


async def command_counts(client: aioredis.Redis) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items() if name != "cmdstat_info"}


class RoundTrips:
    """Counts what requests send to Redis: ``EVALSHA`` calls (``INFO commandstats``)
    and packets written by the app's connections — the pool's and the pipelined script
    connection's (a probe client reads the stats)."""

    def __init__(self, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self._port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        self._probe = aioredis.Redis.from_url(redis_url, decode_responses=True)
        self._monkeypatch = monkeypatch
        self.sends: list[object] = []

    async def _evalsha(self) -> int:
        stats = await command_counts(self._probe)
        return stats.get("cmdstat_evalsha", 0)

    async def count(self, request: Awaitable[Response]) -> tuple[Response, int, int]:
        """Send ``request``; returns it with the EVALSHA calls and packets it cost."""
        original = AbstractConnection.send_packed_command
        sends: list[object] = []
        port = self._port

        original_flush = _Link.flush

        async def counting(
            connection: AbstractConnection, command: object, check_health: bool = True
        ) -> None:
            if connection.port == port:
                sends.append(command)
            await original(connection, command, check_health)

        def counting_flush(link: _Link) -> None:
            if link.unsent and link.connection.port == port:
                sends.append(b"".join(link.unsent))
            original_flush(link)

        before = await self._evalsha()
        self._monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
        self._monkeypatch.setattr(_Link, "flush", counting_flush)
        try:
            response = await request
        finally:
            self._monkeypatch.setattr(AbstractConnection, "send_packed_command", original)
            self._monkeypatch.setattr(_Link, "flush", original_flush)
        return response, await self._evalsha() - before, len(sends)

    async def aclose(self) -> None:
        await self._probe.aclose()


@pytest.fixture(name="round_trips")
async def _round_trips(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RoundTrips]:
    counter = RoundTrips(redis_url, monkeypatch)
    yield counter
    await counter.aclose()


async def test_a_protected_request_costs_one_redis_round_trip(
    redis_url: str, key_prefix: str, round_trips: RoundTrips
) -> None:
    app = make_app(redis_url, key_prefix=key_prefix)
    async with app.test_app():
        client = app.test_client()
        token = (await (await client.post("/_sessionwatch/claim", json={})).get_json())["tab"]
        for _ in range(5):
            response, evalsha, packets = await round_trips.count(
                client.post("/transfer", headers={"X-SessionWatch-Tab": token})
            )
            assert response.status_code == 200
            assert (evalsha, packets) == (1, 1)  # one packet out, one reply: one round trip


async def test_a_claim_loads_the_session_itself_unless_a_hook_could_read_it_first(
    redis_url: str, key_prefix: str, round_trips: RoundTrips
) -> None:
    app = make_app(redis_url, key_prefix=key_prefix)
    async with app.test_app():
        client = app.test_client()
        await client.post("/login", form={"user": "ann"})
        for _ in range(3):
            response, evalsha, packets = await round_trips.count(
                client.post("/_sessionwatch/claim", json={"x": 1})
            )
            body = await response.get_json()
            assert response.status_code == 200 and body["user"] == "ann"
            assert (evalsha, packets) == (1, 1)
            assert "Set-Cookie" not in response.headers and "Cookie" in response.vary
        response, evalsha, packets = await round_trips.count(
            client.post("/_sessionwatch/claim", data="{}")  # not JSON: refused unclaimed
        )
        assert response.status_code == 415 and (evalsha, packets) == (0, 0)
        assert "Set-Cookie" not in response.headers  # the session is kept, not cleared

    seen: list[object] = []
    hooked = make_app(redis_url, key_prefix=key_prefix)

    @hooked.before_request
    async def who() -> None:
        seen.append(session.get("user"))

    async with hooked.test_app():
        client = hooked.test_client()
        await client.post("/login", form={"user": "bob"})
        response, evalsha, packets = await round_trips.count(
            client.post("/_sessionwatch/claim", json={})
        )
        assert response.status_code == 200 and (await response.get_json())["user"] == "bob"
        assert (evalsha, packets) == (2, 2)  # the load before the hook, then the claim
        assert seen[-1] == "bob"


async def test_a_claim_with_a_cookie_of_an_ended_session_starts_afresh(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(redis_url, key_prefix=key_prefix)
    async with app.test_app():
        client = app.test_client()
        await client.post("/login", form={"user": "ann"})
        first = await (await client.post("/_sessionwatch/claim", json={})).get_json()
        cookie = next(c.value for c in client.cookie_jar if c.name == "session")
        await client.post("/logout")
        caplog.set_level("INFO", "sessionwatch.security")
        response = await app.test_client().post(
            "/_sessionwatch/claim", json={}, headers={"Cookie": f"session={cookie}"}
        )
        body = await response.get_json()
        assert response.status_code == 200
        assert body["session"] != first["session"] and body["user"] is None
        assert "Set-Cookie" in response.headers
        assert any("refused" in r.getMessage() for r in caplog.records)


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
