"""Defect 2 of issue 13: a state change answered as failed never takes effect later.

With Redis stalled by ``DEBUG SLEEP`` longer than the service's 5 s socket timeout,
``POST /claim`` answers 503, and the claim sits in Redis' input buffer. Before the
fix it ran when Redis woke: the generation was bumped, the caller's tabs were told
``superseded`` and the caller's own token then got 409 (a phantom takeover)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from sessionwatch import BackendUnavailable, Device
from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from support.push_processes import HttpBrowser, next_of, open_socket
from support.redis_server import RedisServer
from support.service_process import PROTECTED, VERIFY_TAB, ServiceProcess

pytestmark = pytest.mark.multiprocess

STALL = 7  # seconds of DEBUG SLEEP: more than the service's 5 s Redis socket timeout
TABS = 3


async def test_a_claim_answered_503_during_a_stall_never_takes_effect() -> None:
    with (
        RedisServer(args=("--enable-debug-command", "local")) as redis,
        ServiceProcess(redis.url, workers=2) as service,
    ):
        browser = HttpBrowser(origin=service.url)
        assert (await service.sign_in(browser.cookies, "wanda"))[0] == 200
        first = await browser.claim(service)
        sockets = []
        for _ in range(TABS):
            ws = await open_socket(browser, service)
            await ws.send(json.dumps({"type": "hello", "v": 1, "tab": first["tab"]}))
            assert (await next_of(ws, "ready", 15))["gen"] == first["gen"]
            sockets.append(ws)

        admin = aioredis.Redis.from_url(redis.url, socket_timeout=STALL + 10)
        try:
            stall = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", STALL))
            await asyncio.sleep(0.3)  # the stall has begun (DEBUG SLEEP answers at its end)
            status, body = await asyncio.wait_for(
                browser.request("POST", service.url + "/_sessionwatch/claim", {}), STALL + 10
            )
            assert status == 503, (status, body)  # the service gave up: answered as failed
            await asyncio.wait_for(stall, STALL + 10)  # Redis is awake and has run its queue
        finally:
            await admin.aclose()

        tab = {"X-SessionWatch-Tab": first["tab"]}
        status, state = await browser.request(
            "GET", service.url + "/_sessionwatch/state", None, tab
        )
        assert status == 200
        assert (state["gen"], state["tab"]) == (first["gen"], "active"), state
        status, _ = await browser.request(
            "GET", service.url + VERIFY_TAB, None, {**tab, **PROTECTED}
        )
        assert status == 204  # the caller's own token still holds

        # Pub/sub keeps a channel's order: the first "superseded" each tab gets is the
        # one for this acknowledged claim, not one for a phantom claim before it.
        second = await browser.claim(service)
        assert second["gen"] == first["gen"] + 1
        for ws in sockets:
            assert (await next_of(ws, "superseded", 15))["gen"] == second["gen"]
            await ws.close()


@pytest.mark.parametrize("backend_kind", ["redis", "cluster"])
async def test_a_script_past_its_deadline_changes_nothing(backend: RedisBackend) -> None:
    """On every topology."""
    timeouts = Timeouts(idle=60_000, absolute=120_000, refresh=1_000, tombstone=60_000)
    record = SessionRecord(
        id="d" * 22,
        user=None,
        created=1,
        seen=1,
        absolute_expiry=100_000,
        gen=0,
        tab_key="k" * 32,
        device={},
    )
    await backend.create(record, timeouts=timeouts, now=1)
    backend.deadline.budget = -1.0  # as if Redis ran it a second after its deadline
    with pytest.raises(BackendUnavailable, match="LATE"):
        await backend.claim(
            record.id,
            Device("Chrome", "Linux", "", 2),
            exclusive=True,
            timeouts=timeouts,
            now=2,
        )
    backend.deadline.budget = 4.0
    found = await backend.load(record.id, timeouts=timeouts, now=3, touch=False)
    assert found.record is not None and found.record.gen == 0  # nothing changed
