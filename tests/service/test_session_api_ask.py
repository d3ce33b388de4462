"""The session API's part of ``on_limit="ask"`` and step-up: ``login`` at the limit
answers the chooser's 409 with a pending sign-in bound to the browser's session,
``complete-login`` applies the choice, ``reauthenticated`` renews the sign-in time that
``/verify?max_age=`` checks (docs/any-stack.md)."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from service.test_session_api import (  # noqa: F401 (_app: the fixture)
    CHROME,
    FIREFOX,
    NGINX_GET,
    _app,
    api,
    cookie_header,
    login,
)
from sessionwatch import Policy
from support.clock import FakeClock


async def browser_cookie(app: Quart) -> str:
    """A browser's anonymous session, as its Cookie header."""
    client = app.test_client()
    await client.post("/_sessionwatch/claim", json={})
    assert client.cookie_jar is not None
    (cookie,) = [c for c in client.cookie_jar if c.name == "session"]
    return f"session={cookie.value}"


async def verify_recent(app: Quart, cookie: str, max_age: int) -> int:
    response = await app.test_client().get(
        f"/_sessionwatch/verify?max_age={max_age}", headers={**NGINX_GET, "Cookie": cookie}
    )
    return int(response.status_code)


@pytest.mark.parametrize("app", [Policy(sessions_per_user=2, on_limit="ask")], indirect=True)
async def test_login_at_the_limit_asks_and_complete_login_applies_the_choice(
    app: Quart, clock: FakeClock
) -> None:
    first = await login(app, "alice", user_agent=CHROME)
    clock.advance(1)
    second = await login(app, "alice", user_agent=FIREFOX)
    cookie = await browser_cookie(app)
    asked = await api(app, "/login", {"user": "alice", "cookie": cookie})
    body: dict[str, Any] = await asked.get_json()
    assert asked.status_code == 409 and body["error"] == "session_choice_required"
    assert [s["id"] for s in body["sessions"]] == [first["session"], second["session"]]
    choice = {"pending": body["pending"], "evict": [second["session"]]}
    foreign = await api(app, "/complete-login", {**choice, "cookie": await browser_cookie(app)})
    assert foreign.status_code == 403
    assert (await foreign.get_json())["error"] == "pending_login_foreign"
    bad = await api(app, "/complete-login", {**choice, "evict": "all", "cookie": cookie})
    assert bad.status_code == 400
    done = await api(app, "/complete-login", {**choice, "cookie": cookie})
    result = await done.get_json()
    assert done.status_code == 200 and result["evicted"] == [second["session"]]
    assert result["user"] == "alice" and result["rotated_from"] is not None
    assert await verify_recent(app, cookie_header(result), 300) == 204
    assert await verify_recent(app, cookie_header(second), 300) == 401
    assert await verify_recent(app, cookie_header(first), 300) == 204
    replay = await api(app, "/complete-login", {**choice, "cookie": cookie})
    assert replay.status_code == 409
    assert (await replay.get_json())["error"] == "pending_login_used"


async def test_reauthenticated_renews_the_sign_in_time_for_step_up(
    app: Quart, clock: FakeClock
) -> None:
    result = await login(app, "alice")
    cookie = cookie_header(result)
    clock.advance(301)
    assert await verify_recent(app, cookie, 300) == 401
    renewed = await api(app, "/reauthenticated", {"cookie": cookie})
    assert renewed.status_code == 200
    assert await renewed.get_json() == {"session": result["session"], "user": "alice"}
    assert await verify_recent(app, cookie, 300) == 204  # the same cookie: nothing rotated
    anonymous = await api(app, "/reauthenticated", {"cookie": await browser_cookie(app)})
    assert anonymous.status_code == 404
