"""Step-up through real nginx with the documented snippets (issue 27): a location whose
``auth_request`` names ``/max-age/<seconds>`` passes a fresh sign-in, refuses an old one
with 401 ``reauth_required`` (JSON for fetch, through ``/refusal``) or a 303 to the
re-auth page for a navigation, and passes again once the upstream records the
re-authentication through the session API; locations without it are unchanged."""

from __future__ import annotations

import asyncio

import pytest

from security.test_cookie_choice import API_KEY, JSON_TYPE, api
from support.attacks import Answer, cookie_value, raw_request
from support.proxy import require_nginx
from support.service_process import ServiceProcess
from support.tls_proxy import TlsProxy

pytestmark = pytest.mark.multiprocess


async def test_an_nginx_location_with_max_age_asks_for_a_recent_sign_in() -> None:
    require_nginx()
    env = {"SESSIONWATCH_API_KEYS": API_KEY, "SESSIONWATCH_REAUTH_URL": "/reauth"}
    with (
        ServiceProcess(
            "memory://", args=["--forwarded-allow-ips", "127.0.0.1"], env=env
        ) as process,
        TlsProxy(process.port) as proxy,
    ):
        tls = proxy.client_context()

        async def over_https(method: str, path: str, *headers: tuple[str, str]) -> Answer:
            body = b"{}" if method == "POST" else b""
            headers = (("Origin", proxy.origin), *headers)
            return await raw_request(proxy.tls_port, method, path, list(headers), body, tls=tls)

        claim = await over_https("POST", "/_sessionwatch/claim", JSON_TYPE)
        page = "__Host-session=" + cookie_value(claim.cookies["__Host-session"])
        result = await api(process.port, "/login", {"user": "alice", "cookie": page})
        signed = ("Cookie", "__Host-session=" + result["cookie"]["value"])
        fresh = await over_https("GET", "/fresh", signed)
        assert fresh.status == 200 and fresh.header("X-Test-User") == "alice", fresh.body
        await asyncio.sleep(1.6)  # past the location's one-second window (a real clock)
        stale = await over_https("GET", "/fresh", signed)
        assert stale.status == 401, (stale.status, stale.body)
        assert stale.json()["error"] == "reauth_required" and stale.json()["max_age"] == 1
        assert stale.header("X-Test-User") is None
        navigation = await over_https(
            "GET", "/fresh?x=1", signed, ("Sec-Fetch-Mode", "navigate"), ("Accept", "text/html")
        )
        assert navigation.status == 303, (navigation.status, navigation.body)
        assert navigation.header("Location") == "/reauth?next=/fresh%3Fx%3D1"
        assert (await over_https("GET", "/app", signed)).status == 200  # no step-up there
        renewed = await api(process.port, "/reauthenticated", {"cookie": signed[1]})
        assert renewed["user"] == "alice"
        again = await over_https("GET", "/fresh", signed)
        assert again.status == 200 and again.header("X-Test-User") == "alice"
