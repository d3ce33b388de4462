"""Defect 1 of issue 13: once Redis is back and ``/readyz`` says 200, every answer is
healthy. Pooled connections the server closed (``CLIENT KILL``, a restart) must not
be used for a command: before the fix, 49 of 400 requests answered 503 after
``CLIENT KILL TYPE normal`` and bursts after a restart failed 48, 6 and 3 times."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from support.push_processes import HttpBrowser
from support.redis_server import RedisServer
from support.service_process import PROTECTED, VERIFY_TAB, ServiceProcess

pytestmark = pytest.mark.multiprocess

BURSTS = 4
BURST = 50


async def wait_ready(browser: HttpBrowser, service: ServiceProcess) -> None:
    for _ in range(400):  # the readiness probe an orchestrator would make
        if (await browser.request("GET", service.url + "/readyz"))[0] == 200:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("/readyz never recovered")


async def bursts(browser: HttpBrowser, service: ServiceProcess, token: str) -> list[int]:
    """``BURSTS`` bursts of ``BURST`` concurrent protected requests (forward-auth's
    ``/verify``): their statuses."""
    statuses: list[int] = []
    for _ in range(BURSTS):
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(
                    browser.request(
                        "GET",
                        service.url + VERIFY_TAB,
                        None,
                        {"X-SessionWatch-Tab": token, **PROTECTED},
                    )
                    for _ in range(BURST)
                )
            ),
            60,
        )
        statuses += [status for status, _ in answers]
    return statuses


async def test_no_503_once_ready_after_client_kill_and_restart() -> None:
    with RedisServer() as redis, ServiceProcess(redis.url, workers=2) as service:
        browser = HttpBrowser(origin=service.url)
        assert (await service.sign_in(browser.cookies, "pia"))[0] == 200
        token = (await browser.claim(service))["tab"]
        assert set(await bursts(browser, service, token)) == {204}  # every pooled conn used

        admin = aioredis.Redis.from_url(redis.url)
        try:
            killed = await asyncio.wait_for(admin.client_kill_filter(_type="normal"), 10)
        finally:
            await admin.aclose()
        assert killed > 0
        await wait_ready(browser, service)
        after_kill = await bursts(browser, service, token)
        assert after_kill.count(503) == 0, after_kill

        redis.restart_keeping_data()
        await wait_ready(browser, service)
        after_restart = await bursts(browser, service, token)
        assert after_restart.count(503) == 0, after_restart
        assert set(after_restart) == {204}
