"""Issue 23: the abuse rates were per worker process, so one address could start
``workers x max_new_sessions_per_second`` sessions and sign in ``workers x`` as often as
allowed (and differently on each host). On a real ``sessionwatch serve --workers 2``
with Redis, the same number of requests goes through each worker (keep-alive
connections known to be held by each, support/worker_connections.py): one address gets
the deployment's rate, whatever worker answers.

Each bound is the rate's burst plus what it refills while the requests run (measured),
plus one: two per-process buckets let twice the burst through (the test fails so)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from support.redis_server import RedisServer
from support.service_process import ServiceProcess
from support.worker_connections import KeepAlive, connections_per_worker

pytestmark = pytest.mark.multiprocess

PER_WORKER = 15  # requests through each worker, more than one burst
CONNECTIONS = 3  # keep-alive connections per worker, used at once


def service(redis: RedisServer, **settings: str) -> ServiceProcess:
    prefix = f"shared:{uuid.uuid4().hex[:8]}:"
    return ServiceProcess(redis.url, workers=2, key_prefix=prefix, env=settings)


async def burst(
    held: dict[int, list[KeepAlive]], send: Callable[[KeepAlive, int], Awaitable[int]]
) -> tuple[dict[int, list[int]], float]:
    """``PER_WORKER`` requests through each worker at once (its connections in turn);
    returns the statuses per worker and the seconds from the first send to the last
    answer."""

    async def through(conns: list[KeepAlive], base: int) -> list[int]:
        async def one_connection(index: int) -> list[int]:
            count = range(index, PER_WORKER, len(conns))
            return [await send(conns[index], base + n) for n in count]

        lists = await asyncio.gather(*(one_connection(i) for i in range(len(conns))))
        return [status for statuses in lists for status in statuses]

    started = time.monotonic()
    results = await asyncio.wait_for(
        asyncio.gather(*(through(conns, i * 1000) for i, conns in enumerate(held.values()))), 60
    )
    return dict(zip(held, results, strict=True)), time.monotonic() - started


async def closing(held: dict[int, list[KeepAlive]]) -> None:
    for conns in held.values():
        for conn in conns:
            await conn.aclose()


def check(statuses: dict[int, list[int]], allowed: float) -> None:
    passed = sum(s.count(200) for s in statuses.values())
    assert all(set(s) <= {200, 429} for s in statuses.values()), statuses
    assert all(429 in s for s in statuses.values()), statuses  # every worker refused some
    assert passed <= allowed, (passed, allowed, statuses)


async def test_new_sessions_of_one_address_are_limited_across_workers(
    redis_server: RedisServer,
) -> None:
    rate = 5.0  # a burst of 5 (one second's worth)
    with service(redis_server, SESSIONWATCH_MAX_NEW_SESSIONS_PER_SECOND=str(rate)) as process:
        held = await connections_per_worker(process, 2, CONNECTIONS)
        try:

            async def new_session(conn: KeepAlive, _: int) -> int:
                headers = [("Content-Type", "application/json")]  # no cookie: a new session
                status, _body = await conn.request("POST", "/_sessionwatch/claim", headers, b"{}")
                return status

            statuses, elapsed = await burst(held, new_session)
        finally:
            await closing(held)
    passed = sum(s.count(200) for s in statuses.values())
    assert passed >= rate, statuses  # the burst itself goes through
    check(statuses, rate + rate * elapsed + 1)


async def test_sign_ins_from_one_address_are_limited_across_workers(
    redis_server: RedisServer,
) -> None:
    rate = 2.0  # a burst of 10 (five seconds' worth)
    with service(redis_server, SESSIONWATCH_MAX_LOGINS_PER_ADDRESS_PER_SECOND=str(rate)) as process:
        held = await connections_per_worker(process, 2, CONNECTIONS)
        auth = [("Authorization", f"Bearer {process.api_key}")]
        auth.append(("Content-Type", "application/json"))
        try:

            async def sign_in(conn: KeepAlive, n: int) -> int:
                # Another user each time: only the address's rate applies.
                body: dict[str, Any] = {"user": f"user-{n}", "client_ip": "203.0.113.23"}
                path = "/_sessionwatch/api/v1/login"
                status, _body = await conn.request("POST", path, auth, json.dumps(body).encode())
                return status

            statuses, elapsed = await burst(held, sign_in)
        finally:
            await closing(held)
    passed = sum(s.count(200) for s in statuses.values())
    assert passed >= rate * 5, statuses
    check(statuses, rate * 5 + rate * elapsed + 1)
