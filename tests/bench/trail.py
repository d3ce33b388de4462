"""``python -m tests.bench.trail``: the cost of the audit trail, on vs off, in one run.

A private Redis on loopback. In alternating blocks (``--rounds`` each, so that a shared
machine's changing load meets both alike), for the trail on and off:

- claims/s: 32 concurrent callers claiming exclusively (each claim a takeover, so each
  writes a record when the trail is on) through a ``RedisBackend`` for ``--seconds``;
- HTTP claim → push: one server process (uvicorn, ``support.push_app``) with
  ``audit_trail`` on or off, one tab's socket on it, and ``--claims`` sequential HTTP
  claims of the same session; the time from sending each claim to the tab being told
  ``superseded`` (p50, p99 in ms).

Prints a markdown table over all blocks. Every loop is bounded in count and time.
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

from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.trail import AuditSettings
from support.push_processes import AppProcess, HttpBrowser, LiveTab
from support.redis_server import RedisServer

from .durable_ends import BY, TIMEOUTS, _concurrently, _now, _sessions
from .stats import percentile

SETTINGS = {"on": True, "off": False}


async def _claims_per_second(url: str, on: bool, seconds: float) -> tuple[int, float]:
    backend = RedisBackend(
        url, key_prefix=f"bench:{uuid.uuid4().hex[:8]}:", audit=AuditSettings(enabled=on)
    )
    await backend.connect()
    try:
        live = await _sessions(backend, 32 * 4)

        async def claim(session: str) -> None:
            await backend.claim(session, BY, exclusive=True, timeouts=TIMEOUTS, now=_now())

        started = time.perf_counter()
        claimed = await _concurrently(live, claim, seconds=seconds)
        return claimed, time.perf_counter() - started
    finally:
        await backend.disconnect()


async def _claim_to_push(process: AppProcess, claims: int) -> list[float]:
    browser = HttpBrowser()
    tab = LiveTab(browser, process, (await browser.claim(process))["tab"])
    tab.start()
    latencies = []
    try:
        await tab.wait_until(lambda t: t.ready > 0, 10)
        for _ in range(claims):
            started = time.perf_counter()
            gen = (await browser.claim(process))["gen"]
            await tab.wait_until(lambda t, gen=gen: t.told >= gen, 10)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await tab.stop()
    return latencies


async def _main(args: argparse.Namespace) -> None:
    blocks: dict[str, dict[str, Any]] = {
        name: {"claimed": 0, "seconds": 0.0, "latencies": []} for name in SETTINGS
    }
    with RedisServer() as redis_server:
        options = {"max_new_sessions_per_second": 100_000}
        processes = {
            name: AppProcess(
                "uvicorn",
                redis_server.url,
                f"bench:{uuid.uuid4().hex[:8]}:",
                {**options, "audit_trail": on},
            )
            for name, on in SETTINGS.items()
        }
        for process in processes.values():
            process.start()
        try:
            for _ in range(args.rounds):
                for name, on in SETTINGS.items():
                    claimed, seconds = await _claims_per_second(redis_server.url, on, args.seconds)
                    blocks[name]["claimed"] += claimed
                    blocks[name]["seconds"] += seconds
                    blocks[name]["latencies"] += await _claim_to_push(processes[name], args.claims)
        finally:
            for process in processes.values():
                process.stop()
    print(f"{args.rounds} alternating blocks each; load average {os.getloadavg()[0]:.1f}")
    print("| audit trail | claims/s (backend) | HTTP claim → push p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, block in blocks.items():
        latencies = block["latencies"]
        print(
            f"| {name} | {block['claimed'] / block['seconds']:,.0f} | "
            f"{percentile(latencies, 0.5):.2f} | {percentile(latencies, 0.99):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--claims", type=int, default=200)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
