"""``python -m tests.bench.durable_ends``: the cost of durable ends, side by side.

A private primary and one replica on loopback; one ``RedisBackend`` per setting
(``durable_ends`` off and ``auto``), measured in alternating blocks (``--rounds`` each,
so that a shared machine's changing load meets both alike). Each block:

- revoke latency: ``--sequential`` single-session revocations one after another
  (p50, p99 in ms);
- revocations/s: ``--concurrent`` revocations by 32 concurrent callers;
- claims/s: 32 concurrent callers claiming for ``--seconds`` (claims never wait: the
  figure should not move).

Prints a markdown table over all blocks. Every loop is bounded in count
and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: support.*

import redis

from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.events import Device
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.redis_server import RedisServer

from .stats import percentile

TIMEOUTS = Timeouts(idle=3_600_000, absolute=7_200_000, refresh=60_000, tombstone=600_000)
CALLERS = 32
BY = Device(browser="Firefox", os="Linux", place="x", at=0)


def _now() -> int:
    return int(time.time() * 1000)


async def _sessions(backend: RedisBackend, count: int) -> list[str]:
    ids = []
    for i in range(count):
        user = f"u{i}"
        now = _now()
        record = SessionRecord(
            id=public_id(new_session_id(user_tag(user))),
            user=user,
            created=now,
            seen=now,
            absolute_expiry=now + TIMEOUTS.absolute,
            gen=0,
            tab_key="k" * 32,
            device={"browser": "Firefox", "os": "Linux", "place": "x"},
        )
        await backend.login(None, record, limit=None, deny=False, timeouts=TIMEOUTS, now=now)
        ids.append(record.id)
    return ids


async def _concurrently(ids: list[str], work: Any, seconds: float | None = None) -> int:
    """Run ``work(id)`` over ``ids`` with ``CALLERS`` callers; the count done."""
    queue = list(reversed(ids))
    stop = time.monotonic() + seconds if seconds else None
    done = 0

    async def caller() -> None:
        nonlocal done
        while queue and (stop is None or time.monotonic() < stop):
            await work(queue.pop())
            done += 1
            if seconds:
                queue.insert(0, ids[done % len(ids)])  # claims repeat over the sessions

    await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(CALLERS))), 120)
    return done


async def _backend(url: str, setting: int | str) -> RedisBackend:
    backend = RedisBackend(
        url,
        key_prefix=f"bench:{uuid.uuid4().hex[:8]}:",
        durable_ends=setting,  # type: ignore[arg-type]
    )
    await backend.connect()
    return backend


async def _block(backend: RedisBackend, args: argparse.Namespace) -> dict[str, Any]:
    """One block of each measurement on ``backend``."""
    ids = await _sessions(backend, args.sequential + args.concurrent)
    latencies = []
    for session in ids[: args.sequential]:
        started = time.perf_counter()
        await backend.end(session, "revoked", timeouts=TIMEOUTS, now=_now())
        latencies.append((time.perf_counter() - started) * 1000)

    async def revoke(session: str) -> None:
        await backend.end(session, "revoked", timeouts=TIMEOUTS, now=_now())

    started = time.perf_counter()
    revoked = await _concurrently(ids[args.sequential :], revoke)
    revoke_seconds = time.perf_counter() - started
    live = await _sessions(backend, CALLERS * 4)

    async def claim(session: str) -> None:
        await backend.claim(session, BY, exclusive=True, timeouts=TIMEOUTS, now=_now())

    started = time.perf_counter()
    claimed = await _concurrently(live, claim, seconds=args.seconds)
    return {
        "latencies": latencies,
        "revoked": revoked,
        "revoke_seconds": revoke_seconds,
        "claimed": claimed,
        "claim_seconds": time.perf_counter() - started,
    }


async def _main(args: argparse.Namespace) -> None:
    with RedisServer() as primary:
        replica = RedisServer(args=("--replicaof", "127.0.0.1", str(primary.port)))
        with replica:
            client = redis.Redis(port=primary.port)
            with client:  # the replica's first sync done: it acknowledges
                client.set("bench-sync", "1")
                if client.execute_command("WAIT", 1, 10_000) != 1:
                    raise RuntimeError("the replica did not sync")
            backends = {
                "off": await _backend(primary.url, 0),
                "auto": await _backend(primary.url, "auto"),
            }
            blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in backends}
            try:
                # Alternating blocks: a shared machine's load changes meet both alike.
                for _ in range(args.rounds):
                    for name, backend in backends.items():
                        blocks[name].append(await _block(backend, args))
            finally:
                for backend in backends.values():
                    await backend.disconnect()
    print(f"{args.rounds} alternating blocks each; load average {os.getloadavg()[0]:.1f}")
    print("| durable_ends | revoke p50 ms | revoke p99 ms | revocations/s | claims/s |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in blocks.items():
        latencies = [value for run in runs for value in run["latencies"]]
        revokes = sum(run["revoked"] for run in runs) / sum(run["revoke_seconds"] for run in runs)
        claims = sum(run["claimed"] for run in runs) / sum(run["claim_seconds"] for run in runs)
        print(
            f"| {name} | {percentile(latencies, 0.5):.3f} | {percentile(latencies, 0.99):.3f} | "
            f"{revokes:,.0f} | {claims:,.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sequential", type=int, default=400)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
