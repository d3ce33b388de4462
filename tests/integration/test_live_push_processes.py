"""Live push across real server processes (uvicorn and hypercorn) sharing one Redis or
one Redis Cluster.

Figures (push latency, memory per socket) are printed, never asserted: run with ``-s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sessionwatch import CloseCode
from sessionwatch.backends.base import session_channel
from support.push_processes import (
    ORIGIN,
    AppProcess,
    HttpBrowser,
    LiveTab,
    Server,
    open_socket,
)
from support.redis_server import RedisServer, required

pytestmark = pytest.mark.multiprocess

WAIT = 10.0


@contextlib.contextmanager
def serving(redis_url: str, key_prefix: str, **options: Any) -> Iterator[list[AppProcess]]:
    """Process A (uvicorn) and process B (hypercorn) on one Redis; their logs must show
    no unhandled exception. Every browser of these tests is one address: the
    new-session rate, the deployment's across both processes, is lifted (not under test)."""
    options = {"max_new_sessions_per_second": 100_000, **options}
    with (
        AppProcess("uvicorn", redis_url, key_prefix, options) as a,
        AppProcess("hypercorn", redis_url, key_prefix, options) as b,
    ):
        yield [a, b]
        logs = {p.server: p.output() for p in (a, b)}
    for server, log in logs.items():
        assert "Traceback" not in log, f"{server} logged an exception:\n{log}"


@pytest.fixture(
    name="processes",
    params=["redis", pytest.param("cluster", marks=pytest.mark.cluster_extended)],
)
def _processes(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[list[AppProcess]]:
    """Two server processes on one Redis, or on the 6-node Redis Cluster (sharded
    pub/sub: the tab's channel lives on one of three primaries)."""
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    else:
        url = request.getfixturevalue("redis_url")
    with serving(url, key_prefix) as processes:
        yield processes


@pytest.fixture(name="own_redis")
def _own_redis() -> Iterator[RedisServer]:
    """A private Redis the chaos test may kill and restart."""
    with required(RedisServer) as server:
        yield server


async def hello(ws: ClientConnection, token: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))
    return await receive(ws)


async def receive(ws: ClientConnection, timeout: float = WAIT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return message


async def close_code(ws: ClientConnection) -> tuple[int | None, list[dict[str, Any]]]:
    seen = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            seen.append(await receive(ws))
    return ws.close_code, seen


@contextlib.asynccontextmanager
async def socket(browser: HttpBrowser, process: AppProcess) -> AsyncIterator[ClientConnection]:
    ws = await asyncio.wait_for(open_socket(browser, process), WAIT)
    try:
        yield ws
    finally:
        await asyncio.wait_for(ws.close(), WAIT)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def test_handshake_refusals_are_http_answers_on_both_servers(
    processes: list[AppProcess],
) -> None:
    browser = HttpBrowser()
    await browser.claim(processes[0])
    for process in processes:
        for origin in ("https://evil.example", "null", "http://app.test.evil.com", None):
            headers = browser.headers()
            if origin is None:
                del headers["Origin"]
            else:
                headers["Origin"] = origin
            with pytest.raises(InvalidStatus) as refused:
                await asyncio.wait_for(connect(process.ws_url, additional_headers=headers), WAIT)
            assert refused.value.response.status_code == 403, (process.server, origin)
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(
                connect(process.ws_url, additional_headers={"Origin": ORIGIN}), WAIT
            )
        assert refused.value.response.status_code == 401
        body = json.loads(refused.value.response.body)
        assert body["error"] == "no_session" and body["message"]


async def test_a_claim_on_b_supersedes_the_tab_on_a_and_latency(
    processes: list[AppProcess],
) -> None:
    a, b = processes
    browser = HttpBrowser()
    first = await browser.claim(a)
    latencies, round_trips = [], []
    async with socket(browser, a) as ws:
        assert (await hello(ws, first["tab"]))["type"] == "ready"
        for _ in range(200):
            arrival = asyncio.create_task(receive(ws))
            started = time.perf_counter()
            claim = await asyncio.wait_for(browser.claim(b), WAIT)
            answered = time.perf_counter()
            message = await arrival
            latencies.append(time.perf_counter() - started)
            round_trips.append(answered - started)
            assert message["type"] == "superseded" and message["gen"] == claim["gen"]
        # The winner's own socket (on B) is not told; the older one (on A) is.
        async with socket(browser, b) as winner:
            assert (await hello(winner, claim["tab"]))["type"] == "ready"
            last = await browser.claim(a)
            assert (await receive(winner))["gen"] == last["gen"]
            assert (await receive(ws))["gen"] == last["gen"]
            await winner.send(json.dumps({"type": "ping"}))
            assert await receive(winner) == {"type": "pong"}
    ms = [1000 * value for value in latencies]
    print(
        f"\ncross-process push (claim via hypercorn -> superseded on uvicorn), {len(ms)} "
        f"takeovers: p50 {percentile(ms, 0.5):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms, "
        f"max {max(ms):.2f} ms (claim HTTP round trip p50 "
        f"{1000 * statistics.median(round_trips):.2f} ms)"
    )


async def test_catch_up_across_processes_after_being_superseded_offline(
    processes: list[AppProcess],
) -> None:
    a, b = processes
    browser = HttpBrowser()
    first = await browser.claim(a)
    async with socket(browser, a) as ws:
        assert (await hello(ws, first["tab"]))["type"] == "ready"
    second = await browser.claim(b)  # while the first tab is offline
    for process in (a, b):
        async with socket(browser, process) as ws:
            truth = await hello(ws, first["tab"])
            assert (truth["type"], truth["gen"]) == ("superseded", second["gen"])
            assert truth["by"]["browser"] == "Chrome 120"
    async with socket(browser, a) as ws:
        assert (await hello(ws, second["tab"]))["type"] == "ready"


async def test_revocation_via_b_closes_the_tab_on_a(processes: list[AppProcess]) -> None:
    a, b = processes
    laptop, phone = HttpBrowser(), HttpBrowser()
    for browser, process in ((laptop, a), (phone, b)):
        status, _ = await browser.request("POST", process.url + "/login", {"user": "ann"})
        assert status == 200
    tab = await laptop.claim(a)
    mine = await phone.claim(b)
    async with socket(laptop, a) as ws:
        assert (await hello(ws, tab["tab"]))["type"] == "ready"
        status, body = await phone.request(
            "DELETE",
            f"{b.url}/_sessionwatch/sessions/{tab['session']}",
            headers={"X-SessionWatch-Tab": mine["tab"]},
        )
        assert (status, body) == (200, {"revoked": 1})
        code, seen = await asyncio.wait_for(close_code(ws), WAIT)
        assert (code, seen) == (CloseCode.REVOKED, [{"type": "revoked", "reason": "revoked"}])
    with pytest.raises(InvalidStatus) as refused:
        await asyncio.wait_for(open_socket(laptop, b), WAIT)
    assert refused.value.response.status_code == 401


async def test_chaos_pubsub_kill_and_redis_restart_mid_stream(
    own_redis: RedisServer,
) -> None:
    """Sessions 0-3 get their last claim just after ``CLIENT KILL TYPE pubsub``, sessions
    4-7 theirs while Redis restarts (the hubs resubscribe after it is back, so these
    events are lost), and sessions 8-11 are claimed throughout. Afterwards every stale
    tab has been told, by a resync correction or a reconnect's catch-up."""
    key_prefix = f"swchaos:{uuid.uuid4().hex[:8]}:"
    rng = random.Random(7)
    redis = aioredis.Redis.from_url(own_redis.url, decode_responses=True)
    browsers = [HttpBrowser() for _ in range(12)]
    sessions: dict[int, str] = {}
    tabs: dict[int, list[LiveTab]] = {index: [] for index in range(len(browsers))}
    with serving(own_redis.url, key_prefix) as processes:

        async def new_tab(index: int) -> None:
            claim = await asyncio.wait_for(browsers[index].claim(rng.choice(processes)), 30)
            sessions[index] = claim["session"]
            tab = LiveTab(browsers[index], rng.choice(processes), claim["tab"])
            tabs[index].append(tab)
            tab.start()

        async def stream(claims: int) -> None:
            for step in range(claims):
                await new_tab(8 + step % 4)

        try:
            for step in range(24):
                await new_tab(step % len(browsers))
            killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed == len(processes)
            await asyncio.gather(*(new_tab(index) for index in range(4)))
            await stream(8)
            for process in processes:  # each recovered from the kill: two distinct faults
                await reconnected(process, 1)
            restart = asyncio.create_task(asyncio.to_thread(own_redis.restart_keeping_data))
            await asyncio.gather(*(new_tab(index) for index in range(4, 8)))
            await asyncio.wait_for(restart, 30)
            await stream(8)
            await redis.aclose()
            redis = aioredis.Redis.from_url(own_redis.url, decode_responses=True)

            # Every stale tab has been told; every newest tab is ready and never told.
            for session_tabs in tabs.values():
                *stale, newest = session_tabs
                await newest.wait_until(lambda t: t.ready > 0 and t.connected, 30)
                for tab in stale:
                    await tab.wait_until(lambda t, gen=newest.gen: t.told == gen, 30)
                assert newest.told == 0 and newest.close_code is None

            # No stale token is accepted; the newest is.
            for index, session_tabs in tabs.items():
                *stale, newest = session_tabs
                for tab in stale:
                    status, body = await browsers[index].transfer(rng.choice(processes), tab.token)
                    assert (status, body["error"]) == (409, "tab_superseded")
                status, _ = await browsers[index].transfer(rng.choice(processes), newest.token)
                assert status == 200

            # Every process is subscribed again: one pub/sub connection each, and each
            # session's channel has one subscriber per process holding one of its tabs.
            resyncs = 0
            for process in processes:
                stats = await process.hub()
                assert stats["connected"] and stats["reconnects"] == 2, stats
                assert stats["resyncs"] >= 2, stats
                resyncs += stats["resyncs"]
            pubsub_clients = await redis.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
            assert len(pubsub_clients.strip().splitlines()) == len(processes)
            for index, session_tabs in tabs.items():
                holders = {tab.process.port for tab in session_tabs if tab.connected}
                channel = session_channel(key_prefix, sessions[index])
                [(_, subscribers)] = await redis.pubsub_numsub(channel)
                assert subscribers == len(holders), (channel, holders)
            all_tabs = [tab for session_tabs in tabs.values() for tab in session_tabs]
            print(
                f"\nchaos: {len(all_tabs)} tabs on 12 sessions, pub/sub kill + Redis restart: "
                f"{resyncs} resync(s), {sum(t.connects - 1 for t in all_tabs)} tab reconnect(s);"
                " every stale tab told, no stale token accepted"
            )
        finally:
            for session_tabs in tabs.values():
                for tab in session_tabs:
                    await tab.stop()
            await redis.aclose()


async def detached(process: AppProcess, timeout: float = WAIT) -> dict[str, Any]:
    """The process's hub stats once no socket is left: a closed socket is detached when
    the server reads the close, which may be after the client's close() returned."""
    async with asyncio.timeout(timeout):
        while True:
            stats = await process.hub()
            if not stats["sockets"]:
                return stats
            await asyncio.sleep(0.02)  # a probe of another process's state


async def reconnected(process: AppProcess, count: int, timeout: float = WAIT) -> None:
    """Wait until the process's hub has reconnected ``count`` times and is connected."""
    async with asyncio.timeout(timeout):
        while True:
            stats = await process.hub()
            if stats["connected"] and stats["reconnects"] >= count:
                return
            await asyncio.sleep(0.02)  # a probe of another process's state


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
async def test_idle_memory_per_connection(redis_url: str, key_prefix: str, server: Server) -> None:
    count = 1000
    options = {
        "max_sockets_per_session": count,
        "max_sockets_per_user": count,
        # All 1,000 "browsers" are this one address: lift the per-address abuse limits.
        "max_sockets_per_address": count + 10,
        "max_new_sessions_per_second": 100_000,
        "max_hellos_per_second": 100_000,
    }
    for deflate in (False, True):  # a fresh process each: freed memory is not reused
        with AppProcess(server, redis_url, key_prefix, options) as process:
            per_socket = await idle_memory(process, count, deflate=deflate)
            log = process.output()
        assert "Traceback" not in log, log
        print(
            f"\n{server}: {count} idle bound sockets (one session each), permessage-deflate "
            f"{'on (as browsers offer it)' if deflate else 'off'}: "
            f"{per_socket / 1024:.1f} KiB of server RSS per connection"
        )


async def idle_memory(process: AppProcess, count: int, *, deflate: bool) -> float:
    """Open ``count`` bound, idle sockets (one session each); server RSS growth per socket."""
    browsers = [HttpBrowser() for _ in range(count)]
    limit = asyncio.Semaphore(50)

    async def claim(browser: HttpBrowser) -> str:
        async with limit:
            return str((await browser.claim(process))["tab"])

    async def idle_tab(browser: HttpBrowser, token: str) -> ClientConnection:
        async with limit:
            ws = await open_socket(browser, process, deflate=deflate)
            assert (await hello(ws, token))["type"] == "ready"
            return ws

    tokens = await asyncio.wait_for(asyncio.gather(*map(claim, browsers)), 60)
    async with socket(browsers[0], process) as warm:  # code paths loaded once
        assert (await hello(warm, tokens[0]))["type"] == "ready"
    stats = await detached(process)
    before = process.rss_bytes()
    sockets = await asyncio.wait_for(asyncio.gather(*map(idle_tab, browsers, tokens)), 120)
    try:
        after = await process.hub()
        assert after["sockets"] - stats["sockets"] == count
        assert after["channels"] - stats["channels"] == count
        return (process.rss_bytes() - before) / count
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
