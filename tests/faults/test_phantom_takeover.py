"""Defect 2 of issue 13: a state change answered as failed never takes effect later.

With Redis stalled by ``DEBUG SLEEP`` longer than the service's 5 s socket timeout,
``POST /claim`` answers 503, and the claim sits in Redis' input buffer. Before the
fix it ran when Redis woke: the generation was bumped, the caller's tabs were told
``superseded`` and the caller's own token then got 409 (a phantom takeover)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
import redis.asyncio as aioredis

from sessionwatch import BackendUnavailable, Device
from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from support.push_processes import HttpBrowser, exchange, next_of, open_socket, parse_response
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


# -- issue 22, item 1: the other waiters of a connection the oldest one timed out ---------

# Seconds after the stall began: a claim of another user (the oldest waiter, whose 5 s
# timeout ended the wait of every later one on the same connection before the fix), then
# the change under test, answered 503 after 1.6 s before the fix while its own script's
# deadline (sent + 4 s) was still ahead when Redis woke.
HEAD_AT, CHANGE_AT = 0.2, 3.6


async def _signed_in(service: ServiceProcess, user: str) -> tuple[HttpBrowser, dict[str, Any]]:
    browser = HttpBrowser(origin=service.url)
    assert (await service.sign_in(browser.cookies, user))[0] == 200  # the session API
    return browser, await browser.claim(service)


async def _state(browser: HttpBrowser, service: ServiceProcess, tab: str) -> tuple[int, Any]:
    return await browser.request(
        "GET", service.url + "/_sessionwatch/state", None, {"X-SessionWatch-Tab": tab}
    )


async def _api_revoke(service: ServiceProcess, user: str) -> tuple[int, Any]:
    """``POST /api/v1/revoke`` of every session of ``user``: one script (end_user)."""
    payload = json.dumps({"user": user}).encode()
    host, port = service.url.removeprefix("http://").split(":")
    lines = [
        "POST /_sessionwatch/api/v1/revoke HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: close",
        f"Authorization: Bearer {service.api_key}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    status, _, body = parse_response(await exchange(host, int(port), lines, payload))
    return status, body


@pytest.mark.parametrize(
    ("change", "stall"),
    [
        ("claim", "debug_sleep:5.8"),
        ("claim", "debug_sleep:5.5"),
        ("claim", "sigstop:5.8"),
        ("revoke_user", "debug_sleep:6.0"),
        ("claim", "debug_sleep:8.0"),  # wakes after the change's own deadline: LATE, 503
    ],
)
async def test_a_change_answered_503_behind_a_timed_out_waiter_never_takes_effect(
    change: str, stall: str
) -> None:
    """One worker, so both requests share its pipelined script connection. A claim is
    one script (claim.lua), the session API's revocation of a user's sessions too
    (end_user.lua)."""
    kind, seconds = stall.split(":")
    with (
        RedisServer(args=("--enable-debug-command", "local")) as redis,
        ServiceProcess(redis.url, workers=1) as service,
    ):
        head, _ = await _signed_in(service, "hedda")
        actor, first = await _signed_in(service, "wanda")
        admin = aioredis.Redis.from_url(redis.url, socket_timeout=float(seconds) + 10)
        loop = asyncio.get_running_loop()
        try:
            if kind == "debug_sleep":
                stall_task = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", seconds))
            else:
                assert redis.process is not None
                redis.process.send_signal(signal.SIGSTOP)
                stall_task = asyncio.create_task(_resume_after(redis, float(seconds)))
            began = loop.time()
            await asyncio.sleep(HEAD_AT)
            head_claim = asyncio.create_task(
                head.request("POST", service.url + "/_sessionwatch/claim", {})
            )
            await asyncio.sleep(max(0.0, began + CHANGE_AT - loop.time()))
            sent = loop.time()
            if change == "claim":
                status, answer = await asyncio.wait_for(
                    actor.request("POST", service.url + "/_sessionwatch/claim", {}), 20
                )
            else:
                status, answer = await asyncio.wait_for(_api_revoke(service, "wanda"), 20)
            answered_after = loop.time() - sent
            await asyncio.wait_for(head_claim, 20)
            await asyncio.wait_for(stall_task, 20)  # Redis is awake and has run its queue
        finally:
            await admin.aclose()
        assert status in (200, 503), (status, answer)
        print(f"{change} during {stall}: {status} after {answered_after:.2f}s")

        code, state = await _state(actor, service, first["tab"])
        took_effect = code == 401 if change == "revoke_user" else state["tab"] == "superseded"
        if status == 503:
            assert not took_effect, (
                f"answered 503 after {answered_after:.2f}s, yet it took effect: {code} {state}"
            )
        else:
            assert took_effect, (code, state)
            if change == "claim":
                assert state["gen"] == answer["gen"], state


async def _resume_after(redis: RedisServer, seconds: float) -> None:
    await asyncio.sleep(seconds)
    assert redis.process is not None
    redis.process.send_signal(signal.SIGCONT)
