"""The session API (``/_sessionwatch/api/v1``) through a real Quart app on every
backend: keys (good, wrong, rotated), bad bodies, login/logout/revoke/sessions, and a
relayed cookie replayed after logout (docs/any-stack.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from sessionwatch import Policy
from support.app_factory import API_KEYS, make_proxy_app
from support.clock import FakeClock

API = "/_sessionwatch/api/v1"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"
NGINX_GET = {"X-Original-Method": "GET", "X-Original-URI": "/"}


def auth(key: str = API_KEYS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(name="app")
async def _app(
    backend_url: str, key_prefix: str, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[Quart]:
    """The app; ``parametrize("app", [Policy(...)], indirect=True)`` sets its policy."""
    policy = getattr(request, "param", None) or Policy()
    app = make_proxy_app(backend_url, key_prefix=key_prefix, clock=clock, policy=policy)
    async with app.test_app():
        yield app


async def api(app: Quart, path: str, body: Any = None, *, key: str = API_KEYS[0]) -> Any:
    client = app.test_client()
    if body is None:
        return await client.get(API + path, headers=auth(key))
    return await client.post(API + path, json=body, headers=auth(key))


async def login(app: Quart, user: str, **fields: Any) -> dict[str, Any]:
    response = await api(app, "/login", {"user": user, **fields})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def verify_with(app: Quart, cookie: str) -> int:
    """What forward-auth says about a browser presenting ``cookie`` (a Cookie header)."""
    client = app.test_client()
    response = await client.get("/_sessionwatch/verify", headers={**NGINX_GET, "Cookie": cookie})
    return int(response.status_code)


def cookie_header(result: dict[str, Any]) -> str:
    cookie = result["cookie"]
    return f"{cookie['name']}={cookie['value']}"


async def test_both_keys_work_and_a_removed_key_is_refused(
    app: Quart, key_prefix: str, backend_url: str
) -> None:
    for key in API_KEYS:  # rotation: old and new are accepted side by side
        assert (await api(app, "/sessions?user=alice", key=key)).status_code == 200
    rotated = make_proxy_app(backend_url, key_prefix=key_prefix, api_keys=API_KEYS[1:])
    async with rotated.test_app():
        assert (await api(rotated, "/sessions?user=alice", key=API_KEYS[1])).status_code == 200
        old = await api(rotated, "/sessions?user=alice", key=API_KEYS[0])
        assert old.status_code == 401 and (await old.get_json())["error"] == "api_key_invalid"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "api_key_missing"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "api_key_missing"),
        ({"Authorization": "Bearer "}, 401, "api_key_missing"),
        ({"Authorization": "Bearer wrong-key-0123456789abcdefgh"}, 401, "api_key_invalid"),
        ({"Authorization": "Bearer " + API_KEYS[0][:-1]}, 401, "api_key_invalid"),
        ({**auth(), "Cookie": "session=x"}, 403, "api_browser_forbidden"),
        ({**auth(), "Origin": "http://localhost"}, 403, "api_browser_forbidden"),
        ({**auth(), "Sec-Fetch-Site": "same-origin"}, 403, "api_browser_forbidden"),
    ],
)
async def test_refused_callers(app: Quart, headers: dict[str, str], status: int, code: str) -> None:
    response = await app.test_client().post(API + "/login", json={"user": "a"}, headers=headers)
    assert response.status_code == status
    assert (await response.get_json())["error"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_without_keys_the_api_is_off(key_prefix: str) -> None:
    app = make_proxy_app("memory://", key_prefix=key_prefix, api_keys=())
    async with app.test_app():
        response = await api(app, "/sessions?user=alice")
        assert response.status_code == 404
        assert (await response.get_json())["error"] == "api_disabled"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/login", {}, "user must be"),
        ("/login", {"user": ""}, "user must be"),
        ("/login", {"user": 5}, "user must be"),
        ("/login", {"user": "x" * 257}, "user must be"),
        ("/login", {"user": "a", "cookie": ["x"]}, "cookie must be"),
        ("/login", {"user": "a", "cookie": "x" * 9000}, "cookie must be"),
        ("/login", {"user": "a", "client_ip": "999.1.1.1"}, "client_ip must be"),
        ("/login", {"user": "a", "client_ip": 3}, "client_ip must be"),
        ("/login", {"user": "a", "revoke_others": "yes"}, "revoke_others must be"),
        ("/login", {"user": "a", "admin": True}, "unknown field(s): admin"),
        ("/login", [], "must be a JSON object"),
        ("/logout", {}, "cookie must be"),
        ("/revoke", {}, "give session"),
        ("/revoke", {"session": "a", "except_session": "b"}, "not both"),
        ("/revoke", {"user": "a", "reason": "Not A Code"}, "reason must match"),
        ("/revoke", {"session": "x" * 65}, "session must be"),
    ],
)
async def test_bad_bodies_are_clear_400s(app: Quart, path: str, body: Any, message: str) -> None:
    response = await api(app, path, body)
    assert response.status_code == 400
    answer = await response.get_json()
    assert answer["error"] == "bad_request" and message in answer["message"], answer


async def test_malformed_and_non_json_bodies(app: Quart) -> None:
    client = app.test_client()
    for data, content_type, status in [
        (b"{not json", "application/json", 400),
        (b"user=a", "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe", "application/json", 400),
        (b'{"user": "' + b"a" * 20000 + b'"}', "application/json", 413),
    ]:
        response = await client.post(
            API + "/login", data=data, headers={**auth(), "Content-Type": content_type}
        )
        assert response.status_code == status, data[:20]
        assert (await response.get_json())["error"] == "bad_request"
    missing = await client.get(API + "/sessions", headers=auth())
    assert missing.status_code == 400
    assert "user" in (await missing.get_json())["message"]


async def test_login_relays_a_cookie_that_forward_auth_accepts(app: Quart) -> None:
    result = await login(app, "alice", user_agent=CHROME, client_ip="203.0.113.9")
    assert result["user"] == "alice" and result["rotated_from"] is None
    assert result["evicted"] == [] and result["revoked"] == 0
    set_cookie = result["cookie"]["set_cookie"]
    assert set_cookie.startswith(f"session={result['cookie']['value']};")
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" in set_cookie
    client = app.test_client()
    response = await client.get(
        "/_sessionwatch/verify", headers={**NGINX_GET, "Cookie": cookie_header(result)}
    )
    assert response.status_code == 204
    assert response.headers["X-SessionWatch-User"] == "alice"
    assert response.headers["X-SessionWatch-Session"] == result["session"]
    [listed] = (await (await api(app, "/sessions?user=alice")).get_json())["sessions"]
    assert listed["id"] == result["session"] and listed["browser"].startswith("Chrome")
    assert listed["place"] == "203.0.113.0/24" and listed["user"] == "alice"


async def test_login_rotates_the_browsers_session_and_its_tab_key(app: Quart) -> None:
    browser = app.test_client()
    claim = await (await browser.post("/_sessionwatch/claim", json={})).get_json()
    anonymous = claim["session"]
    jar_cookie = next(c for c in browser.cookie_jar if c.name == "session")  # type: ignore[union-attr]
    result = await login(app, "alice", cookie=f"other=1; session={jar_cookie.value}")
    assert result["rotated_from"] == anonymous and result["session"] != anonymous
    assert await verify_with(app, f"session={jar_cookie.value}") == 401  # fixation: old id dead

    async def tab_check(tab: str) -> Any:
        return await app.test_client().get(
            "/_sessionwatch/verify",
            headers={
                "X-Original-Method": "POST",
                "Origin": "http://localhost",
                "X-SessionWatch-Tab": tab,
                "Cookie": cookie_header(result),
            },
        )

    # The tab key rotated (as the extension's login does): the token from before the
    # sign-in is refused, the one the answer carries for the calling tab is active.
    assert (
        json.loads((await tab_check(claim["tab"])).headers["X-SessionWatch-Refusal"])["error"]
        == "tab_invalid"
    )
    assert (await tab_check(result["tab"])).status_code == 204


async def test_relayed_copies_are_chosen_as_a_browser_requests_are(app: Quart) -> None:
    """Issue 22 item 3 through the API: forged and ended copies before the browser's do
    not hide it (its session is the one rotated); copies of two live sessions rotate
    neither (the sign-in starts afresh instead of taking over the tossed one)."""
    browser = app.test_client()
    anonymous = (await (await browser.post("/_sessionwatch/claim", json={})).get_json())["session"]
    mine = "session=" + next(c.value for c in browser.cookie_jar if c.name == "session")  # type: ignore[union-attr]
    dead = cookie_header(await login(app, "mallory"))
    await api(app, "/logout", {"cookie": dead})
    planted = cookie_header(await login(app, "mallory"))
    result = await login(app, "alice", cookie=f"{planted}; {mine}")
    assert result["rotated_from"] is None  # a conflict: neither is taken over
    assert await verify_with(app, planted) == 204 and await verify_with(app, mine) == 204
    forged = dead.replace("session=", "session=x", 1)
    result = await login(app, "alice", cookie=f"session=AAAA.BBBB; {dead}; {forged}; {mine}")
    assert result["rotated_from"] == anonymous
    assert await verify_with(app, mine) == 401  # rotated: the old id is dead


async def test_a_relayed_cookie_replayed_after_logout_is_refused(app: Quart) -> None:
    result = await login(app, "alice")
    cookie = cookie_header(result)
    assert await verify_with(app, cookie) == 204
    out = await (await api(app, "/logout", {"cookie": cookie})).get_json()
    assert out["logged_out"] is True and out["session"] == result["session"]
    assert "Max-Age=0" in out["cookie"]["set_cookie"]
    assert await verify_with(app, cookie) == 401  # replay of the relayed cookie
    again = await (await api(app, "/logout", {"cookie": cookie})).get_json()
    assert again["logged_out"] is False and again["session"] is None
    assert await login(app, "alice", cookie=cookie)  # a dead cookie starts afresh
    assert await verify_with(app, cookie) == 401


async def test_a_forged_cookie_is_not_adopted(app: Quart) -> None:
    result = await login(app, "alice", cookie="session=forged.signature")
    assert result["rotated_from"] is None


@pytest.mark.parametrize("app", [Policy(sessions_per_user=1, on_limit="deny")], indirect=True)
async def test_deny_at_the_limit_is_a_403_with_the_limit(app: Quart) -> None:
    await login(app, "alice")
    response = await api(app, "/login", {"user": "alice"})
    assert response.status_code == 403
    assert await response.get_json() == {
        "error": "session_limit_reached",
        "limit": 1,
        "message": "You have reached the maximum number of active sessions.",
    }


@pytest.mark.parametrize(
    "app", [Policy(sessions_per_user=1, on_limit="evict_oldest")], indirect=True
)
async def test_evict_oldest_names_the_evicted_session(app: Quart) -> None:
    first = await login(app, "alice", user_agent=CHROME)
    second = await login(app, "alice", user_agent=FIREFOX)
    assert second["evicted"] == [first["session"]]
    assert await verify_with(app, cookie_header(first)) == 401
    assert await verify_with(app, cookie_header(second)) == 204


async def test_revoke_one_others_and_all(app: Quart) -> None:
    a, b, c = [await login(app, "alice") for _ in range(3)]
    bob = await login(app, "bob")
    assert (await (await api(app, "/revoke", {"session": a["session"]})).get_json()) == {
        "revoked": 1
    }
    missing = await api(app, "/revoke", {"session": a["session"]})
    assert missing.status_code == 404 and (await missing.get_json())["error"] == "session_not_found"
    foreign = await api(app, "/revoke", {"session": bob["session"], "user": "alice"})
    assert foreign.status_code == 404  # not alice's
    others = await api(app, "/revoke", {"user": "alice", "except_session": c["session"]})
    assert (await others.get_json()) == {"revoked": 1}
    assert await verify_with(app, cookie_header(b)) == 401
    assert await verify_with(app, cookie_header(c)) == 204
    every = await api(app, "/revoke", {"user": "alice", "reason": "password_changed"})
    assert (await every.get_json()) == {"revoked": 1}
    assert (await (await api(app, "/sessions?user=alice")).get_json())["sessions"] == []
    assert await verify_with(app, cookie_header(bob)) == 204


async def test_login_with_revoke_others(app: Quart) -> None:
    first = await login(app, "alice")
    second = await login(app, "alice", revoke_others=True)
    assert second["revoked"] == 1
    assert await verify_with(app, cookie_header(first)) == 401
