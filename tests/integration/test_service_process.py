"""The deployable service as an operator runs it: the Procfile's command, 2 workers, Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from support.push_processes import HttpBrowser, next_of, open_socket
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess


async def sign_in(browser: HttpBrowser, service: ServiceProcess, user: str) -> None:
    status, _ = await browser.request(
        "POST", service.url + "/login", form={"username": user, "password": "demo"}
    )
    assert status == 302


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
        tab = {"X-SessionWatch-Tab": token}
        transfer = service.url + "/api/transfer"
        assert (await browser.request("POST", transfer, {"amount": 1}, tab))[0] == 200

        redis.stop()
        assert (await browser.request("GET", service.url + "/readyz"))[0] == 503
        assert (await browser.request("GET", service.url + "/healthz"))[0] == 200
        status, body = await browser.request("POST", transfer, {"amount": 1}, tab)
        assert status == 503 and body["error"] == "backend_unavailable"

        redis.start()  # empty again: no persistence, every session is gone
        for _ in range(100):  # the readiness probe an orchestrator would make
            if (await browser.request("GET", service.url + "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("/readyz never recovered")
        status, body = await browser.request("POST", transfer, {"amount": 1}, tab)
        assert status == 401 and body["error"] == "no_session"  # fail closed, never let through
        await ws.close()
