"""The claimer agent: open-loop claims at a fixed rate, closed-loop requests/s, one-shots.

Open loop: claim ``i`` is due at ``t0 + i / rate`` whatever happened to earlier claims;
when every keep-alive connection is busy it waits for one, so an overloaded server
shows up as send lag and a lower achieved rate instead of being hidden (coordinated
omission). ``sent_ns`` is taken just before the request is written.

Two ways to claim:

- ``http``: ``POST /claim`` with the session's cookie, as a browser tab does (the
  whole path: HTTP, Quart, the session load, the claim, the publish, the push).
- ``direct``: the state change and publish without HTTP, from this process — for
  sessionwatch the backend's claim script (one ``EVALSHA`` that bumps the generation
  and publishes, exactly as ``RedisBackend.claim`` sends it), for python-socketio the
  ``PUBLISH`` a write-only ``AsyncRedisManager.emit`` sends (the documented way to emit
  from outside the server), for the other peers their own (``peer_pushes``). This isolates the push path: Redis pub/sub → worker →
  WebSocket frame. A small pipelined RESP client keeps the claimer's own CPU low.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sessionwatch.core.tabs import make_tab_token

from .httpclient import HttpError, HttpPool, build_request
from .peer_pushes import push_encoder
from .resp import RespPool
from .stats import percentile
from .tabs import CHROME

__all__ = ["Claimer"]

_BY = {"browser": "Chrome 124", "os": "Linux", "place": "127.0.0.0/24", "same_browser": False}
_ERRORS = (HttpError, OSError, TimeoutError, ConnectionError)


def _blocking_client(url: str) -> Any:
    """A client whose pool makes callers wait for a free connection: redis-py 8's
    default pool raises "Too many connections" beyond 100 commands in flight, which
    would make the load generator, not the server, the limit."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=10, decode_responses=True
    )
    return aioredis.Redis(connection_pool=pool)


class Claimer:
    def __init__(self) -> None:
        self.kind = "sw"
        self.host = "127.0.0.1"
        self.port = 0
        self.requests: list[bytes] = []
        self.publics: list[str] = []
        self.order: list[int] = []
        self.cursor = 0
        self.tokens: dict[int, str] = {}
        self.pool: HttpPool | None = None
        self._resp: RespPool | None = None
        self._claim_args: tuple[Any, ...] = ()
        self._sha = ""
        self._session_keys: Any = None  # KeyNames.session_keys, once set up
        self._session_channel: Any = None  # KeyNames.session_channel, once set up
        self._published: dict[int, int] = {}  # BENCH_SW_PUBLISH_ONLY's last gen per tab
        self._budget_ms = 0
        self._redis_url = ""

    # -- targets ------------------------------------------------------------------------

    async def set_targets(
        self,
        kind: str,
        host: str,
        port: int,
        sessions: list[tuple[str, str, str]],
        redis_url: str,
        seed: int = 6,
    ) -> int:
        """One pre-built claim request per ``(cookie, token, public id)``."""
        origin = f"http://{host}:{port}"
        path = "/_sessionwatch/claim" if kind == "sw" else "/claim"
        self.kind, self.host, self.port = kind, host, port
        self.requests = [
            build_request(
                "POST",
                path,
                f"{host}:{port}",
                headers={
                    "Origin": origin,
                    "User-Agent": CHROME,
                    "Content-Type": "application/json",
                    "Cookie": cookie,
                },
                body=b"{}",
            )
            for cookie, _, _ in sessions
        ]
        self.publics = [public for _, _, public in sessions]
        self.tokens = {i: token for i, (_, token, _) in enumerate(sessions)}
        self.order = list(range(len(sessions)))
        random.Random(seed).shuffle(self.order)
        self.cursor = 0
        if self.pool is not None:
            self.pool.close()
        self.pool = HttpPool(host, port, size=64, timeout=10.0)
        await self._close_direct()
        self._redis_url = redis_url
        return len(self.requests)

    async def _close_direct(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def latest_tokens(self) -> dict[int, str]:
        return dict(self.tokens)

    # -- the open-loop engine -------------------------------------------------------------

    async def _open_loop(
        self,
        rate: float,
        duration: float,
        limit: int | None,
        one: Callable[[int], Awaitable[tuple[int, int, int] | str]],
    ) -> dict[str, Any]:
        order = self.order if limit is None else [i for i in self.order if i < limit]
        total = max(1, int(rate * duration))
        interval = 1e9 / rate
        records: list[tuple[int, int, int, int, int]] = []  # (tab, gen, due, sent, done)
        failures: Counter[str] = Counter()

        async def run(index: int, due: int) -> None:
            try:
                outcome = await one(index)
            except _ERRORS as exc:
                failures[type(exc).__name__] += 1
                return
            if isinstance(outcome, str):
                failures[outcome] += 1
                return
            gen, sent, done = outcome
            records.append((index, gen, due, sent, done))

        tasks = []
        start = time.perf_counter_ns() + 2_000_000
        for i in range(total):
            due = start + int(i * interval)
            now = time.perf_counter_ns()
            if due > now:
                await asyncio.sleep((due - now) / 1e9)
            index = order[(self.cursor + i) % len(order)]
            tasks.append(asyncio.create_task(run(index, due)))
        self.cursor += total
        _, pending = await asyncio.wait(tasks, timeout=15.0)
        for task in pending:
            task.cancel()
        if pending:
            failures["unfinished"] += len(pending)
        return {"offered": total, "start_ns": start, "records": records, "failures": dict(failures)}

    async def claims(
        self, rate: float, duration: float, limit: int | None = None
    ) -> dict[str, Any]:
        """``POST /claim`` at ``rate``/s for ``duration`` s over the first ``limit`` tabs."""
        pool = self.pool
        assert pool is not None, "set_targets first"
        requests, tokens = self.requests, self.tokens

        async def one(index: int) -> tuple[int, int, int] | str:
            response = await pool.request(requests[index])
            if response.status != 200:
                return f"http_{response.status}"
            body = json.loads(response.body)
            tokens[index] = body["tab"]
            return int(body["gen"]), response.sent_ns, response.done_ns

        return await self._open_loop(rate, duration, limit, one)

    async def _direct_setup(self) -> None:
        """Open the raw Redis connections; for sessionwatch, check once that a raw claim
        and the backend's own ``claim`` agree (the script and its arguments)."""
        if self._resp is not None:
            return
        from urllib.parse import urlsplit

        parts = urlsplit(self._redis_url)
        self._resp = RespPool(parts.hostname or "127.0.0.1", parts.port or 6379, size=4)
        await self._resp.connect()
        if self.kind != "sw":
            return
        import hashlib

        from sessionwatch.backends.base import EXPIRY_GRACE_MS, Claim, Timeouts
        from sessionwatch.backends.keys import key_names
        from sessionwatch.backends.redis import SCRIPT_BUDGET, RedisBackend, _script_source
        from sessionwatch.core.config import Settings
        from sessionwatch.core.events import Device
        from sessionwatch.core.trail import AuditSettings

        settings = Settings()
        timeouts = Timeouts(
            idle=int(settings.idle_timeout * 1000),
            absolute=int(settings.absolute_timeout * 1000),
            refresh=int(settings.refresh_every * 1000),
            tombstone=int(settings.tombstone_ttl * 1000),
        )
        source = _script_source("claim")
        sha, _, _ = await self._resp.call("SCRIPT", "LOAD", source)
        assert sha == hashlib.sha1(source.encode()).hexdigest()
        self._sha = sha
        # KEYS and ARGV as RedisBackend._run lays them out (checked against the backend
        # below): the session's names, then the table's heads, now, the timeouts and the
        # deadline (ARGV[7]) in this machine's clock, which is Redis' own here, then the
        # audit trail's context (ARGV[8], the trail on as by default: a takeover is
        # recorded in its own step, as the backend's claim does).
        names = key_names(settings.key_prefix)
        self._session_keys = names.session_keys
        self._session_channel = names.session_channel
        self._claim_args = (
            names.script_names(), None, timeouts.idle, timeouts.refresh, timeouts.tombstone,
            EXPIRY_GRACE_MS, None, AuditSettings().script_context(names.audit(), "user"),
        )  # fmt: skip
        self._budget_ms = int(SCRIPT_BUDGET * 1000)
        backend = RedisBackend(self._redis_url, client=_blocking_client(self._redis_url))
        try:
            await backend.connect()
            now = int(time.time() * 1000)
            raw = await self._raw_claim(self.publics[0], now)
            device = Device(browser="Chrome 124", os="Linux", place="127.0.0.0/24", at=now)
            real = await backend.claim(
                self.publics[0], device, exclusive=True, timeouts=timeouts, now=now
            )
        finally:
            await backend.disconnect()
        if (
            not isinstance(real, Claim)
            or raw is None
            or real.gen != raw[0] + 1
            or real.tab_key != raw[1]
        ):
            raise RuntimeError(
                f"raw claim {raw} disagrees with RedisBackend.claim {real}: update claimer.py"
            )
        self.tokens[0] = make_tab_token(real.tab_key, real.gen)

    async def _raw_claim(self, public: str, now: int) -> tuple[int, str, int, int] | None:
        assert self._resp is not None
        by = json.dumps({**_BY, "at": now}, separators=(",", ":"))
        keys = self._session_keys(public)
        argv = list(self._claim_args)
        argv[1] = now
        argv[6] = int(time.time() * 1000) + self._budget_ms
        reply, sent, done = await self._resp.call(
            "EVALSHA", self._sha, len(keys), *keys, *argv, public, 1, by
        )
        if reply[0] != "ok":
            return None
        fields = dict(zip(reply[2::2], reply[3::2], strict=True))  # the record after the claim
        return int(fields["gen"]), str(fields["tk"]), sent, done

    async def direct_claims(
        self, rate: float, duration: float, limit: int | None = None
    ) -> dict[str, Any]:
        """The claim's state change and publish without HTTP (see the module docstring)."""
        await self._direct_setup()
        resp = self._resp
        assert resp is not None
        publics, tokens = self.publics, self.tokens
        if self.kind == "sw" and os.environ.get("BENCH_SW_PUBLISH_ONLY"):
            # A diagnostic (docs/performance.md, "What bounds each missed target"): the
            # superseded event the claim script would publish, sent as a plain PUBLISH,
            # so the push path is timed without the script's round trip in Redis.
            channel_of = self._session_channel
            published = self._published  # kept across ladders: a tab ignores an old gen

            async def one(index: int) -> tuple[int, int, int] | str:
                gen = published[index] = published.get(index, 1_000_000) + 1
                event = {
                    "type": "superseded",
                    "gen": gen,
                    "by": {**_BY, "at": int(time.time() * 1000)},
                }
                payload = json.dumps({**event, "session": publics[index]}, separators=(",", ":"))
                _, sent, done = await resp.call("PUBLISH", channel_of(publics[index]), payload)
                return gen, sent, done

        elif self.kind == "sw":

            async def one(index: int) -> tuple[int, int, int] | str:
                claimed = await self._raw_claim(publics[index], int(time.time() * 1000))
                if claimed is None:
                    return "session_gone"
                gen, tab_key, sent, done = claimed
                tokens[index] = make_tab_token(tab_key, gen)
                return gen, sent, done

        else:
            # The peer's own emit from outside the server (peer_pushes); the generation
            # only has to be new.
            encode = push_encoder(self.kind)
            gens: dict[int, int] = {}

            async def one(index: int) -> tuple[int, int, int] | str:
                gen = gens[index] = gens.get(index, int(tokens[index]) + 1_000_000) + 1
                data = {"gen": gen, "by": {**_BY, "at": int(time.time() * 1000)}}
                channel, payload = encode(publics[index], data)
                _, sent, done = await resp.call("PUBLISH", channel, payload)
                return gen, sent, done

        return await self._open_loop(rate, duration, limit, one)

    # -- requests/s -----------------------------------------------------------------------

    async def load(
        self,
        host: str,
        port: int,
        requests: list[bytes],
        duration: float,
        connections: int = 64,
        warmup: float = 0.5,
        expect: int = 200,
    ) -> dict[str, Any]:
        """Closed loop: ``connections`` workers send ``requests`` (round robin) back to
        back; responses completed in the ``duration`` window after ``warmup`` count."""
        pool = HttpPool(host, port, size=connections, timeout=10.0)
        failures: Counter[str] = Counter()
        counted = 0
        begin = time.perf_counter() + warmup
        end = begin + duration

        async def worker(offset: int) -> None:
            nonlocal counted
            i = offset
            while time.perf_counter() < end:
                try:
                    response = await pool.request(requests[i % len(requests)])
                except _ERRORS as exc:
                    failures[type(exc).__name__] += 1
                    await asyncio.sleep(0.01)
                    continue
                i += connections
                finished = time.perf_counter()
                if begin <= finished < end:
                    if response.status == expect:
                        counted += 1
                    else:
                        failures[f"http_{response.status}"] += 1

        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(k) for k in range(connections))), warmup + duration + 20
            )
        finally:
            pool.close()
        return {"requests": counted, "rps": counted / duration, "failures": dict(failures)}

    async def latency(
        self, host: str, port: int, requests: list[bytes], rate: float, count: int
    ) -> dict[str, Any]:
        """Open loop at a low ``rate``: response times (ms) of ``count`` requests."""
        pool = HttpPool(host, port, size=8, timeout=10.0)
        times: list[float] = []
        failures: Counter[str] = Counter()

        async def one(i: int) -> None:
            try:
                response = await pool.request(requests[i % len(requests)])
            except _ERRORS as exc:
                failures[type(exc).__name__] += 1
                return
            if response.status != 200:
                failures[f"http_{response.status}"] += 1
            times.append((response.done_ns - response.sent_ns) / 1e6)

        try:
            await pool.request(requests[0])  # connect and warm up outside the window
            tasks = []
            start = time.perf_counter_ns() + 2_000_000
            for i in range(count):
                due = start + int(i * 1e9 / rate)
                now = time.perf_counter_ns()
                if due > now:
                    await asyncio.sleep((due - now) / 1e9)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.wait(tasks, timeout=30.0)
        finally:
            pool.close()
        return {
            "p50": percentile(times, 0.5),
            "p99": percentile(times, 0.99),
            "failures": dict(failures),
        }

    async def exactly(
        self, host: str, port: int, requests: list[bytes], count: int, connections: int = 16
    ) -> dict[str, int]:
        """Send exactly ``count`` requests and wait for every answer (command counts)."""
        pool = HttpPool(host, port, size=connections, timeout=10.0)
        statuses: Counter[str] = Counter()
        limit = asyncio.Semaphore(connections)

        async def one(i: int) -> None:
            async with limit:
                response = await pool.request(requests[i % len(requests)])
                statuses[str(response.status)] += 1

        try:
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 120)
        finally:
            pool.close()
        return dict(statuses)

    async def one(self, host: str, port: int, raw: bytes) -> dict[str, Any]:
        """One request on a fresh connection (``sent_ns`` is after the connect)."""
        pool = HttpPool(host, port, size=1, timeout=10.0)
        try:
            response = await pool.request(raw)
        finally:
            pool.close()
        return {
            "status": response.status,
            "body": response.body.decode("utf-8", "replace"),
            "cookie": "; ".join(f"{k}={v}" for k, v in response.cookies().items()),
            "sent_ns": response.sent_ns,
            "done_ns": response.done_ns,
        }

    async def aclose(self) -> None:
        if self.pool is not None:
            self.pool.close()
        await self._close_direct()
