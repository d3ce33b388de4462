"""Every door agrees: one table of request facts, run through each way in.

The engine (``sessionwatch.engine``) decides; the doors only read a request into facts
and write the answer. This table proves it from the outside: each row is a request
(a stale, missing, forged or current tab, a foreign page, a gone session, a dead
backend, a proxy's forwarded headers) and the answer the engine gives it; each door
must answer the same status and stable code:

- ``decorator``: a route under ``@active_tab_required`` (Quart);
- ``claim``: ``POST /_sessionwatch/claim`` (served on raw ASGI);
- ``state``: ``GET /_sessionwatch/state`` (raw ASGI; it reports the tab's status in its
  body instead of refusing, so a tab row is checked there);
- ``ws-raw`` / ``ws-quart``: the WebSocket handshake, served on raw ASGI or by the Quart
  view (an app with a WebSocket hook), both through ``live.handshake.open_handshake``;
- ``verify-traefik`` / ``verify-nginx``: forward-auth ``/verify`` (``require=auto``, the
  original request a POST); nginx's style carries every refusal but a 401 as a 403 with
  the real one in ``X-SessionWatch-Refusal``, which is what is compared;
- ``api``: the session API (server to server: it refuses any browser-looking request
  outright, so only the rows that reach it from a server apply).

A door a row does not apply to is left out with the reason (a claim starts a new
session rather than refusing a gone one; a handshake checks the tab at ``hello``, not
before the upgrade). Memory, Redis (a private redis-server) and Redis Cluster (a
private 6-node cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart
from quart.asgi import ASGIHTTPConnection
from quart.testing import app as quart_testing
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

from sessionwatch import CloseCode, Policy
from sessionwatch.core.tokens import CookieSigner, new_session_id
from sessionwatch.service.proxies import TrustedProxies
from support.app_factory import API_KEYS, SECRET, make_proxy_app, watch_of
from support.clock import FakeClock
from support.redis_server import free_port

WAIT = 5.0
HOST = "localhost"
OWN = f"https://{HOST}"
PASS = (200, "pass")  # the request passes (each door's own success status)

DOORS = (
    "decorator",
    "claim",
    "state",
    "ws-raw",
    "ws-quart",
    "verify-traefik",
    "verify-nginx",
    "api",
)


@dataclass
class Request:
    """What a row's browser sends: session cookie copies, tab token, headers."""

    cookies: list[str] = field(default_factory=list)
    tab: str | None = None
    origin: str | None = OWN
    fetch_site: str | None = None
    scheme: str = "https"
    headers: dict[str, str] = field(default_factory=dict)
    client: tuple[str, int] | None = None  # the TCP peer (forwarded rows)


@dataclass
class Setup:
    """A row's world: the app (served or not) and the request to send."""

    app: Quart
    request: Request
    cookie_name: str = "__Host-session"


Prepare = Callable[[Quart, "Tab"], Awaitable[Request]]


@dataclass(frozen=True)
class Row:
    name: str
    expected: tuple[int, str]
    prepare: Prepare
    # doors the row does not apply to -> why
    skip: dict[str, str] = field(default_factory=dict)
    # doors known to disagree today -> why (strict xfail: fixing them flips the test)
    disagree: dict[str, str] = field(default_factory=dict)
    backend_down: bool = False
    proxy: str | None = None  # TrustedProxies(app, proxy) in front of the app


class Tab:
    """A browser tab of the app: claims over HTTPS and keeps its cookie and token."""

    def __init__(self, app: Quart, *, scheme: str = "https", client: Any = None) -> None:
        self.app = app
        self.scheme = scheme
        self.client = client
        self.cookie_name = ""
        self.cookie = ""
        self.token = ""
        self.session = ""

    async def claim(self, extra: dict[str, str] | None = None) -> str:
        """Claim a tab (with this tab's cookie, if any); returns the token."""
        headers = {"Origin": OWN, "Content-Type": "application/json", **(extra or {})}
        if self.cookie:
            headers["Cookie"] = f"{self.cookie_name}={self.cookie}"
        client = self.app.test_client(use_cookies=False)
        scope = {"client": self.client} if self.client else None
        response = await asyncio.wait_for(
            client.post(
                "/_sessionwatch/claim",
                data=b"{}",
                headers=headers,
                scheme=self.scheme,
                scope_base=scope,
            ),
            WAIT,
        )
        assert response.status_code == 200, await response.get_data()
        set_cookie = response.headers.get("Set-Cookie")
        if set_cookie:
            name, _, rest = set_cookie.partition("=")
            self.cookie_name, self.cookie = name, rest.split(";")[0]
        body = await response.get_json()
        self.token, self.session = body["tab"], body["session"]
        return self.token


def _foreign_cookie() -> str:
    return CookieSigner([SECRET]).sign(new_session_id())


# -- the rows -------------------------------------------------------------------------------


async def _current(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    return Request(cookies=[tab.cookie], tab=tab.token)


async def _stale(app: Quart, tab: Tab) -> Request:
    old = await tab.claim()
    await tab.claim()  # a newer tab of the same session wins
    return Request(cookies=[tab.cookie], tab=old)


async def _missing(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    return Request(cookies=[tab.cookie], tab=None)


async def _forged(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    return Request(cookies=[tab.cookie], tab="1.forged-token-that-is-not-signed")


async def _foreign_origin(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    return Request(cookies=[tab.cookie], tab=tab.token, origin="https://evil.example")


async def _cross_site(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    return Request(cookies=[tab.cookie], tab=tab.token, origin=None, fetch_site="cross-site")


async def _no_origin(app: Quart, tab: Tab) -> Request:
    # A client that sends no Origin and no Sec-Fetch-Site (not a browser's unsafe
    # request): the tab token proves the page.
    await tab.claim()
    return Request(cookies=[tab.cookie], tab=tab.token, origin=None)


async def _no_cookie(app: Quart, tab: Tab) -> Request:
    return Request()


async def _tossed(app: Quart, tab: Tab) -> Request:
    # A sibling subdomain tossed a copy of the cookie's name next to the real one.
    await tab.claim()
    return Request(cookies=["tossed-by-a-sibling", tab.cookie], tab=tab.token)


async def _forged_cookie(app: Quart, tab: Tab) -> Request:
    return Request(cookies=[_foreign_cookie()], tab="1.whatever")


async def _revoked(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    assert await watch_of(app).revoke_session(tab.session)
    return Request(cookies=[tab.cookie], tab=tab.token)


async def _expired(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    clock: FakeClock = watch_of(app).clock  # type: ignore[assignment]
    clock.advance(watch_of(app).settings.idle_timeout + 60)
    return Request(cookies=[tab.cookie], tab=tab.token)


async def _logged_out(app: Quart, tab: Tab) -> Request:
    await tab.claim()
    assert await watch_of(app).engine.logout(tab.session)
    return Request(cookies=[tab.cookie], tab=tab.token)


async def _backend_down(app: Quart, tab: Tab) -> Request:
    tab.cookie_name = "__Host-session"
    return Request(cookies=[_foreign_cookie()], tab="1.whatever")


# A proxy at 10.0.0.1 says the browser used HTTPS; the app itself is reached over HTTP.
PROXY = "10.0.0.1"


async def _forwarded_from_proxy(app: Quart, tab: Tab) -> Request:
    forwarded = {"X-Forwarded-Proto": "https"}
    tab.scheme, tab.client = "http", (PROXY, 40000)
    await tab.claim(forwarded)
    return Request(
        cookies=[tab.cookie], tab=tab.token, scheme="http", headers=forwarded, client=tab.client
    )


async def _forwarded_from_stranger(app: Quart, tab: Tab) -> Request:
    # The same session, but this request reaches the app from a peer that is not the
    # proxy: its X-Forwarded-Proto is not believed, so the page's https origin is foreign.
    request = await _forwarded_from_proxy(app, tab)
    request.client = ("203.0.113.9", 40000)
    return request


_NOT_CHECKED_BY_CLAIM = "a claim starts a new session instead of refusing a gone one"
_TAB_AT_HELLO = "a handshake checks the tab at hello (close 4007), not before the upgrade"
_HANDSHAKE_NEEDS_ORIGIN = (
    "a handshake has no tab token before the upgrade: it needs an allowed Origin "
    "(a missing one only with allow_missing_origin)"
)
_SAFE_GET = "GET /state is a safe request: no origin check"
_API_BROWSER = "the session API refuses any browser-looking request (403 api_browser_forbidden)"
_ALL_API = {"api": _API_BROWSER}

ROWS = [
    Row("current tab", PASS, _current, {**_ALL_API}),
    Row(
        "stale tab",
        (409, "tab_superseded"),
        _stale,
        {
            "claim": "a claim makes the tab current",
            "ws-raw": _TAB_AT_HELLO,
            "ws-quart": _TAB_AT_HELLO,
            **_ALL_API,
        },
    ),
    Row(
        "missing tab",
        (409, "tab_missing"),
        _missing,
        {
            "claim": "a claim needs no tab",
            "ws-raw": _TAB_AT_HELLO,
            "ws-quart": _TAB_AT_HELLO,
            **_ALL_API,
        },
    ),
    Row(
        "forged tab",
        (409, "tab_invalid"),
        _forged,
        {
            "claim": "a claim needs no tab",
            "ws-raw": _TAB_AT_HELLO,
            "ws-quart": _TAB_AT_HELLO,
            **_ALL_API,
        },
    ),
    Row(
        "foreign Origin",
        (403, "origin_forbidden"),
        _foreign_origin,
        {"state": _SAFE_GET, **_ALL_API},
    ),
    Row(
        "Sec-Fetch-Site cross-site, no Origin",
        (403, "origin_forbidden"),
        _cross_site,
        {"state": _SAFE_GET, **_ALL_API},
    ),
    Row(
        "no Origin, no Sec-Fetch-Site, the active tab",
        PASS,
        _no_origin,
        {
            "ws-raw": _HANDSHAKE_NEEDS_ORIGIN,
            "ws-quart": _HANDSHAKE_NEEDS_ORIGIN,
            **_ALL_API,
        },
    ),
    Row("no cookie", (401, "no_session"), _no_cookie, {"claim": _NOT_CHECKED_BY_CLAIM, **_ALL_API}),
    Row("tossed cookie beside the real one", PASS, _tossed, {**_ALL_API}),
    Row(
        "forged cookie",
        (401, "no_session"),
        _forged_cookie,
        {"claim": _NOT_CHECKED_BY_CLAIM, **_ALL_API},
    ),
    Row("revoked", (401, "revoked"), _revoked, {"claim": _NOT_CHECKED_BY_CLAIM, **_ALL_API}),
    Row("expired", (401, "expired"), _expired, {"claim": _NOT_CHECKED_BY_CLAIM, **_ALL_API}),
    Row(
        "logged out", (401, "no_session"), _logged_out, {"claim": _NOT_CHECKED_BY_CLAIM, **_ALL_API}
    ),
    Row("backend down", (503, "backend_unavailable"), _backend_down, backend_down=True),
    Row(
        "forwarded https from the trusted proxy",
        PASS,
        _forwarded_from_proxy,
        {**_ALL_API},
        proxy=PROXY,
    ),
    Row(
        "forwarded https from an untrusted peer",
        (403, "origin_forbidden"),
        _forwarded_from_stranger,
        {"state": _SAFE_GET, **_ALL_API},
        proxy=PROXY,
    ),
]


# -- the doors ------------------------------------------------------------------------------


def _headers(request: Request, name: str, *, tab: bool = True) -> dict[str, str]:
    headers: dict[str, str] = {"User-Agent": "Mozilla/5.0 Chrome/120.0", **request.headers}
    if request.cookies:
        headers["Cookie"] = "; ".join(f"{name}={value}" for value in request.cookies)
    if request.origin is not None:
        headers["Origin"] = request.origin
    if request.fetch_site is not None:
        headers["Sec-Fetch-Site"] = request.fetch_site
    if tab and request.tab is not None:
        headers["X-SessionWatch-Tab"] = request.tab
    return headers


def _scope(request: Request) -> dict[str, Any] | None:
    return {"client": request.client} if request.client else None


async def _json_outcome(response: Any, success: int) -> tuple[int, str]:
    if response.status_code == success:
        return PASS
    body = await response.get_json()
    return response.status_code, str(body["error"])


async def _http(setup: Setup, method: str, path: str, *, tab: bool = True) -> Any:
    request = setup.request
    client = setup.app.test_client(use_cookies=False)
    headers = _headers(request, setup.cookie_name, tab=tab)
    if method == "POST":
        headers["Content-Type"] = "application/json"
    return await asyncio.wait_for(
        client.open(
            path,
            method=method,
            data=b"{}" if method == "POST" else b"",
            headers=headers,
            scheme=request.scheme,
            scope_base=_scope(request),
        ),
        WAIT,
    )


async def door_decorator(setup: Setup) -> tuple[int, str]:
    return await _json_outcome(await _http(setup, "POST", "/transfer"), 200)


async def door_claim(setup: Setup) -> tuple[int, str]:
    return await _json_outcome(await _http(setup, "POST", "/_sessionwatch/claim", tab=False), 200)


async def door_state(setup: Setup) -> tuple[int, str]:
    response = await _http(setup, "GET", "/_sessionwatch/state")
    if response.status_code != 200:
        return await _json_outcome(response, 200)
    tab = (await response.get_json())["tab"]  # the state says what the decorator decides
    return PASS if tab == "active" else (409, f"tab_{tab}")


async def _websocket(setup: Setup) -> tuple[int, str]:
    request = setup.request
    client = setup.app.test_client(use_cookies=False)
    headers = _headers(request, setup.cookie_name, tab=False)
    scheme = "wss" if request.scheme == "https" else "ws"
    connection = client.websocket(
        "/_sessionwatch/ws", scheme=scheme, headers=headers, scope_base=_scope(request)
    )
    async with connection as ws:
        try:
            # Accepted sockets must say hello first: a ping closes them 1008.
            await asyncio.wait_for(ws.send(json.dumps({"type": "ping"})), WAIT)
            await asyncio.wait_for(ws.receive(), WAIT)
        except WebsocketResponseError as exc:
            return await _json_outcome(exc.response, 101)
        except WebsocketDisconnectError as exc:
            assert exc.args[0] == CloseCode.POLICY_VIOLATION
            return PASS
    raise AssertionError("the socket answered a ping before its hello")


async def door_ws_raw(setup: Setup) -> tuple[int, str]:
    return await _websocket(setup)


async def door_ws_quart(setup: Setup) -> tuple[int, str]:
    return await _websocket(setup)


async def _verify(setup: Setup, nginx: bool) -> tuple[int, str]:
    request = setup.request
    client = setup.app.test_client(use_cookies=False)
    headers = _headers(request, setup.cookie_name)
    if nginx:
        headers |= {"X-Original-Method": "POST", "X-Original-URI": "/transfer"}
    else:
        headers |= {
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Uri": "/transfer",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": HOST,
        }
    response = await asyncio.wait_for(
        client.get(
            "/_sessionwatch/verify",
            headers=headers,
            scheme=request.scheme,
            scope_base=_scope(request),
        ),
        WAIT,
    )
    if response.status_code == 204:
        return PASS
    refusal = json.loads(response.headers["X-SessionWatch-Refusal"])
    if nginx:  # nginx passes only 401 and 403 on; the header carries the real one
        assert response.status_code == (401 if refusal["status"] == 401 else 403)
    else:
        assert response.status_code == refusal["status"]
    return int(refusal["status"]), str(refusal["error"])


async def door_verify_traefik(setup: Setup) -> tuple[int, str]:
    return await _verify(setup, nginx=False)


async def door_verify_nginx(setup: Setup) -> tuple[int, str]:
    return await _verify(setup, nginx=True)


async def door_api(setup: Setup) -> tuple[int, str]:
    client = setup.app.test_client(use_cookies=False)
    response = await asyncio.wait_for(
        client.post(
            "/_sessionwatch/api/v1/revoke",
            json={"user": "alice"},
            headers={"Authorization": f"Bearer {API_KEYS[0]}"},
        ),
        WAIT,
    )
    return await _json_outcome(response, 200)


DOOR_FUNCTIONS: dict[str, Callable[[Setup], Awaitable[tuple[int, str]]]] = {
    "decorator": door_decorator,
    "claim": door_claim,
    "state": door_state,
    "ws-raw": door_ws_raw,
    "ws-quart": door_ws_quart,
    "verify-traefik": door_verify_traefik,
    "verify-nginx": door_verify_nginx,
    "api": door_api,
}


# -- the suite ------------------------------------------------------------------------------


def _no_op() -> None:
    return None


@pytest.fixture(name="world")
async def _world(
    request: pytest.FixtureRequest, backend_url: str, key_prefix: str, clock: FakeClock
) -> AsyncIterator[tuple[Row, str, Setup]]:
    row, door = request.param
    # /verify reads the original request from the configured proxy's headers only.
    style = "traefik" if door == "verify-traefik" else "nginx"
    app = _row_app(row, backend_url, key_prefix, clock, style)
    if door == "ws-quart":
        app.before_websocket(_no_op)  # a WebSocket hook: Quart's view serves the socket
    async with _served(row, app) as setup:
        yield row, door, setup


def _row_app(row: Row, backend_url: str, key_prefix: str, clock: FakeClock, style: str) -> Quart:
    """The row's app (a dead backend's for the backend-down row), forward-auth ``style``."""
    url = f"redis://127.0.0.1:{free_port()}/0" if row.backend_down else backend_url
    return _proxy_app(url, key_prefix, clock, style)


def _proxy_app(url: str, key_prefix: str, clock: FakeClock, style: str, **options: Any) -> Quart:
    """The app behind proxy ``style`` (default policy, the fake clock)."""
    return make_proxy_app(
        url, key_prefix=key_prefix, clock=clock, policy=Policy(), forward_auth=style, **options
    )


@contextlib.asynccontextmanager
async def _served(row: Row, app: Quart) -> AsyncIterator[Setup]:
    """The row's world: ``app`` served (behind the row's proxy) and the row prepared."""
    if row.proxy is not None:
        app.asgi_app = TrustedProxies(app.asgi_app, row.proxy)  # type: ignore[method-assign]
    tab = Tab(app)
    if row.backend_down:  # not served: the dead backend cannot connect at start-up
        try:
            yield Setup(app, await row.prepare(app, tab))
        finally:
            await watch_of(app).backend.disconnect()
        return
    # A cluster client's start and close take seconds on a loaded machine.
    async with quart_testing.TestApp(app, startup_timeout=30, shutdown_timeout=30):
        prepared = await row.prepare(app, tab)
        yield Setup(app, prepared, tab.cookie_name or "__Host-session")


def _cases() -> list[Any]:
    cases = []
    for row in ROWS:
        for door in DOORS:
            marks: list[Any] = []
            if door in row.skip:
                continue
            if door in row.disagree:
                marks.append(pytest.mark.xfail(reason=row.disagree[door], strict=True))
            cases.append(pytest.param((row, door), id=f"{row.name}-{door}", marks=marks))
    return cases


# Memory, Redis and Redis Cluster, all in the default run (about 10 s for the cluster's
# cases). An app stopped right after it started once hung in its hub's stop on the
# cluster (tests/backends/test_cluster_pubsub_close.py says why).
@pytest.mark.parametrize("backend_kind", ["memory", "redis", "cluster"])
@pytest.mark.parametrize("world", _cases(), indirect=True)
async def test_every_door_gives_the_engines_answer(world: tuple[Row, str, Setup]) -> None:
    row, door, setup = world
    assert await DOOR_FUNCTIONS[door](setup) == row.expected


def test_every_row_reaches_most_doors() -> None:
    """A row skipped by most doors would prove little: each runs through at least 4."""
    for row in ROWS:
        assert len([d for d in DOORS if d not in row.skip]) >= 4, row.name


# -- one client-address rule ----------------------------------------------------------------

# A client sent its own X-Forwarded-For line; the proxy added a line of its own. HTTP
# reads repeated fields as one list, so the client is the last hop: 192.0.2.7 both times.
TWO_LINES = [
    [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "192.0.2.7")],
    [("X-Forwarded-For", "198.51.100.2"), ("X-Forwarded-For", "192.0.2.7")],
]


def _with_lines(headers: dict[str, str], lines: list[tuple[str, str]]) -> Any:
    from werkzeug.datastructures import Headers

    result = Headers(headers)
    for name, value in lines:
        result.add(name, value)
    return result


@pytest.mark.parametrize("door", ["claim-raw", "claim-quart", "ws-raw", "ws-quart"])
async def test_two_forwarded_for_lines_are_one_list_at_every_door(
    backend_url: str, key_prefix: str, door: str
) -> None:
    """The address a door counts (new sessions, sockets per address) is the last hop
    of every X-Forwarded-For line together: the Quart paths once read the first line
    only, so a client's own line made each request a new address."""
    app = make_proxy_app(
        backend_url,
        key_prefix=key_prefix,
        trust_forwarded_for=True,
        max_new_sessions_per_second=1,
        max_sockets_per_address=1,
    )
    if door == "claim-quart":
        app.before_request(_no_op)  # a hook: Quart serves the claim, not the raw path
    if door == "ws-quart":
        app.before_websocket(_no_op)
    async with app.test_app():
        client = app.test_client(use_cookies=False)
        base = {"Origin": OWN, "Content-Type": "application/json"}
        if door.startswith("claim"):
            statuses = []
            for lines in TWO_LINES:
                response = await asyncio.wait_for(
                    client.post(
                        "/_sessionwatch/claim",
                        data=b"{}",
                        headers=_with_lines(base, lines),
                        scheme="https",
                    ),
                    WAIT,
                )
                statuses.append(response.status_code)
            assert statuses == [200, 429]  # the same address: over one new session a second
            return
        tab = Tab(app)
        await tab.claim()
        cookie = {"Origin": OWN, "Cookie": f"{tab.cookie_name}={tab.cookie}"}
        first = client.websocket(
            "/_sessionwatch/ws", scheme="wss", headers=_with_lines(cookie, TWO_LINES[0])
        )
        second = client.websocket(
            "/_sessionwatch/ws", scheme="wss", headers=_with_lines(cookie, TWO_LINES[1])
        )
        async with first as held:
            await asyncio.wait_for(
                held.send(json.dumps({"type": "hello", "v": 1, "tab": tab.token})), WAIT
            )
            assert json.loads(await asyncio.wait_for(held.receive(), WAIT))["type"] == "ready"
            async with second as ws:
                with pytest.raises(WebsocketDisconnectError) as closed:
                    await asyncio.wait_for(ws.receive(), WAIT)
                assert closed.value.args[0] == CloseCode.TOO_MANY_SOCKETS


# -- one rule for which methods are unsafe ------------------------------------------------


async def test_a_non_standard_method_is_unsafe_at_every_door(
    backend_url: str, key_prefix: str, clock: FakeClock
) -> None:
    """WebDAV's PROPFIND (or any method not known to be safe) needs an allowed origin:
    ``@active_tab_required`` once listed the unsafe methods (POST, PUT, PATCH, DELETE)
    and let a foreign page's PROPFIND through, while /verify listed the safe ones."""
    app = make_proxy_app(
        backend_url, key_prefix=key_prefix, clock=clock, policy=Policy(), forward_auth="traefik"
    )
    watch = watch_of(app)

    @app.route("/dav", methods=["PROPFIND"])
    @watch.active_tab_required
    async def dav() -> Any:
        return {"ok": True}

    async with app.test_app():
        tab = Tab(app)
        await tab.claim()
        request = Request(cookies=[tab.cookie], tab=tab.token, origin="https://evil.example")
        setup = Setup(app, request, tab.cookie_name)
        response = await _http(setup, "PROPFIND", "/dav")
        decorator = await _json_outcome(response, 200)
        client = app.test_client(use_cookies=False)
        headers = _headers(request, tab.cookie_name)
        headers |= {"X-Forwarded-Method": "PROPFIND", "X-Forwarded-Uri": "/dav"}
        verified = await client.get("/_sessionwatch/verify", headers=headers, scheme="https")
        assert decorator == (403, "origin_forbidden")
        assert json.loads(verified.headers["X-SessionWatch-Refusal"])["error"] == decorator[1]


async def test_a_bad_user_id_is_answered_from_the_table_not_a_500(
    backend_url: str, key_prefix: str
) -> None:
    """``watch.login()`` with a user id that could forge log lines raises
    ``InvalidUserId``; the app answers it from the one exception table (400
    ``bad_user_id``), as every other library error, instead of a 500."""
    app = make_proxy_app(backend_url, key_prefix=key_prefix)
    async with app.test_app():
        client = app.test_client()
        response = await client.post(
            "/login", json={"user": "mallory\nadmin"}, headers={"Origin": OWN}, scheme="https"
        )
        assert response.status_code == 400
        assert (await response.get_json())["error"] == "bad_user_id"


# -- /verify: the raw ASGI door and the Quart view answer alike -----------------------------

# What varies per request beyond the row's browser: the rule, the original request, and
# how the caller asks (fetch or navigation); and the requests every proxy may get wrong.
_NAVIGATION = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
VERIFY_ASKS: list[tuple[str, str, dict[str, str]]] = [
    ("auto, original POST", "require=auto", {}),
    ("default rule", "", {}),
    ("session", "require=session", {}),
    ("tab", "require=tab", {}),
    ("none", "require=none", {}),
    ("original GET", "require=auto", {"method": "GET"}),
    ("original GET, tab", "require=tab", {"method": "GET"}),
    ("navigation", "require=tab", {"method": "GET", "Sec-Fetch-Mode": "navigate"}),
    ("html Accept", "require=auto", {"Accept": "text/html"}),
    ("unknown rule", "require=everything", {}),
    ("repeated rule", "require=none&require=tab", {}),
    ("no original method", "require=auto", {"method": ""}),
    ("not a method", "require=auto", {"method": "post me"}),
    ("long URI", "require=auto", {"uri": "/x" * 2000}),
    # HTTP/1.0 without Host: Quart's request takes the host as empty, not the server's.
    ("HTTP/1.0, no Host", "require=auto", {"http": "1.0"}),
]
STYLES = ("nginx", "traefik", "caddy")


def _verify_scope(setup: Setup, style: str, query: str, ask: dict[str, str]) -> dict[str, Any]:
    request = setup.request
    ask = dict(ask)
    method, uri = ask.pop("method", "POST"), ask.pop("uri", "/transfer")
    version = ask.pop("http", "1.1")
    headers = _headers(request, setup.cookie_name) | ask
    names = ("X-Original-Method", "X-Original-URI")
    if style != "nginx":
        names = ("X-Forwarded-Method", "X-Forwarded-Uri")
        headers |= {"X-Forwarded-Proto": "https", "X-Forwarded-Host": HOST}
    if method:
        headers[names[0]] = method
    headers[names[1]] = uri
    if version != "1.0":
        headers.setdefault("Host", HOST)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": version,
        "method": "GET",
        "scheme": request.scheme,
        "path": "/_sessionwatch/verify",
        "raw_path": b"/_sessionwatch/verify",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode("latin1")) for k, v in headers.items()],
        "client": request.client or ("127.0.0.1", 50000),
        "server": (HOST, 443),
        "extensions": {},
    }


async def _asgi_answer(app: Quart, scope: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    """The whole answer of one request straight through the app's ASGI callable."""
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), WAIT)  # type: ignore[arg-type]
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], list(start["headers"]), body


async def _cookie_conflict(app: Quart, tab: Tab) -> Request:
    # Copies of two live sessions (a sibling subdomain planted its own genuine one).
    other = Tab(app)
    await other.claim()
    await tab.claim()
    return Request(cookies=[other.cookie, tab.cookie], tab=tab.token)


VERIFY_ROWS = [
    *[row for row in ROWS if "verify-nginx" not in row.skip],
    Row("cookie conflict", (401, "cookie_conflict"), _cookie_conflict),
]


@pytest.fixture(name="verify_world")
async def _verify_world(
    request: pytest.FixtureRequest, backend_url: str, key_prefix: str, clock: FakeClock
) -> AsyncIterator[tuple[Row, str, Setup]]:
    row, style = request.param
    async with _served(row, _row_app(row, backend_url, key_prefix, clock, style)) as setup:
        yield row, style, setup


def _verify_cases() -> list[Any]:
    return [
        pytest.param((row, style), id=f"{row.name}-{style}")
        for row in VERIFY_ROWS
        for style in STYLES
    ]


def _counting(app: Quart) -> list[bool]:
    """Record, per request, whether the raw ``/verify`` route was asked (``True``: it
    answered, ``False``: it handed the request to Quart; nothing: it was not asked)."""
    raw_class = app.asgi_http_class  # type: ignore[attr-defined]
    route = raw_class.routes["/_sessionwatch/verify"]
    answered: list[bool] = []

    async def counted(request: Any) -> Any:
        result = await route.answer(request)
        answered.append(result is not None)
        return result

    raw_class.routes["/_sessionwatch/verify"] = route._replace(answer=counted)
    return answered


async def _quart_answer(app: Quart, scope: dict[str, Any]) -> tuple[int, list[Any], bytes]:
    """The answer of the Quart view alone (the raw doors taken away for one request)."""
    raw_class = app.asgi_http_class  # type: ignore[attr-defined]
    app.asgi_http_class = ASGIHTTPConnection  # type: ignore[attr-defined]
    try:
        return await _asgi_answer(app, dict(scope))
    finally:
        app.asgi_http_class = raw_class  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend_kind", ["memory", "redis", "cluster"])
@pytest.mark.parametrize("verify_world", _verify_cases(), indirect=True)
async def test_raw_verify_answers_as_the_quart_view_byte_for_byte(
    verify_world: tuple[Row, str, Setup],
) -> None:
    """``GET /verify`` on raw ASGI and the Quart view give the same answer to every
    row and every way of asking (rule, original method, fetch or navigation, missing or
    bad proxy headers): the status, every header in order (the ``X-SessionWatch-*``
    headers for the upstream, ``Cache-Control``, ``Vary``, the ``Set-Cookie`` that
    clears a refused cookie, the refusal header) and the body. The raw door is checked
    to have answered (not handed the request to Quart); the row's expected outcome is
    checked on the ``auto`` ask."""
    row, style, setup = verify_world
    app = setup.app
    answered = _counting(app)
    for name, query, ask in VERIFY_ASKS:
        scope = _verify_scope(setup, style, query, ask)
        answered.clear()
        raw = await _asgi_answer(app, dict(scope))
        assert answered == [True], name
        assert raw == await _quart_answer(app, scope), name
        if name == "auto, original POST":
            status, headers, _ = raw
            refusal = dict(headers).get(b"x-sessionwatch-refusal")
            outcome = PASS if status == 204 else tuple(json.loads(refusal).values())[:2]
            assert outcome == row.expected


async def test_verify_goes_to_quart_when_the_app_adds_a_hook(
    backend_url: str, key_prefix: str
) -> None:
    """The raw door answers only while Quart would run nothing but the view: an
    app-wide ``before_request`` (or ``HEAD``) is Quart's, and still answered alike."""
    app = make_proxy_app(backend_url, key_prefix=key_prefix, forward_auth="nginx")
    raw_class = app.asgi_http_class  # type: ignore[attr-defined]
    route = raw_class.routes["/_sessionwatch/verify"]
    answered: list[Any] = []

    async def counted(request: Any) -> Any:
        answered.append(request)
        return await route.answer(request)

    raw_class.routes["/_sessionwatch/verify"] = route._replace(answer=counted)
    async with app.test_app():
        setup = Setup(app, Request())
        scope = _verify_scope(setup, "nginx", "require=auto", {})
        first = await _asgi_answer(app, dict(scope))
        assert len(answered) == 1 and first[0] == 401
        seen: list[str] = []
        app.before_request(lambda: seen.append("hook"))
        second = await _asgi_answer(app, dict(scope))
        assert seen == ["hook"] and len(answered) == 1
        assert second == first
        head = await _asgi_answer(app, {**scope, "method": "HEAD"})
        assert len(answered) == 1 and head[0] == 401


# -- /verify with step-up and remember-me: handed to the Quart view, answered alike -------

# (name, query, extra headers, whether the raw door answers it itself): step-up (a
# non-empty max_age) is the Quart view's; an empty max_age is no step-up.
STEP_UP_ASKS: list[tuple[str, str, dict[str, str], bool]] = [
    ("empty max_age", "require=auto&max_age=", {}, True),
    ("max_age, recent sign-in", "require=auto&max_age=300", {}, False),
    ("max_age, stale sign-in", "require=auto&max_age=60", {}, False),
    ("max_age, stale, navigation", "require=auto&max_age=60", _NAVIGATION, False),
    ("bad max_age", "require=auto&max_age=soon", {}, False),
    ("max_age 0", "require=auto&max_age=0", {}, False),
    ("repeated max_age", "require=auto&max_age=60&max_age=60", {}, False),
    ("max_age, refused tab", "require=tab&max_age=60", {"tab": "1.forged"}, False),
]
_RANDOM = (b"set-cookie", b"x-sessionwatch-set-session", b"x-sessionwatch-set-remember")


async def _signed_in(app: Quart, *, remember: bool = False) -> tuple[Tab, str]:
    """A signed-in tab over HTTPS (its session cookie and token) and its remember cookie
    (``""`` without ``remember``)."""
    client = app.test_client(use_cookies=False)
    login = await client.post(
        "/login", json={"user": "alice", "remember": remember}, scheme="https"
    )
    assert login.status_code == 200, await login.get_data()
    tab, cookies = Tab(app), {}
    for line in login.headers.getlist("Set-Cookie"):
        name, _, rest = line.partition("=")
        cookies[name] = rest.split(";")[0]
    tab.cookie_name = "__Host-session"
    tab.cookie = cookies.pop(tab.cookie_name)
    await tab.claim()
    return tab, cookies.get("__Host-sw_remember", "")


def _signed_in_setup(app: Quart, tab: Tab) -> Setup:
    return Setup(app, Request(cookies=[tab.cookie], tab=tab.token), tab.cookie_name)


def _masked(answer: tuple[int, list[Any], bytes]) -> tuple[int, list[Any], bytes]:
    """``answer`` with the random values (new cookies, the session's public id) hidden."""
    status, headers, body = answer
    random = (*_RANDOM, b"x-sessionwatch-session")
    return status, [(k, b"<random>" if k in random else v) for k, v in headers], body


@pytest.mark.parametrize("style", STYLES)
async def test_raw_verify_hands_step_up_to_the_quart_view_which_answers_alike(
    backend_url: str, key_prefix: str, clock: FakeClock, style: str
) -> None:
    """``/verify?max_age=`` (recent, stale, a navigation to the re-authentication page,
    bad, repeated, on a refused request) is handed to the Quart view before anything is
    read, and answers byte for byte as the view alone; an empty ``max_age`` is no
    step-up and the raw door answers it. Every answer carries the empty
    ``X-SessionWatch-Set-*`` headers."""
    app = _proxy_app(backend_url, key_prefix, clock, style, reauth_url="/confirm")
    answered = _counting(app)
    async with quart_testing.TestApp(app, startup_timeout=30, shutdown_timeout=30):
        tab, _ = await _signed_in(app)
        setup = _signed_in_setup(app, tab)
        statuses = {}
        for name, query, ask, raw_door in STEP_UP_ASKS:
            if name == "max_age, stale sign-in":
                clock.advance(61)
            ask = dict(ask, method="GET")
            if "tab" in ask:
                setup.request.tab = ask.pop("tab")
            scope = _verify_scope(setup, style, query, ask)
            setup.request.tab = tab.token
            answered.clear()
            raw = await _asgi_answer(app, dict(scope))
            assert answered == [raw_door], name
            assert raw == await _quart_answer(app, scope), name
            headers = dict(raw[1])
            assert headers[b"x-sessionwatch-set-session"] == b"", name
            assert headers[b"x-sessionwatch-set-remember"] == b"", name
            statuses[name] = raw[0]
    navigation = 401 if style == "nginx" else 303  # nginx: /refusal redirects
    assert statuses == {
        "empty max_age": 204,
        "max_age, recent sign-in": 204,
        "max_age, stale sign-in": 401,
        "max_age, stale, navigation": navigation,
        "bad max_age": 400,
        "max_age 0": 400,
        "repeated max_age": 400,
        "max_age, refused tab": 409 if style != "nginx" else 403,
    }


@pytest.mark.parametrize("style", STYLES)
async def test_raw_verify_hands_a_remember_cookie_to_the_quart_view(
    backend_url: str, key_prefix: str, clock: FakeClock, style: str
) -> None:
    """A request with a remember cookie is Quart's (only its session opening restores a
    session from it), before the raw route is asked: beside a live session it is
    answered byte for byte as the view alone; alone (a restarted browser) the answer
    restores the session and sends both new cookies in ``X-SessionWatch-Set-*``, as the
    view alone answers another restarted browser."""
    app = _proxy_app(backend_url, key_prefix, clock, style)
    answered = _counting(app)
    async with quart_testing.TestApp(app, startup_timeout=30, shutdown_timeout=30):
        tab, remember = await _signed_in(app, remember=True)
        assert remember
        setup = _signed_in_setup(app, tab)
        both = {"Cookie": f"{tab.cookie_name}={tab.cookie}; __Host-sw_remember={remember}"}
        scope = _verify_scope(setup, style, "require=auto", {"method": "GET", **both})
        raw = await _asgi_answer(app, dict(scope))
        assert answered == [] and raw[0] == 204
        assert raw == await _quart_answer(app, scope)

        restarted = []
        for door in ("raw", "quart"):
            _, remember = await _signed_in(app, remember=True)
            alone = {"Cookie": f"__Host-sw_remember={remember}"}
            scope = _verify_scope(Setup(app, Request()), style, "require=session", alone)
            if door == "raw":
                restarted.append(await _asgi_answer(app, dict(scope)))
            else:
                restarted.append(await _quart_answer(app, scope))
        assert answered == []
        status, headers, _ = restarted[0]
        sent = dict(headers)
        assert status == 204 and sent[b"x-sessionwatch-user"] == b"alice"
        assert sent[b"x-sessionwatch-set-session"].startswith(b"__Host-session=")
        assert sent[b"x-sessionwatch-set-remember"].startswith(b"__Host-sw_remember=")
        assert _masked(restarted[0]) == _masked(restarted[1])
