"""Issue 23: what the deployment-wide abuse rates cost, on a real redis-server.

The extension counts a new anonymous session with one rate script before its
``create`` script, and a sign-in with one rate script (its user's and its address's
buckets) before its ``login`` script (engine/shared_limits.py). This runs each
operation as the extension sends it, without and with the rate scripts, side by side
in alternating rounds (the machine is shared), and prints as JSON:

- the latency of one operation after another (p50/p99, µs): the added round trip;
- operations/s with ``--concurrency`` callers per variant, all variants at once (the
  scripts share one pipelined connection, multiplex.py): the added work;
- Redis' own time per operation (``INFO commandstats``, µs of scripts);
- the same for a hello's read (a ``load`` script), which is not shared: with a rate
  script before it, what sharing ``max_hellos_per_second`` would cost every hello;
- with ``--service``, the same through a real ``sessionwatch serve`` (one worker each,
  ``shared_rate_limits`` false and true, side by side): ``POST /claim`` without a cookie
  (a new session) and the session API's ``login``, one after another (p50/p99 ms) and
  with ``--concurrency`` clients per variant, all at once (requests/s).

    cd tests && PYTHONPATH=../server:. python -m bench.shared_limits [--service]
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

from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.limits import RateRule
from sessionwatch.core.tabs import new_tab_key
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.attacks import raw_request
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

TIMEOUTS = Timeouts(idle=1_800_000, absolute=86_400_000, refresh=60_000, tombstone=3_600_000)
# Rates nobody reaches: every check is let through (the cost of the check, not a refusal).
NEW_SESSIONS = RateRule("new_sessions", 1e9, 1e9)
PER_ADDRESS = RateRule("logins_address", 1e9, 1e9)
PER_USER = RateRule("logins_user", 1e9, 1e9, per="user")
HELLOS = RateRule("hellos", 1e9, 1e9)
ADDRESSES = 1_000


def record(user: str | None, now: int) -> SessionRecord:
    sid = public_id(new_session_id(user_tag(user)) if user else new_session_id())
    device = {"browser": "Firefox 121", "os": "Linux", "place": "203.0.113.0/24"}
    return SessionRecord(sid, user, now, now, now + TIMEOUTS.absolute, 0, new_tab_key(), device)


def operations(
    backend: RedisBackend, hello_session: str
) -> dict[str, Callable[[int], Awaitable[Any]]]:
    """Each checked operation as the extension sends it, without and with its rates;
    and a hello's read with the rate script it would need if hellos were shared."""

    def now() -> int:
        return int(time.time() * 1000)

    def address(n: int) -> str:
        return f"10.0.{n % ADDRESSES // 256}.{n % 256}"

    async def create(n: int) -> None:
        await backend.create(record(None, now()), timeouts=TIMEOUTS, now=now())

    async def create_checked(n: int) -> None:
        await backend.take_rates([(NEW_SESSIONS, address(n))], now=now())
        await create(n)

    async def create_alongside(n: int) -> None:
        # Both scripts in one round trip: what a check inside create.lua would cost at
        # best (not what the extension does: it must know the answer before creating).
        await asyncio.gather(backend.take_rates([(NEW_SESSIONS, address(n))], now=now()), create(n))

    async def login(n: int) -> None:
        new = record(f"user-{n}", now())  # a fresh user: the index size stays one
        await backend.login(None, new, limit=None, deny=False, timeouts=TIMEOUTS, now=now())

    async def login_checked(n: int) -> None:
        checks = [(PER_USER, f"user-{n}"), (PER_ADDRESS, address(n))]
        await backend.take_rates(checks, now=now())
        await login(n)

    async def hello(n: int) -> None:
        await backend.load(hello_session, timeouts=TIMEOUTS, now=now(), touch=False)

    async def hello_checked(n: int) -> None:
        await backend.take_rates([(HELLOS, address(n))], now=now())
        await hello(n)

    return {
        "hello (not shared)": hello,
        "hello + rate (if it were shared)": hello_checked,
        "new session": create,
        "new session + rate": create_checked,
        "new session, rate alongside (bound of a check inside create.lua)": create_alongside,
        "sign-in": login,
        "sign-in + rates": login_checked,
    }


async def latencies(
    ops: dict[str, Callable[[int], Awaitable[Any]]], numbers: count[int], n: int
) -> dict[str, list[float]]:
    """µs of ``n`` of each operation, one after another, the variants interleaved one
    request at a time in turning order (blocks of one variant after another measured
    the machine's load of the moment: twice the latency one way or the other)."""
    out: dict[str, list[float]] = {name: [] for name in ops}
    names = list(ops)
    for i in range(n):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            await ops[name](next(numbers))
            out[name].append((time.perf_counter() - started) * 1e6)
    return out


async def throughput(
    ops: dict[str, Callable[[int], Awaitable[Any]]],
    numbers: count[int],
    callers: int,
    seconds: float,
) -> dict[str, float]:
    """Operations a second of each variant, all running at once with ``callers`` each:
    they share the machine's load of the moment alike."""
    until = time.monotonic() + seconds
    done = dict.fromkeys(ops, 0)

    async def caller(name: str) -> None:
        for _ in range(1_000_000):  # bounded; the time ends it first
            if time.monotonic() >= until:
                return
            await ops[name](next(numbers))
            done[name] += 1

    started = time.monotonic()
    callers_all = [caller(name) for name in ops for _ in range(callers)]
    await asyncio.wait_for(asyncio.gather(*callers_all), seconds + 30)
    elapsed = time.monotonic() - started
    return {name: n / elapsed for name, n in done.items()}


async def redis_usec(backend: RedisBackend, op: Callable[[int], Awaitable[Any]], n: int) -> float:
    """Redis' own µs of scripts per operation (``INFO commandstats``), ``n`` in a row."""
    numbers = count(10_000_000)
    await backend.client.config_resetstat()
    for _ in range(n):
        await op(next(numbers))
    stats = (await backend.client.info("commandstats"))["cmdstat_evalsha"]
    return round(float(stats["usec"]) / n, 1)


async def measure(url: str, rounds: int, per_round: int, callers: int, seconds: float) -> Any:
    backend = RedisBackend(url, key_prefix="bench:")
    await backend.connect()
    numbers = count()
    hello_session = record(None, int(time.time() * 1000))
    await backend.create(hello_session, timeouts=TIMEOUTS, now=hello_session.created)
    ops = operations(backend, hello_session.id)
    samples: dict[str, list[float]] = {name: [] for name in ops}
    rates: dict[str, list[float]] = {name: [] for name in ops}
    in_redis: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name, found in (await latencies(ops, numbers, per_round)).items():
                samples[name] += found
            for name, rate in (await throughput(ops, numbers, callers, seconds)).items():
                rates[name].append(rate)
        for name, op in ops.items():
            in_redis[name] = await redis_usec(backend, op, max(per_round, 3_000))
    finally:
        await backend.disconnect()

    def p(values: list[float], q: float) -> float:
        return round(statistics.quantiles(values, n=100)[int(q) - 1], 1)

    return {
        name: {
            "p50_us": p(samples[name], 50),
            "p99_us": p(samples[name], 99),
            f"ops_per_s_{callers}_callers": round(statistics.median(rates[name])),
            "redis_us_per_op": in_redis[name],
        }
        for name in ops
    }


# Rates nobody reaches, so that the service's answers are all 200.
UNREACHED = {
    f"SESSIONWATCH_{name}": "1000000"
    for name in (
        "MAX_NEW_SESSIONS_PER_SECOND",
        "MAX_LOGINS_PER_USER_PER_SECOND",
        "MAX_LOGINS_PER_ADDRESS_PER_SECOND",
    )
}


def service_requests(process: ServiceProcess) -> dict[str, Callable[[int], Awaitable[Any]]]:
    async def new_session(n: int) -> None:
        headers = [("Content-Type", "application/json")]
        answer = await raw_request(process.port, "POST", "/_sessionwatch/claim", headers, b"{}")
        if answer.status != 200:
            raise RuntimeError(f"claim answered {answer.status}: {answer.body[:200]!r}")

    async def sign_in(n: int) -> None:
        status, body = await process.api("login", {"user": f"u{n}", "client_ip": "10.9.0.1"})
        if status != 200:
            raise RuntimeError(f"login answered {status}: {body}")

    return {"new session (POST /claim)": new_session, "sign-in (API login)": sign_in}


async def measure_service(
    url: str, rounds: int, per_round: int, callers: int, seconds: float
) -> Any:
    variants = {
        shared: ServiceProcess(
            url,
            key_prefix=f"bench-service-{shared}:",
            env={**UNREACHED, "SESSIONWATCH_SHARED_RATE_LIMITS": str(shared).lower()},
        )
        for shared in (False, True)
    }
    numbers = count()
    samples: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    for process in variants.values():
        process.start()
    try:
        # Each request kind with the limits off and on, side by side.
        ops = {
            f"{name}, shared_rate_limits={str(shared).lower()}": op
            for shared, process in variants.items()
            for name, op in service_requests(process).items()
        }
        for _ in range(rounds):
            for name, found in (await latencies(ops, numbers, per_round)).items():
                samples.setdefault(name, []).extend(found)
            for name, rate in (await throughput(ops, numbers, callers, seconds)).items():
                rates.setdefault(name, []).append(rate)
    finally:
        for process in variants.values():
            process.stop()
    return {
        name: {
            "p50_ms": round(statistics.median(values) / 1000, 2),
            "p99_ms": round(statistics.quantiles(values, n=100)[98] / 1000, 2),
            f"requests_per_s_{callers}_clients": round(statistics.median(rates[name])),
        }
        for name, values in sorted(samples.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=400, help="sequential operations")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput run")
    parser.add_argument("--service", action="store_true", help="through sessionwatch serve")
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    measured = measure_service if args.service else measure
    try:
        result = asyncio.run(
            measured(server.url, args.rounds, args.per_round, args.concurrency, args.seconds)
        )
    finally:
        server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
