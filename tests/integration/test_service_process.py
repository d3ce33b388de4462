"""The deployable service as an operator runs it: the Procfile's command, 2 workers, Redis."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path

import pytest

from support.real_client import RealBrowser, next_of
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _children(service: ServiceProcess) -> list[int]:
    """Processes whose parent is the service's main process (Linux /proc)."""
    assert service.process is not None
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == service.process.pid and "python" in (
            stat.parent / "cmdline"
        ).read_text(errors="replace"):
            children.append(int(stat.parent.name))
    return children


async def test_procfile_command_pushes_across_two_workers(redis_url: str) -> None:
    with ServiceProcess(
        redis_url, workers=2, procfile=True, key_prefix=f"proc:{uuid.uuid4().hex[:8]}:"
    ) as service:
        browser = RealBrowser(service.url)
        await browser.sign_in("olga")
        # Several tabs, so that (with 2 workers sharing the port) sockets land on both.
        tokens, sockets = [], []
        for _ in range(6):
            token = (await browser.claim())["tab"]
            tokens.append(token)
        for _ in range(6):
            sockets.append(await browser.socket(tokens[-1]))
        newest = await browser.claim()  # one HTTP request, served by either worker
        for ws in sockets:
            told = await next_of(ws, "superseded")
            assert told["gen"] == newest["gen"]
        for ws in sockets:
            await ws.close()
        _, metrics = await browser.request("GET", "/metrics")
        assert "sessionwatch_claims_total 7.0" in metrics  # both workers' claims, summed
        assert len(_children(service)) >= 2  # the supervisor's two workers


async def test_readyz_follows_redis_and_protected_routes_fail_closed() -> None:
    with RedisServer() as redis, ServiceProcess(redis.url, workers=1) as service:
        browser = RealBrowser(service.url)
        await browser.sign_in("rita")
        token = (await browser.claim())["tab"]
        ws = await browser.socket(token)
        headers = {"X-SessionWatch-Tab": token}
        assert (
            await browser.request("POST", "/api/transfer", json_body={"amount": 1}, headers=headers)
        )[0] == 200

        redis.stop()
        assert await asyncio.to_thread(_status, service.url + "/readyz") == 503
        assert await asyncio.to_thread(_status, service.url + "/healthz") == 200
        status, body = await browser.request(
            "POST", "/api/transfer", json_body={"amount": 1}, headers=headers
        )
        assert status == 503 and body["error"] == "backend_unavailable"

        redis.start()  # empty again: no persistence, every session is gone
        for _ in range(100):
            if await asyncio.to_thread(_status, service.url + "/readyz") == 200:
                break
            await asyncio.sleep(0.1)
        assert await asyncio.to_thread(_status, service.url + "/readyz") == 200
        status, body = await browser.request(
            "POST", "/api/transfer", json_body={"amount": 1}, headers=headers
        )
        assert status == 401 and body["error"] == "no_session"  # fail closed, never let through
        # The open socket learns it too, once the hub has resynchronised.
        async with asyncio.timeout(20):
            while True:
                try:
                    raw = await ws.recv()
                except Exception:
                    break
                if json.loads(raw)["type"] in ("revoked", "expired", "logged_out"):
                    break
        await ws.close()
