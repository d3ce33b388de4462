"""Issue 23: what the deployment-wide abuse rates cost, on a real redis-server.

The extension counts a new anonymous session with one rate script before its
``create`` script, and a sign-in with one rate script (its user's and its address's
buckets) before its ``login`` script (web/shared_limits.py). This runs each
operation as the extension sends it, without and with the rate scripts, side by side
in alternating rounds (the machine is shared), and prints as JSON:

- the latency of one operation after another (p50/p99, µs): the added round trip;
- operations/s with ``--concurrency`` callers (the scripts share one pipelined
  connection, multiplex.py): the added Redis work;
- Redis' own time per rate script (``INFO commandstats``, µs per call).

    cd tests && PYTHONPATH=../server:. python -m bench.shared_limits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any

import redis

from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.limits import RateRule
from sessionwatch.core.tabs import new_tab_key
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.redis_server import RedisServer

TIMEOUTS = Timeouts(idle=1_800_000, absolute=86_400_000, refresh=60_000, tombstone=3_600_000)
# Rates nobody reaches: every check is let through (the cost of the check, not a refusal).
NEW_SESSIONS = RateRule("new_sessions", 1e9, 1e9)
PER_ADDRESS = RateRule("logins_address", 1e9, 1e9)
PER_USER = RateRule("logins_user", 1e9, 1e9, per="user")
ADDRESSES = 1_000


def record(user: str | None, now: int) -> SessionRecord:
    sid = public_id(new_session_id(user_tag(user)) if user else new_session_id())
    device = {"browser": "Firefox 121", "os": "Linux", "place": "203.0.113.0/24"}
    return SessionRecord(sid, user, now, now, now + TIMEOUTS.absolute, 0, new_tab_key(), device)


def operations(backend: RedisBackend) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """Each checked operation as the extension sends it, without and with its rates."""

    def now() -> int:
        return int(time.time() * 1000)

    def address(n: int) -> str:
        return f"10.0.{n % ADDRESSES // 256}.{n % 256}"

    async def create(n: int) -> None:
        await backend.create(record(None, now()), timeouts=TIMEOUTS, now=now())

    async def create_checked(n: int) -> None:
        await backend.take_rates([(NEW_SESSIONS, address(n))], now=now())
        await create(n)

    async def login(n: int) -> None:
        new = record(f"user-{n % 5_000}", now())
        await backend.login(None, new, limit=None, deny=False, timeouts=TIMEOUTS, now=now())

    async def login_checked(n: int) -> None:
        checks = [(PER_USER, f"user-{n % 5_000}"), (PER_ADDRESS, address(n))]
        await backend.take_rates(checks, now=now())
        await login(n)

    return {
        "new session": create,
        "new session + rate": create_checked,
        "sign-in": login,
        "sign-in + rates": login_checked,
    }


async def latencies(
    op: Callable[[int], Awaitable[Any]], numbers: count[int], n: int
) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        await op(next(numbers))
        out.append((time.perf_counter() - started) * 1e6)
    return out


async def throughput(
    op: Callable[[int], Awaitable[Any]], numbers: count[int], callers: int, seconds: float
) -> float:
    until = time.monotonic() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        for _ in range(1_000_000):  # bounded; the time ends it first
            if time.monotonic() >= until:
                return
            await op(next(numbers))
            done += 1

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(callers))), seconds + 30)
    return done / (time.monotonic() - started)


def rate_script_usec(url: str, backend_calls: int) -> float:
    """Redis' own µs per EVALSHA while only rate scripts run."""
    client = redis.Redis.from_url(url)
    client.config_resetstat()
    loop = asyncio.new_event_loop()
    try:
        backend = RedisBackend(url, key_prefix="bench-rate:")

        async def run() -> None:
            await backend.connect()
            for n in range(backend_calls):
                subject = f"10.1.{n // 256 % 256}.{n % 256}"
                await backend.take_rates([(NEW_SESSIONS, subject)], now=n)
            await backend.disconnect()

        loop.run_until_complete(run())
    finally:
        loop.close()
    stats = client.info("commandstats")["cmdstat_evalsha"]
    client.close()
    return float(stats["usec_per_call"])


async def measure(url: str, rounds: int, per_round: int, callers: int, seconds: float) -> Any:
    backend = RedisBackend(url, key_prefix="bench:")
    await backend.connect()
    numbers = count()
    ops = operations(backend)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    rates: dict[str, list[float]] = {name: [] for name in ops}
    try:
        for _ in range(rounds):
            for name, op in ops.items():
                samples[name] += await latencies(op, numbers, per_round)
                rates[name].append(await throughput(op, numbers, callers, seconds))
    finally:
        await backend.disconnect()

    def p(values: list[float], q: float) -> float:
        return round(statistics.quantiles(values, n=100)[int(q) - 1], 1)

    return {
        name: {
            "p50_us": p(samples[name], 50),
            "p99_us": p(samples[name], 99),
            f"ops_per_s_{callers}_callers": round(statistics.median(rates[name])),
        }
        for name in ops
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=400, help="sequential operations")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        result = asyncio.run(
            measure(server.url, args.rounds, args.per_round, args.concurrency, args.seconds)
        )
        result["redis_usec_per_rate_script"] = rate_script_usec(server.url, 5_000)
    finally:
        server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
