"""Remember-me through every door (docs/policies.md, "Remember-me"): the Quart
extension's cookie and silent restore, forward-auth's ``/verify`` (whose Set-Cookie must
cross the proxy) and the session API's ``login`` with ``remember``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from sessionwatch import Policy
from sessionwatch.service.forward_auth import SET_COOKIE_HEADERS
from support.app_factory import API_KEYS, make_proxy_app
from support.clock import FakeClock
from web.test_sessions_http import cookies_set

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
REMEMBER = "sw_remember"
API = {"Authorization": f"Bearer {API_KEYS[0]}"}
IDLE = 30 * 60


@pytest.fixture(name="app")
async def _app(backend_url: str, key_prefix: str, clock: FakeClock) -> AsyncIterator[Quart]:
    app = make_proxy_app(
        backend_url, key_prefix=key_prefix, clock=clock, policy=Policy(), forward_auth="nginx"
    )
    async with app.test_app():
        yield app


async def remembered_login(client: QuartClient, user: str = "ana", **options: Any) -> str:
    response = await client.post(
        "/login", json={"user": user, "remember": True}, headers={"User-Agent": CHROME}, **options
    )
    assert response.status_code == 200
    morsel, _ = cookies_set(response)[REMEMBER if not options else "__Host-" + REMEMBER]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/"
    assert int(morsel["max-age"]) == 30 * 86_400 and morsel["secure"]
    return str(morsel.value)


def restarted(app: Quart, remember: str) -> QuartClient:
    """A browser after a restart: its session cookie is gone, the remember cookie kept."""
    client = app.test_client()
    client.set_cookie("localhost", REMEMBER, remember)
    return client


async def test_the_remember_cookie_has_its_own_name_and_the_host_prefix_over_https(
    app: Quart,
) -> None:
    await remembered_login(app.test_client(), scheme="https")


async def test_a_restarted_browser_is_signed_in_again_silently(
    app: Quart, clock: FakeClock
) -> None:
    remember = await remembered_login(app.test_client())
    clock.advance(IDLE + 1)  # the session ends while the browser is closed
    client = restarted(app, remember)
    response = await client.get("/data", headers={"User-Agent": CHROME})
    assert response.status_code == 200
    cookies = cookies_set(response)
    assert "session" in cookies and cookies[REMEMBER][0].value not in ("", remember)
    claim = await client.post("/_sessionwatch/claim", json={}, headers={"User-Agent": CHROME})
    assert (await claim.get_json())["user"] == "ana"


async def test_logout_clears_the_remember_cookie_and_ends_its_family(app: Quart) -> None:
    client = app.test_client()
    remember = await remembered_login(client)
    response = await client.post("/logout")
    assert cookies_set(response)[REMEMBER][0].value == ""
    after = await restarted(app, remember).get("/data")
    assert "session" not in cookies_set(after) and cookies_set(after)[REMEMBER][0].value == ""


async def test_signing_in_without_remember_clears_the_old_remember_cookie(app: Quart) -> None:
    client = app.test_client()
    remember = await remembered_login(client)
    response = await client.post("/login", json={"user": "ana"})
    assert cookies_set(response)[REMEMBER][0].value == ""
    after = await restarted(app, remember).get("/data")
    assert "session" not in cookies_set(after)


async def test_sign_out_other_sessions_ends_another_browsers_remember_me(
    app: Quart, clock: FakeClock
) -> None:
    remember = await remembered_login(app.test_client())
    other = app.test_client()
    await other.post("/login", json={"user": "ana"})
    tab = (await (await other.post("/_sessionwatch/claim", json={})).get_json())["tab"]
    response = await other.post(
        "/_sessionwatch/sessions/revoke-others", headers={"X-SessionWatch-Tab": tab}
    )
    assert response.status_code == 200, await response.get_data()
    clock.advance(IDLE + 1)
    after = await restarted(app, remember).get("/data")
    assert "session" not in cookies_set(after)


async def test_verify_restores_and_hands_the_cookies_to_the_proxy(
    app: Quart, clock: FakeClock
) -> None:
    """A request through the proxy with only the remember cookie gets a new session:
    /verify passes it and names both cookies in headers nginx can relay one by one."""
    remember = await remembered_login(app.test_client())
    clock.advance(IDLE + 1)
    client = restarted(app, remember)
    headers = {"X-Original-Method": "GET", "X-Original-URI": "/page", "User-Agent": CHROME}
    response = await client.get("/_sessionwatch/verify?require=session", headers=headers)
    assert response.status_code == 204
    assert response.headers["X-SessionWatch-User"] == "ana"
    relayed = response.headers[SET_COOKIE_HEADERS["session"]]
    assert relayed.startswith("session=") and relayed in response.headers.getlist("Set-Cookie")
    rotated = response.headers[SET_COOKIE_HEADERS["remember"]]
    assert rotated.startswith(REMEMBER + "=") and remember not in rotated
    # The browser took the cookies: the next verification is a plain session one.
    again = await client.get("/_sessionwatch/verify?require=session", headers=headers)
    assert again.status_code == 204 and again.headers[SET_COOKIE_HEADERS["session"]] == ""


async def test_a_reused_token_through_verify_is_refused_and_cleared(
    app: Quart, clock: FakeClock
) -> None:
    remember = await remembered_login(app.test_client())
    clock.advance(IDLE + 1)
    headers = {"X-Original-Method": "GET", "X-Original-URI": "/page"}
    owner = await restarted(app, remember).get("/_sessionwatch/verify", headers=headers)
    assert owner.status_code == 204
    clock.advance(60)  # past the grace window
    thief = await restarted(app, remember).get("/_sessionwatch/verify", headers=headers)
    assert thief.status_code == 401
    assert thief.headers[SET_COOKIE_HEADERS["remember"]].startswith(REMEMBER + "=;")


async def api_login(client: QuartClient, user: str) -> dict[str, Any]:
    """The session API's ``login`` with ``remember``: its answer."""
    response = await client.post(
        "/_sessionwatch/api/v1/login", json={"user": user, "remember": True}, headers=API
    )
    assert response.status_code == 200, await response.get_data()
    return dict(await response.get_json())


async def test_the_session_api_login_answers_a_remember_cookie(
    app: Quart, clock: FakeClock
) -> None:
    client = app.test_client()
    body = await api_login(client, "bo")
    cookie = body["remember_cookie"]
    assert cookie["name"] == REMEMBER and cookie["value"]
    assert "HttpOnly" in cookie["set_cookie"] and "Max-Age=2592000" in cookie["set_cookie"]
    clock.advance(IDLE + 1)
    headers = {"X-Original-Method": "GET", "X-Original-URI": "/"}
    verified = await restarted(app, cookie["value"]).get("/_sessionwatch/verify", headers=headers)
    assert verified.status_code == 204 and verified.headers["X-SessionWatch-User"] == "bo"
    plain = await client.post("/_sessionwatch/api/v1/login", json={"user": "bo"}, headers=API)
    assert (await plain.get_json())["remember_cookie"]["value"] == ""


@pytest.mark.parametrize("first", ["/_sessionwatch/claim", "/_sessionwatch/state"])
async def test_the_raw_paths_leave_a_restore_to_quart(
    app: Quart, clock: FakeClock, first: str
) -> None:
    """The claim and the state (answered on raw ASGI, rawhttp.py) as the first request
    after a restart: the remember cookie still restores, as Quart's session opening does."""
    remember = await remembered_login(app.test_client())
    clock.advance(IDLE + 1)
    client = restarted(app, remember)
    if first.endswith("claim"):
        response = await client.post(first, json={}, headers={"User-Agent": CHROME})
    else:
        response = await client.get(first, headers={"User-Agent": CHROME})
    assert response.status_code == 200, await response.get_data()
    assert (await response.get_json())["user"] == "ana"
    assert "session" in cookies_set(response)


async def test_the_session_api_logout_clears_and_ends_the_remember_me(
    app: Quart, clock: FakeClock
) -> None:
    client = app.test_client()
    body = await api_login(client, "cy")
    cookie = f"{body['cookie']['name']}={body['cookie']['value']}"
    logout = await client.post("/_sessionwatch/api/v1/logout", json={"cookie": cookie}, headers=API)
    answer = await logout.get_json()
    assert answer["logged_out"] and answer["remember_cookie"]["value"] == ""
    assert "Max-Age=0" in answer["remember_cookie"]["set_cookie"]
    clock.advance(IDLE + 1)
    headers = {"X-Original-Method": "GET", "X-Original-URI": "/"}
    after = await restarted(app, body["remember_cookie"]["value"]).get(
        "/_sessionwatch/verify", headers=headers
    )
    assert after.status_code == 401
