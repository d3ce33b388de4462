"""Defect 3 of issue 13: when Redis loses the stored state (``FLUSHALL``, a restart
without persistence), the connected tabs are told within seconds, not at their old
idle deadline (30 minutes by default) with a spurious ``expiring``."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support.push_processes import HttpBrowser, open_socket
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

TELL_WITHIN = 5.0  # seconds; the hub reads the epoch every second
TABS = 4


async def open_tabs(service: ServiceProcess, user: str) -> tuple[HttpBrowser, list[Any]]:
    """One signed-in browser with ``TABS`` ready sockets (spread over the workers)."""
    browser = HttpBrowser(origin=service.url)
    assert (await service.sign_in(browser.cookies, user))[0] == 200
    token = (await browser.claim(service))["tab"]
    sockets = []
    for _ in range(TABS):
        ws = await open_socket(browser, service)
        await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        sockets.append(ws)
    return browser, sockets


async def close_code(ws: Any, timeout: float) -> tuple[int, list[str]]:
    """Wait for the server to close ``ws``: its code and the message types before it."""
    seen = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                seen.append(json.loads(await ws.recv())["type"])
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code, seen


async def assert_told(browser: HttpBrowser, service: ServiceProcess, sockets: list[Any]) -> float:
    started = time.monotonic()
    for ws in sockets:
        code, seen = await close_code(ws, TELL_WITHIN)
        assert code == 4013, (code, seen)  # "the session vanished": reconnect at once
        assert "expiring" not in seen
    told = time.monotonic() - started
    with pytest.raises(InvalidStatus) as refused:  # and the reconnect is refused
        await open_socket(browser, service)
    assert refused.value.response.status_code == 401
    return told


async def test_tabs_are_told_at_once_after_flushall_and_an_empty_restart() -> None:
    with RedisServer() as redis, ServiceProcess(redis.url, workers=2) as service:
        browser, sockets = await open_tabs(service, "ulla")
        admin = aioredis.Redis.from_url(redis.url)
        try:
            await asyncio.wait_for(admin.flushall(), 10)
        finally:
            await admin.aclose()
        await assert_told(browser, service, sockets)

        browser, sockets = await open_tabs(service, "vera")
        redis.restart()  # no persistence: every session is gone
        await assert_told(browser, service, sockets)


@pytest.mark.parametrize("backend_kind", ["memory", "redis", "cluster"])
async def test_the_epoch_is_stable_until_the_stored_state_is_lost(backend: Any) -> None:
    first = await backend.epoch()
    assert first and await backend.epoch() == first
    if hasattr(backend, "epoch_keys"):  # Redis: lose this test's keys (on a cluster, one
        # primary's: a primary restarted without persistence)
        await backend.client.delete(backend.epoch_keys()[0])
        assert await backend.epoch() not in ("", first)
