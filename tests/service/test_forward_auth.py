"""Forward-auth (``/verify`` + ``/refusal``): the contract per proxy header style, on
every backend, through a real Quart app (docs/any-stack.md)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from sessionwatch import Policy
from sessionwatch.core.tokens import CookieSigner, new_session_id, slot_tag, user_tag
from support.app_factory import SECRET, make_proxy_app
from support.clock import FakeClock

ORIGIN = "http://localhost"
NGINX = "nginx"
FORWARDED = "traefik"  # Traefik's and Caddy's header style
STYLES = [NGINX, FORWARDED]


def proxy_headers(
    style: str,
    method: str,
    uri: str = "/api/x",
    *,
    tab: str | None = None,
    origin: str | None = ORIGIN,
) -> dict[str, str]:
    """The headers each proxy adds to its auth request, plus the original request's."""
    if style == NGINX:
        headers = {"X-Original-Method": method, "X-Original-URI": uri}
    else:
        headers = {
            "X-Forwarded-Method": method,
            "X-Forwarded-Uri": uri,
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": "localhost",
        }
    if tab is not None:
        headers["X-SessionWatch-Tab"] = tab
    if origin is not None:
        headers["Origin"] = origin
    return headers


@pytest.fixture(name="style")
def _style() -> str:
    """The deployment's proxy (``SESSIONWATCH_FORWARD_AUTH``); ``parametrize("style",
    ...)`` overrides it."""
    return NGINX


@pytest.fixture(name="app")
async def _app(
    backend_url: str, key_prefix: str, clock: FakeClock, style: str
) -> AsyncIterator[Quart]:
    app = make_proxy_app(
        backend_url, key_prefix=key_prefix, clock=clock, policy=Policy(), forward_auth=style
    )
    async with app.test_app():
        yield app


async def signed_in_tab(client: QuartClient, user: str = "alice") -> str:
    """Sign in as ``user`` and claim a tab; returns the tab token."""
    assert (await client.post("/login", json={"user": user})).status_code == 200
    claim = await client.post("/_sessionwatch/claim", json={})
    return str((await claim.get_json())["tab"])


async def verify(
    client: QuartClient, style: str, method: str, require: str | None = None, **options: Any
) -> Any:
    path = "/_sessionwatch/verify" + (f"?require={require}" if require else "")
    return await client.get(path, headers=proxy_headers(style, method, **options))


def refusal_of(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.headers["X-SessionWatch-Refusal"]))


@pytest.mark.parametrize("style", STYLES)
async def test_no_session_is_401_in_every_style(app: Quart, style: str) -> None:
    response = await verify(app.test_client(), style, "GET")
    assert response.status_code == 401
    assert (await response.get_json())["error"] == "no_session"
    assert refusal_of(response) == {"status": 401, "error": "no_session"}


@pytest.mark.parametrize("style", STYLES)
async def test_a_session_passes_safe_methods_and_says_who(app: Quart, style: str) -> None:
    client = app.test_client()
    tab = await signed_in_tab(client)
    response = await verify(client, style, "GET")  # no tab token needed
    assert response.status_code == 204
    assert response.headers["X-SessionWatch-User"] == "alice"
    session = response.headers["X-SessionWatch-Session"]  # the public id: alice's tag.rest
    assert slot_tag(session) == user_tag("alice") and len(session.split(".")[1]) == 22
    assert response.headers["X-SessionWatch-Tab-Status"] == "missing"
    response = await verify(client, style, "HEAD", tab=tab)
    assert response.status_code == 204
    assert response.headers["X-SessionWatch-Tab-Status"] == "active"
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("style", STYLES)
async def test_unsafe_methods_need_the_active_tab_and_an_allowed_origin(
    app: Quart, style: str
) -> None:
    client = app.test_client()
    tab = await signed_in_tab(client)
    assert (await verify(client, style, "POST", tab=tab)).status_code == 204
    assert (await verify(client, style, "DELETE", tab=tab)).status_code == 204
    for origin in ("https://evil.example", "http://localhost:1"):
        response = await verify(client, style, "POST", tab=tab, origin=origin)
        assert response.status_code == 403, origin
        assert refusal_of(response)["error"] == "origin_forbidden"
    # Without Origin the tab token proves the page, as on a protected route (the
    # engine's one rule); with require=session nothing would, so an Origin is needed.
    assert (await verify(client, style, "POST", tab=tab, origin=None)).status_code == 204
    response = await verify(client, style, "POST", "session", origin=None)
    assert refusal_of(response) == {"status": 403, "error": "origin_forbidden"}
    response = await verify(client, style, "POST")
    assert refusal_of(response) == {"status": 409, "error": "tab_missing"}
    response = await verify(client, style, "POST", tab="1.AAAAAAAAAAAAAAAAAAAAAA")
    assert refusal_of(response) == {"status": 409, "error": "tab_invalid"}


@pytest.mark.parametrize("style", STYLES)
async def test_verify_applies_the_protected_routes_origin_rule(
    backend_url: str, key_prefix: str, clock: FakeClock, style: str
) -> None:
    """The same rule as a protected route: a foreign ``Origin``, or without one
    ``Sec-Fetch-Site: cross-site``/``same-site``, refuses an unsafe method
    (``origin_forbidden``; nginx gets 403 with the refusal header), even when a missing
    ``Origin`` is allowed."""
    app = make_proxy_app(
        backend_url,
        key_prefix=key_prefix,
        clock=clock,
        policy=Policy(),
        allow_missing_origin=True,
        forward_auth=style,
    )
    async with app.test_app():
        client = app.test_client()
        tab = await signed_in_tab(client)
        assert (await verify(client, style, "POST", tab=tab, origin=None)).status_code == 204
        assert (await verify(client, style, "POST", "session", origin=None)).status_code == 204
        for site in ("cross-site", "same-site"):
            headers = proxy_headers(style, "POST", tab=tab, origin=None)
            headers["Sec-Fetch-Site"] = site
            response = await client.get("/_sessionwatch/verify", headers=headers)
            assert response.status_code == 403, site
            assert refusal_of(response) == {"status": 403, "error": "origin_forbidden"}
        response = await verify(client, style, "POST", tab=tab, origin="https://evil.example")
        assert response.status_code == 403
        assert refusal_of(response)["error"] == "origin_forbidden"
        headers = proxy_headers(style, "GET", origin=None)
        headers["Sec-Fetch-Site"] = "cross-site"
        assert (await client.get("/_sessionwatch/verify", headers=headers)).status_code == 204


@pytest.mark.parametrize("style", [FORWARDED])
async def test_a_stale_tab_is_409_for_traefik_and_caddy(app: Quart) -> None:
    client = app.test_client()
    older = await signed_in_tab(client)
    await client.post("/_sessionwatch/claim", json={}, headers={"User-Agent": "Firefox/121"})
    response = await verify(client, FORWARDED, "POST", tab=older)
    assert response.status_code == 409  # Traefik and Caddy pass the auth answer on
    body = await response.get_json()
    assert body["error"] == "tab_superseded" and body["by"]["at"] > 0


async def test_nginx_gets_403_with_the_409_to_restore_through_refusal(app: Quart) -> None:
    client = app.test_client()
    older = await signed_in_tab(client)
    await client.post("/_sessionwatch/claim", json={})
    response = await verify(client, NGINX, "POST", tab=older)
    assert response.status_code == 403  # anything but 2xx/401/403 would become 500
    refusal = refusal_of(response)
    assert refusal["status"] == 409 and refusal["error"] == "tab_superseded"
    restored = await client.get(
        "/_sessionwatch/refusal",
        headers={"X-SessionWatch-Refusal": response.headers["X-SessionWatch-Refusal"]},
    )
    assert restored.status_code == 409
    body = await restored.get_json()
    assert body["error"] == "tab_superseded" and body["by"] == refusal["by"]
    raw = response.headers["X-SessionWatch-Refusal"]

    async def page_for(method: str) -> Any:
        """The refusal as a navigation of ``method`` to /account/settings sees it."""
        return await client.get(
            "/_sessionwatch/refusal",
            headers={
                "X-SessionWatch-Refusal": raw,
                "Sec-Fetch-Mode": "navigate",
                "X-Original-Method": method,
                "X-Original-URI": "/account/settings",
            },
        )

    html = await page_for("GET")
    assert html.status_code == 409 and html.mimetype == "text/html"
    assert 'href="/account/settings"' in (await html.get_data(as_text=True))
    # a refused form post's link leads to the start page (its route may be POST only)
    assert 'href="/"' in (await (await page_for("POST")).get_data(as_text=True))


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "not json",
        "[]",
        '{"status": 200, "error": "tab_superseded"}',
        '{"status": 409, "error": "made_up"}',
        '{"status": 500, "error": "backend_unavailable"}',
        '{"status": "409", "error": "tab_superseded"}',
        '{"status": 409, "error": "tab_superseded", "by": "' + "x" * 3000 + '"}',
    ],
)
async def test_refusal_renders_only_refusals_of_verify(app: Quart, raw: str | None) -> None:
    headers = {} if raw is None else {"X-SessionWatch-Refusal": raw}
    response = await app.test_client().get("/_sessionwatch/refusal", headers=headers)
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "bad_request"


async def test_refusal_keeps_only_known_device_fields(app: Quart) -> None:
    raw = json.dumps(
        {"status": 409, "error": "tab_superseded", "by": {"browser": "X", "evil": "<script>"}}
    )
    response = await app.test_client().post(
        "/_sessionwatch/refusal", headers={"X-SessionWatch-Refusal": raw}
    )
    assert response.status_code == 409
    assert (await response.get_json())["by"] == {"browser": "X"}


@pytest.mark.parametrize("style", STYLES)
async def test_require_picks_the_rule(app: Quart, style: str) -> None:
    client = app.test_client()
    anonymous = await verify(client, style, "POST", require="none")
    assert anonymous.status_code == 204
    assert anonymous.headers["X-SessionWatch-User"] == ""
    assert anonymous.headers["X-SessionWatch-Tab-Status"] == "none"
    assert (await verify(client, style, "GET", require="session")).status_code == 401
    tab = await signed_in_tab(client)
    # session: no tab needed even for POST (a form without the header), but an origin
    assert (await verify(client, style, "POST", require="session")).status_code == 204
    assert (await verify(client, style, "POST", require="session", origin=None)).status_code == 403
    # tab: even a GET needs the active tab
    refused = await verify(client, style, "GET", require="tab")
    assert refusal_of(refused)["error"] == "tab_missing"
    assert (await verify(client, style, "GET", require="tab", tab=tab)).status_code == 204
    none = await verify(client, style, "GET", require="none")
    assert none.headers["X-SessionWatch-User"] == "alice"


@pytest.mark.parametrize(
    ("style", "headers", "query", "message"),
    [
        (NGINX, {}, "", "original method in X-Original-Method"),
        (FORWARDED, {}, "", "original method in X-Forwarded-Method"),
        (NGINX, {"X-Original-Method": "get"}, "", "not an HTTP method"),
        (FORWARDED, {"X-Forwarded-Method": "GET /x"}, "", "not an HTTP method"),
        (FORWARDED, {"X-Forwarded-Method": "G" * 40}, "", "not an HTTP method"),
        (NGINX, {"X-Original-Method": "GET"}, "?require=everything", "require must be one of"),
        # the other proxy's headers name nothing: fail closed, never a pass
        (NGINX, {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/"}, "", "original method"),
        (FORWARDED, {"X-Original-Method": "GET", "X-Original-URI": "/"}, "", "original method"),
    ],
)
async def test_bad_proxy_input_is_a_clear_400(
    app: Quart, headers: dict[str, str], query: str, message: str
) -> None:
    response = await app.test_client().get("/_sessionwatch/verify" + query, headers=headers)
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"] == "bad_request" and message in body["message"]


@pytest.mark.parametrize("style", STYLES)
async def test_the_request_never_picks_the_header_style(app: Quart, style: str) -> None:
    """Issue 22: Traefik and Caddy pass a client's ``X-Original-Method`` on (and nginx
    a client's ``X-Forwarded-Method``); only the configured proxy's headers count, so a
    forged ``GET`` of the other style changes nothing."""
    client = app.test_client()
    older = await signed_in_tab(client)
    await client.post("/_sessionwatch/claim", json={})
    forged = (
        {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/"}
        if style == NGINX
        else {"X-Original-Method": "GET", "X-Original-URI": "/"}
    )
    cases = [
        (older, ORIGIN, "tab_superseded"),
        (None, ORIGIN, "tab_missing"),
        (older, "https://evil.example", "origin_forbidden"),
    ]
    for tab, origin, code in cases:
        headers = {**proxy_headers(style, "POST", tab=tab, origin=origin), **forged}
        response = await client.get("/_sessionwatch/verify", headers=headers)
        assert refusal_of(response)["error"] == code, (tab, origin)
    anonymous = {**proxy_headers(style, "POST"), **forged}
    response = await app.test_client().get("/_sessionwatch/verify", headers=anonymous)
    assert refusal_of(response) == {"status": 401, "error": "no_session"}


@pytest.mark.parametrize("method", ["PROPFIND", "MKCOL", "LINK", "PURGE"])
async def test_an_unknown_method_is_unsafe_in_every_door(app: Quart, method: str) -> None:
    """One definition of the safe methods (core.origins): any other method, one nobody
    listed included, needs the active tab and an allowed origin, through forward-auth
    and on a protected Quart route alike (the route let a foreign PROPFIND through)."""
    from support.app_factory import watch_of

    watch = watch_of(app)

    @app.route("/dav", methods=[method])
    @watch.active_tab_required
    async def dav() -> str:
        return "done"

    client = app.test_client()
    tab = await signed_in_tab(client)
    refused = await verify(client, NGINX, method, tab=tab, origin="https://evil.example")
    assert refusal_of(refused)["error"] == "origin_forbidden"
    assert refusal_of(await verify(client, NGINX, method))["error"] == "tab_missing"
    assert (await verify(client, NGINX, method, tab=tab)).status_code == 204
    foreign = {"X-SessionWatch-Tab": tab, "Origin": "https://evil.example"}
    response = await client.open("/dav", method=method, headers=foreign)
    assert response.status_code == 403
    assert (await response.get_json())["error"] == "origin_forbidden"
    own = {"X-SessionWatch-Tab": tab, "Origin": ORIGIN}
    assert (await client.open("/dav", method=method, headers=own)).status_code == 200


def test_the_proxy_setting_is_checked() -> None:
    from sessionwatch.core.config import settings_from_env
    from sessionwatch.core.exceptions import ConfigurationError

    assert settings_from_env({}).forward_auth == "nginx"
    assert settings_from_env({"SESSIONWATCH_FORWARD_AUTH": "caddy"}).forward_auth == "caddy"
    with pytest.raises(ConfigurationError, match="SESSIONWATCH_FORWARD_AUTH: must be one of"):
        settings_from_env({"SESSIONWATCH_FORWARD_AUTH": "auto"})


async def test_a_user_id_is_percent_encoded_in_the_header(app: Quart) -> None:
    client = app.test_client()
    await signed_in_tab(client, user="zoë X-Admin: 1")
    response = await verify(client, NGINX, "GET")
    assert response.headers["X-SessionWatch-User"] == "zo%C3%AB%20X-Admin%3A%201"
    # A user id with CR/LF never gets that far: login refuses it (InvalidUserId).


async def test_a_forged_or_ended_cookie_is_401(app: Quart) -> None:
    client = app.test_client()
    client.set_cookie("localhost", "session", CookieSigner([SECRET]).sign(new_session_id()))
    assert (await verify(client, NGINX, "GET")).status_code == 401
    client = app.test_client()
    await signed_in_tab(client)
    await client.post("/logout")
    assert (await verify(client, NGINX, "GET")).status_code == 401


@pytest.mark.parametrize("style", STYLES)
async def test_backend_down_fails_closed_503(key_prefix: str, style: str) -> None:
    from support.redis_server import free_port

    app = make_proxy_app(
        f"redis://127.0.0.1:{free_port()}/0", key_prefix=key_prefix, forward_auth=style
    )
    client = app.test_client()  # no test_app(): the dead backend cannot connect at start-up
    client.set_cookie("localhost", "session", CookieSigner([SECRET]).sign(new_session_id()))
    for require in ("auto", "none"):
        response = await verify(client, style, "GET", require=require)
        assert refusal_of(response) == {"status": 503, "error": "backend_unavailable"}
        assert response.status_code == (403 if style == NGINX else 503)


async def test_one_redis_round_trip_per_verification(redis_url: str, key_prefix: str) -> None:
    import redis.asyncio as redis

    app = make_proxy_app(redis_url, key_prefix=key_prefix)
    async with app.test_app():
        client = app.test_client()
        tab = await signed_in_tab(client)
        probe = redis.Redis.from_url(redis_url)
        try:
            before = await probe.info("commandstats")
            started = time.monotonic()
            for _ in range(20):
                response = await verify(client, NGINX, "POST", tab=tab)
                assert response.status_code == 204
            after = await probe.info("commandstats")
            elapsed = time.monotonic() - started
        finally:
            await probe.aclose()
    calls = {
        name[len("cmdstat_") :]: after[name]["calls"] - before.get(name, {"calls": 0})["calls"]
        for name in after
        if name.startswith("cmdstat_") and name != "cmdstat_info"
    }
    # One script call per verification; commands the script runs inside Redis count in
    # commandstats too, but they are no round trips of ours. (This Redis is private to
    # the run and the tests run one at a time.)
    assert calls["evalsha"] == 20, calls
    script_inside = {"hgetall", "hget", "exists", "get", "pexpire", "hset", "hmget", "time"}
    # The hub's lost-state watch reads the store's epoch once a second (MULTI, SET NX, GET,
    # EXEC), whatever the request rate: allowed, but only at that pace, never per request.
    epoch_reads = calls.get("exec", 0)
    assert calls.get("multi", 0) == epoch_reads == calls.get("set", 0), calls
    assert epoch_reads <= elapsed + 2, (epoch_reads, elapsed)
    allowed = {"evalsha", *script_inside, "multi", "set", "exec"}
    assert {name for name, count in calls.items() if count} <= allowed, calls
