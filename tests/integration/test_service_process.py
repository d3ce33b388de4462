"""The deployable service as an operator runs it: the Procfile's command, 2 workers, Redis;
users signed in through the session API, as an upstream app does; and none of the demo's
surface (issue 21)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from sessionwatch.core.tokens import CookieSigner, new_session_id
from support.attacks import raw_request
from support.push_processes import HttpBrowser, next_of, open_socket
from support.redis_server import RedisServer
from support.service_process import DemoProcess, ServiceProcess

pytestmark = pytest.mark.multiprocess


async def sign_in(browser: HttpBrowser, service: ServiceProcess, user: str) -> None:
    status, body = await service.sign_in(browser.cookies, user)
    assert status == 200, body


async def verify(
    service: ServiceProcess, cookie: str | None, token: str = "", require: str = "tab"
) -> tuple[int, str | None]:
    """Ask ``/verify`` about a request with ``cookie`` (nginx's headers, the service's
    default): its status and the user it names; a refusal nginx cannot pass on (not a
    401 or 403) is the status ``/refusal`` would answer (``X-SessionWatch-Refusal``)."""
    headers = [("X-Original-Method", "GET"), ("X-Original-URI", "/api/transfer")]
    if cookie:
        headers.append(("Cookie", cookie))
    if token:
        headers.append(("X-SessionWatch-Tab", token))
    answer = await raw_request(
        service.port, "GET", f"/_sessionwatch/verify?require={require}", headers
    )
    refusal = answer.header("X-SessionWatch-Refusal")
    status = json.loads(refusal)["status"] if refusal else answer.status
    return status, answer.header("X-SessionWatch-User")


async def ready_socket(browser: HttpBrowser, service: ServiceProcess, token: str) -> Any:
    ws = await open_socket(browser, service)
    await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
    return ws


async def test_procfile_command_pushes_across_two_workers(redis_url: str) -> None:
    with ServiceProcess(
        redis_url, workers=2, procfile=True, key_prefix=f"proc:{uuid.uuid4().hex[:8]}:"
    ) as service:
        browser = HttpBrowser(origin=service.url)
        await sign_in(browser, service, "olga")
        # Several tabs, so that (with 2 workers sharing the port) sockets land on both.
        tokens = [(await browser.claim(service))["tab"] for _ in range(6)]
        sockets = [await ready_socket(browser, service, tokens[-1]) for _ in range(6)]
        newest = await browser.claim(service)  # one HTTP request, served by either worker
        for ws in sockets:
            assert (await next_of(ws, "superseded"))["gen"] == newest["gen"]
        for ws in sockets:
            await ws.close()
        _, metrics = await browser.request("GET", service.url + "/metrics")
        assert "sessionwatch_claims_total 7.0" in metrics  # both workers' claims, summed
        assert len(service.children()) >= 2  # the supervisor's two workers


async def test_readyz_follows_redis_and_protected_routes_fail_closed() -> None:
    with RedisServer() as redis, ServiceProcess(redis.url, workers=1) as service:
        browser = HttpBrowser(origin=service.url)
        await sign_in(browser, service, "rita")
        token = (await browser.claim(service))["tab"]
        ws = await ready_socket(browser, service, token)
        cookie = browser.headers()["Cookie"]
        assert await verify(service, cookie, token) == (204, "rita")

        redis.stop()
        assert (await browser.request("GET", service.url + "/readyz"))[0] == 503
        assert (await browser.request("GET", service.url + "/healthz"))[0] == 200
        assert (await verify(service, cookie, token))[0] == 503

        redis.start()  # empty again: no persistence, every session is gone
        for _ in range(100):  # the readiness probe an orchestrator would make
            if (await browser.request("GET", service.url + "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("/readyz never recovered")
        assert (await verify(service, cookie, token))[0] == 401  # fail closed, never let through
        await ws.close()


DEMO_PATHS = ["/", "/login", "/reauth", "/logout", "/policy", "/api/transfer", "/static/demo.js"]


async def test_the_service_has_no_demo_surface_and_no_universal_password() -> None:
    """Issue 21: ``sessionwatch serve`` was the demo: ``POST /login`` with any name and
    the password ``demo`` signed anyone in as anyone, and ``/verify`` then let that
    user through; ``POST /policy`` changed the deployment's policy. Now every demo
    route is 404 and the attempt gets no session that passes."""
    with ServiceProcess("memory://") as service:
        for path in DEMO_PATHS:
            for method in ("GET", "POST"):
                answer = await raw_request(service.port, method, path)
                assert answer.status == 404, (method, path, answer.status)
        form = ("application/x-www-form-urlencoded", b"username=victim&password=demo")
        attempt = await raw_request(
            service.port, "POST", "/login", [("Content-Type", form[0])], form[1]
        )
        assert attempt.status == 404
        jar = "; ".join(raw.split(";", 1)[0] for raw in attempt.cookies.values())
        for require in ("session", "auto", "none"):
            status, user = await verify(service, jar or None, require=require)
            assert user in (None, ""), (require, status, user)  # nobody is "victim"
        policy = b'{"tabs": "many", "devices": "1", "on_limit": "deny"}'
        answer = await raw_request(
            service.port, "POST", "/policy", [("Content-Type", "application/json")], policy
        )
        assert answer.status == 404


async def test_a_cookie_from_nowhere_never_passes_verify(redis_url: str) -> None:
    """A session cookie the service did not issue through the session API: forged, an
    unsigned session id, signed with another key, or a real session of the demo on the
    same Redis and key prefix (signed with the demo's own key) — none passes."""
    prefix = f"nowhere:{uuid.uuid4().hex[:8]}:"
    with (
        ServiceProcess(redis_url, key_prefix=prefix) as service,
        DemoProcess(redis_url, key_prefix=prefix) as demo,
    ):
        browser = HttpBrowser(origin=demo.url)
        status, _ = await browser.request(
            "POST", demo.url + "/login", form={"username": "victim", "password": "demo"}
        )
        assert status == 302  # the demo does sign anyone in: on its own key
        token = (await browser.claim(demo))["tab"]
        demo_cookie = browser.headers()["Cookie"]
        session_id = new_session_id()
        other_key = CookieSigner(["another-service-key-0123456789-abcdefgh"]).sign(session_id)
        for cookie in (
            demo_cookie,
            "session=forged",
            f"session={session_id}",
            f"session={other_key}",
            f"__Host-session={other_key}",
        ):
            for require in ("tab", "session", "auto"):
                status, user = await verify(service, cookie, token, require)
                assert status == 401, (cookie, require, status)
                assert user in (None, "")
        # The service's own sign-in does pass (the test can fail).
        signed = HttpBrowser(origin=service.url)
        await sign_in(signed, service, "victim")
        assert await verify(service, signed.headers()["Cookie"], require="session") == (
            204,
            "victim",
        )


async def test_the_policy_comes_from_the_environment() -> None:
    """``SESSIONWATCH_SESSIONS_PER_USER=1`` with ``SESSIONWATCH_ON_LIMIT=deny``: the
    second sign-in of a user is refused (it was an unknown setting before)."""
    env = {"SESSIONWATCH_SESSIONS_PER_USER": "1", "SESSIONWATCH_ON_LIMIT": "deny"}
    with ServiceProcess("memory://", env=env) as service:
        assert (await service.sign_in({}, "dana"))[0] == 200
        status, body = await service.sign_in({}, "dana")
        assert status == 403 and body["error"] == "session_limit_reached", body
        assert body["limit"] == 1
        assert (await service.sign_in({}, "erin"))[0] == 200  # per user
