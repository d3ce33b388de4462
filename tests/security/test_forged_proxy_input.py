"""Issue 22, items 2, 7, 8 and 9: what a client can put in front of forward-auth and
the service — a forged proxy header, deep JSON, a Host label no URL can be built for,
a log line of its own — on real ``sessionwatch serve`` processes (memory backend:
nothing here depends on Redis).

A signed-in session comes from the session API (``SESSIONWATCH_API_KEYS`` + ``POST
/_sessionwatch/api/v1/login``), as an upstream app gets it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from support.attacks import Answer, raw_request
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

API_KEY = "forged-input-api-key-0123456789"
FOREIGN = "https://evil.example"
# A NEL (U+0085) ends a line for str.splitlines() and some log readers: the URI
# carried it into the security log, and what followed read as a line of its own.
FORGED_LINE = '{"event":"login","user":"admin","forged":true}'


@contextlib.contextmanager
def service(*args: str, env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "memory://",
        key_prefix=f"forged:{uuid.uuid4().hex[:8]}:",
        args=list(args),
        # nginx, the service's default (ServiceProcess picks Traefik for the other suites)
        env={"SESSIONWATCH_API_KEYS": API_KEY, "SESSIONWATCH_FORWARD_AUTH": "nginx", **(env or {})},
    )
    with process:
        yield process


def own_origin(process: ServiceProcess) -> str:
    return f"http://127.0.0.1:{process.port}"


async def api_login(process: ServiceProcess, user: str = "alice") -> tuple[str, str]:
    """Sign ``user`` in through the session API: (the Cookie header, the tab token)."""
    answer = await api_call(process, "/login", json.dumps({"user": user}).encode())
    assert answer.status == 200, answer.body
    body = answer.json()
    return f"{body['cookie']['name']}={body['cookie']['value']}", body["tab"]


async def api_call(process: ServiceProcess, path: str, body: bytes) -> Answer:
    headers = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    return await raw_request(process.port, "POST", "/_sessionwatch/api/v1" + path, headers, body)


async def claim(process: ServiceProcess, cookie: str) -> str:
    """Another tab of the same browser claims: the token it gets."""
    headers = [("Cookie", cookie), ("Origin", own_origin(process))]
    headers.append(("Content-Type", "application/json"))
    answer = await raw_request(process.port, "POST", "/_sessionwatch/claim", headers, b"{}")
    assert answer.status == 200, answer.body
    return str(answer.json()["tab"])


async def verify(process: ServiceProcess, headers: list[tuple[str, str]]) -> Answer:
    return await raw_request(process.port, "GET", "/_sessionwatch/verify", headers)


def refusal(answer: Answer) -> Any:
    return json.loads(answer.header("X-SessionWatch-Refusal") or "null")


# -- item 2: the request never picks the proxy's header style -------------------------


@pytest.mark.parametrize("proxy", ["traefik", "caddy"])
async def test_a_forged_original_method_does_not_pass_behind_traefik_or_caddy(
    proxy: str,
) -> None:
    """Traefik and Caddy send ``X-Forwarded-Method`` and pass a client's own
    ``X-Original-Method: GET`` on. A stale tab, a missing token, a foreign origin and no
    session at all each got 204 with it; they get their refusal."""
    with service(env={"SESSIONWATCH_FORWARD_AUTH": proxy}) as process:
        cookie, older = await api_login(process)
        newer = await claim(process, cookie)
        origin = own_origin(process)

        def original(tab: str | None, origin: str | None, cookie: str | None) -> Any:
            headers = [
                ("X-Forwarded-Method", "POST"),
                ("X-Forwarded-Uri", "/api/transfer"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", f"127.0.0.1:{process.port}"),
                ("X-Original-Method", "GET"),  # the client's forgery, passed on
                ("X-Original-URI", "/"),
            ]
            headers += [("X-SessionWatch-Tab", tab)] if tab else []
            headers += [("Origin", origin)] if origin else []
            headers += [("Cookie", cookie)] if cookie else []
            return headers

        cases = [
            (older, origin, cookie, 409, "tab_superseded"),
            (None, origin, cookie, 409, "tab_missing"),
            (newer, FOREIGN, cookie, 403, "origin_forbidden"),
            (None, origin, None, 401, "no_session"),
        ]
        for tab, sent_origin, sent_cookie, status, code in cases:
            answer = await verify(process, original(tab, sent_origin, sent_cookie))
            assert (answer.status, refusal(answer)["error"]) == (status, code), answer.body
        passed = await verify(process, original(newer, origin, cookie))
        assert passed.status == 204
        assert passed.header("X-SessionWatch-User") == "alice"


async def test_without_the_configured_proxys_headers_verify_fails_closed() -> None:
    """Behind nginx (the default proxy, ``test_forward_auth.py::test_the_proxy_setting_is_checked``)
    Traefik's headers alone name nothing (400, never a pass), and so nginx's behind a
    service configured for Traefik."""
    forwarded = [("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/")]
    original = [("X-Original-Method", "GET"), ("X-Original-URI", "/")]
    nginx, traefik = ({"SESSIONWATCH_FORWARD_AUTH": proxy} for proxy in ("nginx", "traefik"))
    for env, headers in ((nginx, forwarded), (traefik, original)):
        with service(env=env) as process:
            cookie, _ = await api_login(process)
            answer = await verify(process, [*headers, ("Cookie", cookie)])
            assert answer.status == 400, answer.body
            assert answer.json()["error"] == "bad_request"
            assert "original method" in answer.json()["message"]


# -- item 7: deep JSON is a 400 everywhere --------------------------------------------


async def test_deep_json_is_a_400_not_a_500() -> None:
    """1,000 ``[`` in ``X-SessionWatch-Refusal`` and deep session API bodies answered
    500 (``RecursionError``) with a traceback."""
    with service() as process:
        deep = "[" * 1000
        answer = await raw_request(
            process.port, "GET", "/_sessionwatch/refusal", [("X-SessionWatch-Refusal", deep)]
        )
        assert answer.status == 400 and answer.json()["error"] == "bad_request"
        for path in ("/login", "/logout", "/revoke"):
            for body in (b"[" * 5000, b'{"user": ' + b"[" * 5000 + b"}"):
                answer = await api_call(process, path, body)
                assert answer.status == 400, (path, answer.status)
                assert answer.json()["error"] == "bad_request"
        assert "Traceback" not in process.output()


# -- item 8: a Host no URL can be built for -------------------------------------------

BAD_HOSTS = ["a" * 64, "a" * 64 + ".example:8000", "app..example", "x." + "y" * 200]


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_a_host_label_of_64_characters_is_a_400_on_every_route(server: str) -> None:
    """werkzeug's IDNA encoding refuses the host while Quart binds its URL map: every
    Quart route answered 500 with a traceback, the raw claim answered 200. Now every
    route (and the WebSocket handshake) answers 400 ``bad_host``."""
    with service("--server", server) as process:
        routes = [
            ("GET", "/readyz", []),
            ("GET", "/_sessionwatch/client.js", []),
            ("GET", "/_sessionwatch/verify", [("X-Original-Method", "GET")]),
            ("GET", "/_sessionwatch/state", []),
            ("POST", "/_sessionwatch/claim", [("Content-Type", "application/json")]),
            ("GET", "/no-such-page", []),
        ]
        for host in BAD_HOSTS:
            for method, path, headers in routes:
                origin = [("Origin", f"http://{host}")]
                answer = await raw_request(
                    process.port, method, path, headers + origin, b"{}", host=host
                )
                assert answer.status == 400, (host, path, answer.status, answer.body[:200])
                assert answer.json()["error"] == "bad_host"
            assert await websocket_handshake_status(process.port, host) == 400
        good = await raw_request(process.port, "GET", "/readyz", host="app.example")
        assert good.status == 200
        assert "Traceback" not in process.output()


async def test_a_bad_host_is_a_400_on_the_apps_own_routes_too() -> None:
    """Not only sessionwatch's routes: the check sits in front of the whole app that
    uses the extension (its own pages, its WebSocket routes, its 404s)."""
    from support.app_factory import make_app

    app = make_app("memory://")
    async with app.test_app():
        client = app.test_client()
        for host in BAD_HOSTS:
            for path in ("/public", "/data", "/nowhere"):
                response = await client.get(path, headers={"Host": host})
                assert response.status_code == 400, (host, path)
                assert (await response.get_json())["error"] == "bad_host"
        assert (await client.get("/public", headers={"Host": "app.example"})).status_code == 200


async def websocket_handshake_status(port: int, host: str) -> int:
    """The status line of a WebSocket handshake to ``/_sessionwatch/ws`` with ``host``."""
    request = (
        "GET /_sessionwatch/ws HTTP/1.1\r\n"
        f"Host: {host}\r\nOrigin: http://{host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(request.encode("latin-1"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return int(status_line.split()[1])


# -- item 9: the security log cannot be forged ----------------------------------------


async def test_a_nel_in_the_original_uri_cannot_forge_a_security_log_line() -> None:
    """The origin refusal of ``/verify`` logged ``X-Original-URI`` as plain text: a
    NEL in it started a line of the attacker's. Every security line is one JSON
    object now, ASCII only, whatever the header held."""
    with service() as process:
        cookie, tab = await api_login(process)
        headers = [
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/api/transfer\x85" + FORGED_LINE),  # sent as byte 0x85
            ("Origin", FOREIGN),
            ("X-SessionWatch-Tab", tab),
            ("Cookie", cookie),
        ]
        answer = await verify(process, headers)
        assert answer.status == 403 and refusal(answer)["error"] == "origin_forbidden"
        lines = process.output().splitlines()  # a NEL ends a line here
        for line in lines:
            assert not line.lstrip().startswith(FORGED_LINE), lines
            if FORGED_LINE in line:
                assert " sessionwatch.security " in line and line.isascii(), line
        security = [line for line in lines if " sessionwatch.security " in line]
        refused = [json.loads(line.split("] ", 1)[1]) for line in security]
        assert any(
            event["event"] == "origin_refused" and FORGED_LINE in event["uri"] for event in refused
        ), security
