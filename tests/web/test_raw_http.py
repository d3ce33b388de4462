"""``POST /claim`` and ``GET /state`` on raw ASGI (sessionwatch.web.rawhttp): taken when
the app adds nothing to Quart's handling, left to Quart otherwise, and answering alike
byte for byte (but the random ids) either way."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from quart import Quart, Response
from quart.testing import QuartClient

from sessionwatch import SessionWatch
from support.app_factory import make_app
from support.clock import FakeClock

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
JSON = {"Content-Type": "application/json", "User-Agent": CHROME}
CLAIM = "/_sessionwatch/claim"
STATE = "/_sessionwatch/state"

Scenario = Callable[[QuartClient], Awaitable[list[Any]]]


async def _noop_hook(*args: Any) -> Any:
    return args[0] if args else None


def _fallback_before(app: Quart) -> None:
    app.before_request(_noop_hook)


def _fallback_after(app: Quart) -> None:
    app.after_request(_noop_hook)


def _fallback_blueprint_after(app: Quart) -> None:
    app.after_request_funcs.setdefault("sessionwatch", []).append(_noop_hook)


def _fallback_teardown(app: Quart) -> None:
    app.teardown_request(_noop_hook)


FALLBACKS: dict[str, Callable[[Quart], None]] = {
    "before_request": _fallback_before,
    "after_request": _fallback_after,
    "blueprint_after_request": _fallback_blueprint_after,
    "teardown_request": _fallback_teardown,
}


class Counted:
    """An app whose Quart request handling is counted (``handled``) and whose claims
    are counted by the ``on_claim`` hook (``claims``)."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.handled = 0
        self.claims = 0
        original = app.handle_request

        async def handle_request(request: Any) -> Any:
            self.handled += 1
            return await original(request)

        app.handle_request = handle_request  # type: ignore[method-assign]
        watch: SessionWatch = app.extensions["sessionwatch"]
        watch.on_claim = self._claimed

    def _claimed(self) -> None:
        self.claims += 1


@pytest.fixture(name="make")
async def _make(
    backend_url: str, key_prefix: str, clock: FakeClock
) -> AsyncIterator[Callable[[str | None], Awaitable[Counted]]]:
    apps: list[Quart] = []

    async def make(fallback: str | None) -> Counted:
        app = make_app(
            backend_url,
            key_prefix=f"{key_prefix}{len(apps)}:",
            clock=clock,
            trust_forwarded_for=True,
            max_new_sessions_per_second=0.01,  # one new session per address, then 429
        )
        if fallback is not None:
            FALLBACKS[fallback](app)
        await app.startup()
        apps.append(app)
        return Counted(app)

    yield make
    for app in apps:
        await app.shutdown()


_RANDOM = re.compile(r"[A-Za-z0-9_.\-]{20,}")
_TOKENS = {"set-cookie", "x-sessionwatch-tab"}


async def normalised(response: Response) -> tuple[int, list[tuple[str, str]], Any]:
    """Status, headers in order and body, with the random ids and tokens blanked."""
    headers = [
        (name.lower(), _RANDOM.sub("<random>", value) if name.lower() in _TOKENS else value)
        for name, value in response.headers.items()
    ]
    data = await response.get_data()
    body: Any = data
    if response.mimetype == "application/json":
        body = json.loads(data)
        for key in ("tab", "session"):
            if isinstance(body.get(key), str) and len(body[key]) > 20:
                body[key] = "<random>"
    return response.status_code, headers, body


def cookie(client: QuartClient) -> str:
    assert client.cookie_jar is not None
    return next(c.value for c in client.cookie_jar if c.name == "session")


def replay(client: QuartClient, *values: str) -> None:
    assert client.cookie_jar is not None
    client.cookie_jar.clear()
    for index, value in enumerate(values):  # several copies: distinct paths
        client.set_cookie("localhost", "session", value, path="/" + "x" * index)


async def fresh_claim(client: QuartClient) -> list[Any]:
    return [await client.post(CLAIM, json={}, headers=JSON)]


async def reclaim(client: QuartClient) -> list[Any]:
    first = await client.post(CLAIM, json={}, headers=JSON)
    return [first, await client.post(CLAIM, json={"x": 1}, headers=JSON)]


async def signed_in_claim(client: QuartClient) -> list[Any]:
    await client.post(CLAIM, json={}, headers=JSON)
    login = await client.post("/login", json={"user": "alice"}, headers=JSON)
    return [await client.post(CLAIM, json={}, headers=JSON), login]


async def foreign_origin(client: QuartClient) -> list[Any]:
    headers = {**JSON, "Origin": "https://evil.example"}
    cross = {**JSON, "Sec-Fetch-Site": "cross-site"}
    return [
        await client.post(CLAIM, json={}, headers=headers),
        await client.post(CLAIM, json={}, headers=cross),
    ]


async def own_origin(client: QuartClient) -> list[Any]:
    headers = {**JSON, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    return [await client.post(CLAIM, json={}, headers=headers)]


async def wrong_content_type(client: QuartClient) -> list[Any]:
    await client.post(CLAIM, json={}, headers=JSON)
    return [
        await client.post(CLAIM, data="{}", headers={"Content-Type": "text/plain"}),
        await client.post(CLAIM, data="{}"),
    ]


async def charset_content_type(client: QuartClient) -> list[Any]:
    headers = {"Content-Type": "Application/JSON; charset=utf-8"}
    return [await client.post(CLAIM, data="{}", headers=headers)]


async def bad_json_and_huge_body(client: QuartClient) -> list[Any]:
    huge = b'{"x": "' + b"a" * 200_000 + b'"}'
    client.app.config["MAX_CONTENT_LENGTH"] = 100_000  # the views never read the body
    return [
        await client.post(CLAIM, data="{not json", headers=JSON),
        await client.post(CLAIM, data=huge, headers=JSON),
    ]


async def ended_session(client: QuartClient) -> list[Any]:
    await client.post(CLAIM, json={}, headers=JSON)
    value = cookie(client)
    await client.post("/logout")
    replay(client, value)
    ended_state = await client.get(STATE)
    replay(client, value)
    return [ended_state, await client.post(CLAIM, json={}, headers=JSON)]


async def bad_cookie(client: QuartClient) -> list[Any]:
    replay(client, "not-a-signed-cookie")
    state = await client.get(STATE)
    replay(client, "x" * 600)  # longer than max_cookie_length
    return [state, await client.post(CLAIM, json={}, headers=JSON)]


async def cookie_copies(client: QuartClient) -> list[Any]:
    await client.post(CLAIM, json={}, headers=JSON)
    value = cookie(client)
    replay(client, "tossed-by-a-sibling", value)
    return [await client.post(CLAIM, json={}, headers=JSON), await client.get(STATE)]


async def live_copies(client: QuartClient) -> list[Any]:
    """Copies of two live sessions (issue 22 item 3): 401 cookie_conflict, no cookie."""
    await client.post(CLAIM, json={}, headers=JSON)
    first = cookie(client)
    replay(client)
    await client.post(CLAIM, json={}, headers=JSON)
    second = cookie(client)
    replay(client, first, second)
    return [await client.post(CLAIM, json={}, headers=JSON), await client.get(STATE)]


async def dead_copies(client: QuartClient) -> list[Any]:
    """Several copies, none live: refused, and none of them cleared."""
    await client.post(CLAIM, json={}, headers=JSON)
    value = cookie(client)
    await client.post("/logout")
    replay(client, "tossed-by-a-sibling", value)
    ended_state = await client.get(STATE)
    replay(client, "tossed-by-a-sibling", value)
    return [ended_state, await client.post(CLAIM, json={}, headers=JSON)]


async def state_tabs(client: QuartClient) -> list[Any]:
    no_session = await client.get(STATE)
    old = await (await client.post(CLAIM, json={}, headers=JSON)).get_json()
    new = await (await client.post(CLAIM, json={}, headers=JSON)).get_json()
    return [
        no_session,
        await client.get(STATE, headers={"X-SessionWatch-Tab": new["tab"]}),
        await client.get(STATE, headers={"X-SessionWatch-Tab": old["tab"]}),
        await client.get(STATE, headers={"X-SessionWatch-Tab": "garbage"}),
        await client.get(STATE),
    ]


async def navigation(client: QuartClient) -> list[Any]:
    html = {"Sec-Fetch-Mode": "navigate"}
    return [
        await client.get(STATE, headers=html),
        await client.get(STATE, headers={"Accept": "text/html"}),
    ]


async def wrong_method(client: QuartClient) -> list[Any]:
    return [
        await client.get(CLAIM),
        await client.post(STATE, json={}),
        await client.head(STATE),
        await client.get(CLAIM + "/"),
    ]


async def rate_limited(client: QuartClient) -> list[Any]:
    headers = {**JSON, "X-Forwarded-For": "203.0.113.9"}
    first = await client.post(CLAIM, json={}, headers=headers)
    replay(client)
    return [first, await client.post(CLAIM, json={}, headers=headers)]


SCENARIOS: dict[str, Scenario] = {
    "fresh_claim": fresh_claim,
    "reclaim": reclaim,
    "signed_in_claim": signed_in_claim,
    "foreign_origin": foreign_origin,
    "own_origin": own_origin,
    "wrong_content_type": wrong_content_type,
    "charset_content_type": charset_content_type,
    "bad_json_and_huge_body": bad_json_and_huge_body,
    "ended_session": ended_session,
    "bad_cookie": bad_cookie,
    "cookie_copies": cookie_copies,
    "live_copies": live_copies,
    "dead_copies": dead_copies,
    "state_tabs": state_tabs,
    "navigation": navigation,
    "wrong_method": wrong_method,
    "rate_limited": rate_limited,
}

# Scenarios whose every claim or state request is Quart's even without a hook.
_QUART_ONLY = {"foreign_origin", "wrong_content_type", "navigation", "wrong_method"}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_raw_and_quart_answer_alike(
    make: Callable[[str | None], Awaitable[Counted]], scenario: str
) -> None:
    raw, quart = await make(None), await make("before_request")
    answers = []
    for counted in (raw, quart):
        responses = await SCENARIOS[scenario](counted.app.test_client())
        answers.append([await normalised(response) for response in responses])
    assert answers[0] == answers[1]
    assert raw.claims == quart.claims
    assert quart.handled >= len(answers[1])


@pytest.mark.parametrize("fallback", list(FALLBACKS))
async def test_an_app_hook_sends_every_request_to_quart(
    make: Callable[[str | None], Awaitable[Counted]], fallback: str
) -> None:
    raw, quart = await make(None), await make(fallback)
    for counted in (raw, quart):
        client = counted.app.test_client()
        token = (await (await client.post(CLAIM, json={}, headers=JSON)).get_json())["tab"]
        state = await client.get(STATE, headers={"X-SessionWatch-Tab": token})
        assert (await state.get_json())["tab"] == "active"
    assert raw.handled == 0  # Quart's request handling never entered
    assert quart.handled == 2
    assert raw.claims == quart.claims == 1


async def test_the_raw_path_leaves_other_routes_and_the_test_context_to_quart(
    make: Callable[[str | None], Awaitable[Counted]],
) -> None:
    raw = await make(None)
    client = raw.app.test_client()
    await client.post(CLAIM, json={}, headers=JSON)
    assert raw.handled == 0
    assert (await client.get("/public")).status_code == 200
    assert raw.handled == 1
    async with raw.app.test_client() as keeping:  # keeps the request context
        assert (await keeping.get(STATE)).status_code == 401
    assert raw.handled == 2


@pytest.mark.parametrize("scenario", sorted(set(SCENARIOS) - _QUART_ONLY))
async def test_the_raw_path_serves_the_scenarios(
    make: Callable[[str | None], Awaitable[Counted]], scenario: str
) -> None:
    raw = await make(None)
    responses = await SCENARIOS[scenario](raw.app.test_client())
    # /login, /logout
    served_by_routes = {"signed_in_claim": 1, "ended_session": 1, "dead_copies": 1}
    assert raw.handled == served_by_routes.get(scenario, 0), len(responses)
