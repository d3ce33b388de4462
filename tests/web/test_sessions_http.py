"""Server-side sessions, claims and the HTTP API through a real Quart app, on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from sessionwatch import Policy
from sessionwatch.core.tokens import CookieSigner, new_session_id
from support.app_factory import SECRET, make_app
from support.clock import FakeClock

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(name="policy")
def _policy() -> Policy:
    return Policy()


@pytest.fixture(name="app")
async def _app(
    backend_url: str, key_prefix: str, clock: FakeClock, policy: Policy
) -> AsyncIterator[Quart]:
    app = make_app(backend_url, key_prefix=key_prefix, clock=clock, policy=policy)
    async with app.test_app():
        yield app


def cookies_set(response: Any) -> dict[str, Any]:
    """The Set-Cookie headers of a response, parsed."""
    parsed = {}
    for header in response.headers.getlist("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            parsed[name] = (morsel, header)
    return parsed


def cookie_value(client: QuartClient, name: str = "session") -> str | None:
    assert client.cookie_jar is not None
    for cookie in client.cookie_jar:
        if cookie.name == name:
            return cookie.value
    return None


def replay(client: QuartClient, value: str, name: str = "session") -> None:
    assert client.cookie_jar is not None
    client.cookie_jar.clear()
    client.set_cookie("localhost", name, value)


async def claim(client: QuartClient, user_agent: str = CHROME) -> dict[str, Any]:
    response = await client.post(
        "/_sessionwatch/claim", json={}, headers={"User-Agent": user_agent}
    )
    assert response.status_code == 200, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def login(client: QuartClient, user: str, user_agent: str = CHROME) -> Any:
    return await client.post("/login", json={"user": user}, headers={"User-Agent": user_agent})


async def transfer(client: QuartClient, token: str | None, **headers: str) -> Any:
    if token is not None:
        headers["X-SessionWatch-Tab"] = token
    return await client.post("/transfer", headers=headers)


# -- cookies ---------------------------------------------------------------------------


async def test_no_cookie_until_the_session_holds_something(app: Quart) -> None:
    client = app.test_client()
    response = await client.get("/public")
    assert "Set-Cookie" not in response.headers
    response = await client.get("/data")
    assert "Set-Cookie" not in response.headers


async def test_cookie_attributes_are_hardened(app: Quart) -> None:
    client = app.test_client()
    response = await client.post("/data", json={"a": 1})
    morsel, header = cookies_set(response)["session"]
    assert morsel["secure"] and morsel["httponly"]
    assert morsel["samesite"] == "Lax" and morsel["path"] == "/"
    assert "Domain" not in header
    signed = morsel.value
    assert len(signed) < 120 and "a" not in signed.split(".")[0][:0]  # opaque: no data inside
    assert CookieSigner([SECRET]).unsign(signed) is not None


async def test_host_prefix_over_https(app: Quart) -> None:
    client = app.test_client()
    response = await client.post("/data", json={"a": 1}, scheme="https")
    assert "__Host-session" in cookies_set(response)
    assert (await (await client.get("/data", scheme="https")).get_json()) == {"a": 1}


async def test_login_rotates_and_the_old_cookie_is_dead(app: Quart) -> None:
    client = app.test_client()
    await client.post("/data", json={"cart": [1, 2]})
    before = cookie_value(client)
    response = await login(client, "alice")
    assert response.status_code == 200
    morsel, _ = cookies_set(response)["session"]
    assert morsel.value != before and morsel["secure"] and morsel["httponly"]
    assert (await (await client.get("/data")).get_json()) == {"cart": [1, 2], "user": "alice"}
    replay(client, before or "")
    assert (await client.get("/_sessionwatch/state")).status_code == 401
    assert (await (await client.get("/_sessionwatch/state")).get_json())["error"] == "no_session"


async def test_logout_clears_cookie_and_replay_finds_no_session(app: Quart) -> None:
    client = app.test_client()
    await login(client, "bob")
    token = (await claim(client))["tab"]
    signed = cookie_value(client)
    response = await client.post("/logout")
    morsel, header = cookies_set(response)["session"]
    assert morsel.value == "" and ("Max-Age=0" in header or "1970" in header)
    replay(client, signed or "")
    refused = await transfer(client, token)
    assert refused.status_code == 401 and (await refused.get_json())["error"] == "no_session"


async def test_session_answers_vary_on_cookie(app: Quart) -> None:
    client = app.test_client()
    assert "Cookie" not in (await client.get("/public")).headers.get("Vary", "")
    assert "Cookie" in (await client.post("/data", json={"a": 1})).headers["Vary"]
    assert "Cookie" in (await client.get("/data")).headers["Vary"]


async def test_data_survives_requests_including_nested_changes(app: Quart) -> None:
    client = app.test_client()
    await client.post("/data", json={"n": 1})
    await client.post("/data/append", json={"item": "x"})
    await client.post("/data/append", json={"item": "y"})
    assert await (await client.get("/data")).get_json() == {"n": 1, "items": ["x", "y"]}


async def test_session_changed_during_a_websocket_is_saved(app: Quart) -> None:
    client = app.test_client()
    await client.post("/data", json={"n": 1})
    async with client.websocket("/ws-data") as ws:
        await ws.send("hello")
        assert await ws.receive() == "saved"
    assert await (await client.get("/data")).get_json() == {"n": 1, "from_ws": "hello"}


async def test_secret_rotation_accepts_old_cookies(backend_url: str, key_prefix: str) -> None:
    old_app = make_app(backend_url, key_prefix=key_prefix)
    async with old_app.test_app():
        client = old_app.test_client()
        await client.post("/data", json={"kept": True})
        signed = cookie_value(client)
    new_app = make_app(
        backend_url,
        key_prefix=key_prefix,
        secret_keys=[SECRET, "a-brand-new-secret-key-0123456789"],
    )
    async with new_app.test_app():
        if backend_url.startswith("memory"):
            return  # memory:// state lives in one backend object: nothing to carry over
        client = new_app.test_client()
        replay(client, signed or "")
        assert await (await client.get("/data")).get_json() == {"kept": True}
        response = await client.post("/data", json={"more": 1})
        if "session" in cookies_set(response):
            raise AssertionError("an existing session must not be re-issued")


# -- tab claims --------------------------------------------------------------------------


async def test_newest_claim_wins(app: Quart) -> None:
    client = app.test_client()
    first = await claim(client)
    assert first["gen"] == 1 and first["session"] and first["user"] is None
    assert (await transfer(client, first["tab"])).status_code == 200
    second = await claim(client, FIREFOX)
    assert second["gen"] == 2
    refused = await transfer(client, first["tab"])
    body = await refused.get_json()
    assert refused.status_code == 409 and body["error"] == "tab_superseded"
    assert body["by"]["browser"] == "Firefox Mobile 121" and body["by"]["os"] == "Android 14"
    assert body["by"]["same_browser"] is False  # the cookie was used by another browser
    assert (await transfer(client, second["tab"])).status_code == 200
    third = await claim(client, CHROME)
    by = (await (await transfer(client, second["tab"])).get_json())["by"]
    assert third["gen"] == 3 and by["same_browser"] is True  # another tab of the same browser


async def test_login_replaces_every_tab_token_and_hands_the_caller_its_new_one(
    app: Quart,
) -> None:
    """Issue 12, hole 2: a token issued before the sign-in (a planted session's, say)
    is refused afterwards; the signing-in request's answer carries its tab's token."""
    client = app.test_client()
    before = await claim(client)
    signed_in = await login(client, "carol")
    refused = await transfer(client, before["tab"])
    assert refused.status_code == 409 and (await refused.get_json())["error"] == "tab_invalid"
    token = signed_in.headers["X-SessionWatch-Tab"]
    assert int(token.split(".")[0]) == before["gen"] + 1  # the generation only grows
    assert (await transfer(client, token)).status_code == 200
    assert (await claim(client))["gen"] == before["gen"] + 2


async def test_missing_and_invalid_tokens(app: Quart) -> None:
    client = app.test_client()
    token = (await claim(client))["tab"]
    missing = await transfer(client, None)
    assert missing.status_code == 409 and (await missing.get_json())["error"] == "tab_missing"
    gen, mac = token.split(".")
    for bad in (
        f"{int(gen) + 1}.{mac}",
        f"{gen}.{'A' * 22}",
        "garbage",
        token + "x",
        "0." + mac,
        "9" * 40 + "." + mac,
        "",
    ):
        response = await transfer(client, bad)
        assert response.status_code == 409, bad
        assert (await response.get_json())["error"] in ("tab_invalid", "tab_missing"), bad


async def test_token_of_another_session_is_invalid(app: Quart) -> None:
    mine, theirs = app.test_client(), app.test_client()
    await claim(mine)
    their_token = (await claim(theirs))["tab"]
    response = await transfer(mine, their_token)
    assert response.status_code == 409 and (await response.get_json())["error"] == "tab_invalid"


async def test_form_field_carries_the_token(app: Quart) -> None:
    client = app.test_client()
    token = (await claim(client))["tab"]
    response = await client.post("/transfer", form={"_sessionwatch_tab": token, "amount": "5"})
    assert response.status_code == 200


async def test_navigation_gets_an_html_page(app: Quart) -> None:
    client = app.test_client()
    old = (await claim(client))["tab"]
    await claim(client)
    response = await transfer(client, old, **{"Sec-Fetch-Mode": "navigate", "Accept": "text/html"})
    assert response.status_code == 409
    assert response.mimetype == "text/html"
    assert "another tab" in (await response.get_data(as_text=True))


async def test_claim_needs_json_and_an_allowed_origin(app: Quart) -> None:
    client = app.test_client()
    assert (await client.post("/_sessionwatch/claim", form={"x": "1"})).status_code == 415
    foreign = await client.post(
        "/_sessionwatch/claim", json={}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403 and (await foreign.get_json())["error"] == "origin_forbidden"
    own = await client.post("/_sessionwatch/claim", json={}, headers={"Origin": "http://localhost"})
    assert own.status_code == 200


async def test_multi_tab_policy_keeps_every_claimed_tab_valid(
    backend_url: str, key_prefix: str
) -> None:
    app = make_app(backend_url, key_prefix=key_prefix, policy=Policy(tabs_per_session=None))
    async with app.test_app():
        client = app.test_client()
        tokens = [(await claim(client))["tab"] for _ in range(3)]
        for token in tokens:
            assert (await transfer(client, token)).status_code == 200
        gen, mac = tokens[-1].split(".")
        assert (await transfer(client, f"{int(gen) + 1}.{mac}")).status_code == 409


# -- expiry ------------------------------------------------------------------------------


async def test_idle_expiry(app: Quart, clock: FakeClock) -> None:
    client = app.test_client()
    token = (await claim(client))["tab"]
    clock.advance(29 * 60)
    assert (await transfer(client, token)).status_code == 200  # activity refreshes
    clock.advance(29 * 60)
    assert (await transfer(client, token)).status_code == 200
    clock.advance(30 * 60)
    response = await transfer(client, token)
    assert response.status_code == 401 and (await response.get_json())["error"] == "expired"


async def test_refresh_is_not_written_on_every_request(app: Quart, clock: FakeClock) -> None:
    client = app.test_client()
    await claim(client)
    state = await (await client.get("/_sessionwatch/state")).get_json()
    clock.advance(30)
    again = await (await client.get("/_sessionwatch/state")).get_json()
    assert again["expires_at"] == state["expires_at"]  # within refresh_every: no write
    clock.advance(31)
    later = await (await client.get("/_sessionwatch/state")).get_json()
    assert later["expires_at"] == state["expires_at"] + 61_000


async def test_absolute_expiry(app: Quart, clock: FakeClock) -> None:
    client = app.test_client()
    await login(client, "dora")
    token = (await claim(client))["tab"]
    for _ in range(12 * 2 - 1):
        clock.advance(30 * 60 - 1)
        assert (await transfer(client, token)).status_code == 200
    clock.advance(31 * 60)
    response = await transfer(client, token)
    assert response.status_code == 401 and (await response.get_json())["error"] == "expired"


# -- sessions API and policies -------------------------------------------------------------


async def test_sessions_api_lists_revokes_one_and_others(app: Quart, clock: FakeClock) -> None:
    laptop, phone, tablet = app.test_client(), app.test_client(), app.test_client()
    for client, agent in ((laptop, CHROME), (phone, FIREFOX), (tablet, FIREFOX)):
        await login(client, "erin", agent)
        clock.advance(1)
    laptop_tab = (await claim(laptop))["tab"]
    phone_tab = (await claim(phone, FIREFOX))["tab"]
    listing = await (await laptop.get("/_sessionwatch/sessions")).get_json()
    sessions = listing["sessions"]
    assert len(sessions) == 3 and [s["current"] for s in sessions] == [True, False, False]
    assert sessions[0]["browser"] == "Chrome 120" and sessions[1]["os"] == "Android 14"
    assert "sid" not in str(listing) and cookie_value(laptop) not in str(listing)
    phone_id = sessions[1]["id"]
    response = await laptop.delete(
        f"/_sessionwatch/sessions/{phone_id}", headers={"X-SessionWatch-Tab": laptop_tab}
    )
    assert response.status_code == 200
    refused = await transfer(phone, phone_tab)
    assert refused.status_code == 401 and await refused.get_json() == {
        "error": "revoked",
        "message": "Your session was ended.",
        "reason": "revoked",
    }
    again = await laptop.delete(
        f"/_sessionwatch/sessions/{phone_id}", headers={"X-SessionWatch-Tab": laptop_tab}
    )
    assert again.status_code == 404 and (await again.get_json())["error"] == "session_not_found"
    others = await laptop.post(
        "/_sessionwatch/sessions/revoke-others", headers={"X-SessionWatch-Tab": laptop_tab}
    )
    assert await others.get_json() == {"revoked": 1}
    assert len((await (await laptop.get("/_sessionwatch/sessions")).get_json())["sessions"]) == 1


@pytest.mark.parametrize("trusted", [True, False])
async def test_place_is_an_ip_prefix_and_forwarded_for_needs_trust(
    backend_url: str, key_prefix: str, trusted: bool
) -> None:
    app = make_app(backend_url, key_prefix=key_prefix, trust_forwarded_for=trusted)
    async with app.test_app():
        client = app.test_client()
        forwarded = {"X-Forwarded-For": "10.9.9.9, 203.0.113.77", "User-Agent": CHROME}
        await client.post("/login", json={"user": "pat"}, headers=forwarded)
        place = (await (await client.get("/_sessionwatch/sessions")).get_json())["sessions"][0][
            "place"
        ]
        assert (place == "203.0.113.0/24") is trusted


async def test_cannot_revoke_another_users_session(app: Quart) -> None:
    alice, mallory = app.test_client(), app.test_client()
    await login(alice, "alice")
    await login(mallory, "mallory")
    alice_id = (await (await alice.get("/_sessionwatch/sessions")).get_json())["sessions"][0]["id"]
    token = (await claim(mallory))["tab"]
    response = await mallory.delete(
        f"/_sessionwatch/sessions/{alice_id}", headers={"X-SessionWatch-Tab": token}
    )
    assert response.status_code == 404
    assert (await alice.get("/_sessionwatch/state")).status_code == 200


async def test_sessions_api_needs_a_signed_in_user_and_the_active_tab(app: Quart) -> None:
    client = app.test_client()
    assert (await client.get("/_sessionwatch/sessions")).status_code == 401
    await login(client, "fred")
    response = await client.post("/_sessionwatch/sessions/revoke-others")  # no token: CSRF refused
    assert response.status_code == 409


@pytest.mark.parametrize("policy", [Policy(sessions_per_user=1, on_limit="evict_oldest")])
async def test_evict_oldest_over_http(app: Quart) -> None:
    first, second = app.test_client(), app.test_client()
    await login(first, "gus")
    token = (await claim(first))["tab"]
    response = await login(second, "gus", FIREFOX)
    assert len((await response.get_json())["evicted"]) == 1
    refused = await transfer(first, token)
    assert refused.status_code == 401 and (await refused.get_json())["reason"] == "evicted"


@pytest.mark.parametrize(
    "policy", [Policy(sessions_per_user=lambda user: 1 if user == "hal" else None, on_limit="deny")]
)
async def test_deny_over_http_and_per_user_limits(app: Quart) -> None:
    first, second = app.test_client(), app.test_client()
    await login(first, "hal")
    denied = await login(second, "hal")
    assert (
        denied.status_code == 403 and (await denied.get_json())["error"] == "session_limit_reached"
    )
    assert (await first.get("/_sessionwatch/state")).status_code == 200
    for _ in range(3):  # exempt user
        assert (await login(app.test_client(), "root")).status_code == 200


# -- hostile input ---------------------------------------------------------------------------


HOSTILE_COOKIES = [
    "",
    "garbage",
    "a.b",
    "." * 50,
    "x" * 4000,
    "\u00e9\u00e9.\u00e9",
    CookieSigner(["some-other-secret-key-0123456"]).sign(new_session_id()),
    CookieSigner([SECRET]).sign(new_session_id()),  # genuine signature, never issued
    CookieSigner([SECRET]).sign("short"),
]


@pytest.mark.parametrize("value", HOSTILE_COOKIES, ids=range(len(HOSTILE_COOKIES)))
async def test_hostile_cookies_get_a_clean_401_and_are_not_adopted(app: Quart, value: str) -> None:
    client = app.test_client()
    replay(client, value)
    response = await transfer(client, "1." + "A" * 22)
    assert response.status_code == 401 and (await response.get_json())["error"] == "no_session"
    response = await client.post("/data", json={"n": 1})
    assert response.status_code == 200
    morsel, _ = cookies_set(response)["session"]
    assert morsel.value != value  # a fresh session, never the presented id


async def test_truncated_genuine_cookie_is_refused(app: Quart) -> None:
    client = app.test_client()
    await client.post("/data", json={"n": 1})
    signed = cookie_value(client) or ""
    for cut in (1, 5, len(signed) // 2):
        replay(client, signed[:-cut])
        assert (await client.get("/_sessionwatch/state")).status_code == 401


async def test_oversized_headers_and_bodies_never_500(app: Quart) -> None:
    client = app.test_client()
    token = (await claim(client))["tab"]
    for headers in ({"X-SessionWatch-Tab": "9" * 10_000}, {"X-SessionWatch-Tab": token + "\x00"}):
        response = await client.post("/transfer", headers=headers)
        assert response.status_code == 409
    response = await client.post(
        "/transfer",
        data=b"\xff\xfe" * 1000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 409
    response = await client.delete(
        "/_sessionwatch/sessions/" + "x" * 500, headers={"X-SessionWatch-Tab": token}
    )
    assert response.status_code == 404


async def test_backend_unavailable_fails_closed(key_prefix: str) -> None:
    from support.redis_server import free_port

    app = make_app(f"redis://127.0.0.1:{free_port()}/0", key_prefix=key_prefix)
    client = app.test_client()  # no test_app(): the dead backend cannot connect at start-up
    client.set_cookie("localhost", "session", CookieSigner([SECRET]).sign(new_session_id()))
    response = await client.post("/transfer", headers={"X-SessionWatch-Tab": "1." + "A" * 22})
    assert (
        response.status_code == 503
        and (await response.get_json())["error"] == "backend_unavailable"
    )
    assert (await client.get("/data")).status_code == 503  # never read as an empty session
    assert (await client.post("/_sessionwatch/claim", json={})).status_code == 503
    assert (await client.get("/public")).status_code == 200  # routes not using the session work
