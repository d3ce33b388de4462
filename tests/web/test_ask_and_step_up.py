"""``on_limit="ask"`` and step-up through a real Quart app, on memory and Redis: the
chooser's answer at the limit, ``watch.complete_login`` with the user's choice, the
refusals of a replayed, expired, foreign or unknown pending sign-in, and
``@watch.recent_login_required`` with ``watch.reauthenticated()``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from sessionwatch import Policy
from sessionwatch.core.exceptions import ConfigurationError
from support.app_factory import make_app, watch_of
from support.clock import FakeClock
from web.test_sessions_http import CHROME, FIREFOX, claim, cookie_value, login, transfer

ASK = Policy(sessions_per_user=2, on_limit="ask")
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15"
)


@pytest.fixture(name="app")
async def _app(backend_url: str, key_prefix: str, clock: FakeClock) -> AsyncIterator[Quart]:
    app = make_app(
        backend_url, key_prefix=key_prefix, clock=clock, policy=ASK, reauth_url="/confirm"
    )
    async with app.test_app():
        yield app


async def state(client: QuartClient) -> dict[str, Any]:
    body: dict[str, Any] = await (await client.get("/_sessionwatch/state")).get_json()
    return body


async def complete(client: QuartClient, pending: Any, evict: list[str]) -> Any:
    return await client.post("/complete-login", json={"pending": pending, "evict": evict})


async def at_the_limit(
    app: Quart, clock: FakeClock
) -> tuple[QuartClient, QuartClient, QuartClient, dict[str, Any]]:
    """Two devices signed in, a third asked to choose: the three clients and the 409."""
    first, second, third = app.test_client(), app.test_client(), app.test_client()
    await login(first, "ivy", CHROME)
    clock.advance(1)
    await login(second, "ivy", FIREFOX)
    asked = await login(third, "ivy", SAFARI)
    assert asked.status_code == 409
    return first, second, third, await asked.get_json()


async def test_at_the_limit_the_sign_in_asks_and_the_choice_evicts_exactly_it(
    app: Quart, clock: FakeClock
) -> None:
    first, second, third, asked = await at_the_limit(app, clock)
    assert asked["error"] == "session_choice_required" and asked["limit"] == 2
    assert [s["browser"] for s in asked["sessions"]] == ["Chrome 120", "Firefox Mobile 121"]
    assert asked["expires_at"] == int(clock() * 1000) + 300_000
    anonymous = await state(third)
    assert anonymous["user"] is None  # neither evicted nor signed in: still anonymous
    first_tab = (await claim(first))["tab"]
    second_tab = (await claim(second))["tab"]
    chosen = asked["sessions"][1]["id"]  # the newer one: not what evict_oldest would take
    done = await complete(third, asked["pending"], [chosen])
    assert done.status_code == 200 and (await done.get_json())["evicted"] == [chosen]
    signed_in = await state(third)
    assert signed_in["user"] == "ivy" and signed_in["session"] != anonymous["session"]
    refused = await transfer(second, second_tab)
    assert refused.status_code == 401 and (await refused.get_json())["reason"] == "evicted"
    assert (await transfer(first, first_tab)).status_code == 200


async def test_a_pending_sign_in_is_single_use_bound_to_its_browser_and_short_lived(
    app: Quart, clock: FakeClock
) -> None:
    first, _, third, asked = await at_the_limit(app, clock)
    pending, oldest = asked["pending"], asked["sessions"][0]["id"]

    async def refused(client: QuartClient, token: Any) -> tuple[int, str]:
        response = await complete(client, token, [oldest])
        return response.status_code, (await response.get_json())["error"]

    assert await refused(app.test_client(), pending) == (403, "pending_login_foreign")
    assert await refused(first, pending) == (403, "pending_login_foreign")
    for garbage in ("nope", None, 42, pending[:-1] + ("A" if pending[-1] != "A" else "B")):
        assert await refused(third, garbage) == (400, "pending_login_unknown")
    assert (await state(third))["user"] is None  # nothing changed
    assert (await complete(third, pending, [oldest])).status_code == 200
    assert await refused(third, pending) == (409, "pending_login_used")  # a replay
    # Another browser at the limit waits too long.
    late = app.test_client()
    token = (await (await login(late, "ivy")).get_json())["pending"]
    clock.advance(301)
    assert await refused(late, token) == (410, "pending_login_expired")


async def test_a_choice_overtaken_by_a_new_sign_in_asks_again(app: Quart, clock: FakeClock) -> None:
    """The limit is checked again at completion: a device that signed in meanwhile
    (through the ceiling, or an admin) means one choice is no longer enough; the
    same pending sign-in is answered with the sessions as they are now."""
    *_, third, asked = await at_the_limit(app, clock)
    watch = watch_of(app)
    watch.policy = Policy(sessions_per_user=3, on_limit="ask")
    await login(app.test_client(), "ivy")  # a third session
    watch.policy = ASK
    again = await complete(third, asked["pending"], [asked["sessions"][0]["id"]])
    body = await again.get_json()
    assert again.status_code == 409 and body["error"] == "session_choice_required"
    assert body["pending"] == asked["pending"] and len(body["sessions"]) == 3
    assert len((await watch.list_sessions("ivy")).sessions) == 3  # nothing changed
    ids = [s["id"] for s in body["sessions"][:2]]
    assert (await complete(third, body["pending"], ids)).status_code == 200


async def test_step_up_asks_for_a_recent_sign_in_and_reauthenticated_renews_it(
    app: Quart, clock: FakeClock
) -> None:
    client = app.test_client()
    assert (await client.post("/sensitive")).status_code == 401  # no session
    await claim(client)
    anonymous = await client.post("/sensitive")
    assert (await anonymous.get_json())["error"] == "not_signed_in"
    await login(client, "kit")
    token = (await claim(client))["tab"]
    assert (await client.post("/sensitive")).status_code == 200
    clock.advance(301)
    stale = await client.post("/sensitive")
    assert stale.status_code == 401
    assert await stale.get_json() == {
        "error": "reauth_required",
        "message": "Confirm it's you: enter your password again.",
        "max_age": 300,
    }
    navigation = await client.post("/sensitive?x=1", headers={"Sec-Fetch-Mode": "navigate"})
    assert navigation.status_code == 303
    assert navigation.headers["Location"] == "/confirm?next=/sensitive%3Fx%3D1"
    cookie = cookie_value(client)
    assert (await client.post("/reauth")).status_code == 200
    assert (await client.post("/sensitive")).status_code == 200
    # Nothing else changed: the same session cookie, the same tab token.
    assert cookie_value(client) == cookie
    assert (await transfer(client, token)).status_code == 200
    clock.advance(301)
    assert (await client.post("/sensitive")).status_code == 401


@pytest.mark.parametrize("bad", [0, -1, 86_401, 1.5, "300s", " 300", True, None])
def test_a_bad_step_up_window_is_refused_when_the_route_is_declared(bad: Any) -> None:
    watch = watch_of(make_app("memory://"))
    with pytest.raises(ConfigurationError):
        watch.recent_login_required(max_age=bad)


@pytest.mark.parametrize("bad", ["//evil.example/x", "https://evil.example/", "/\\evil"])
def test_a_reauth_url_off_the_site_is_refused(bad: str) -> None:
    watch = watch_of(make_app("memory://"))
    with pytest.raises(ConfigurationError):
        watch.recent_login_required(max_age=60, reauth_url=bad)
    with pytest.raises(ConfigurationError):
        make_app("memory://", reauth_url=bad)
