"""Redis Cluster vs one Redis, same machine, same run: ``python -m tests.bench.cluster``.

Starts a private ``redis-server`` and a private 6-node cluster (3 primaries, 3
replicas) and measures, through the backends themselves (no HTTP, no sockets, so the
topology is what differs):

- claims/s: ``--workers`` client processes, each with ``--concurrency`` claims in
  flight on its own sessions, for ``--seconds``;
- claim → push latency: one subscriber process-local, one claim at a time, time until
  the ``superseded`` event arrives (``--pushes`` samples);
- the per-operation costs of the capacity model (docs/deployment.md): Redis CPU per
  claim, per protected request (a ``load``) and per push, Redis memory per session and
  per subscribed channel, on one Redis;
- after ``--sessions`` sign-ins on the cluster: keys and commands per primary (an even
  spread: no primary above 40 %).

Every loop is bounded in count and time. The machine is shared: figures are this run's,
printed and (``--json``) written; nothing is asserted but the spread and the errors.
``--smoke`` is the default test run's mode (tests/bench/test_cluster_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis as syncredis
import redis.asyncio as aioredis
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import Backend, Timeouts, session_channel
from sessionwatch.core.events import Device
from sessionwatch.core.tabs import new_tab_key
from sessionwatch.core.tokens import new_session_id, public_id, user_tag

from .stats import percentile

TIMEOUTS = Timeouts(idle=30 * 60_000, absolute=12 * 3_600_000, refresh=60_000, tombstone=60_000)
BY = Device(browser="Chrome 120", os="Linux", place="127.0.0.0/24", at=0)
NOW = 1_800_000_000_000
PREFIX = "bench:"


def record(user: str | None) -> Any:
    from sessionwatch.backends.base import SessionRecord

    return SessionRecord(
        id=public_id(new_session_id(user_tag(user) if user else None)),
        user=user,
        created=NOW,
        seen=NOW,
        absolute_expiry=NOW + TIMEOUTS.absolute,
        gen=0,
        tab_key=new_tab_key(),
        device={"browser": "Chrome 120", "os": "Linux", "place": "127.0.0.0/24"},
    )


async def connected(url: str, prefix: str = PREFIX) -> Backend:
    backend = backend_from_url(url, key_prefix=prefix)
    await backend.connect()
    return backend


# -- claims/s (in worker processes) ------------------------------------------------------


def _claim_worker(url: str, index: int, concurrency: int, seconds: float, out: Any) -> None:
    async def main() -> dict[str, Any]:
        backend = await connected(url)
        ids = []
        for i in range(concurrency):
            rec = record(f"w{index}-{i}")
            await backend.login(None, rec, limit=None, deny=False, timeouts=TIMEOUTS, now=NOW)
            ids.append(rec.id)
        done, errors = 0, 0
        deadline = time.perf_counter() + seconds

        async def loop(public: str) -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                try:
                    await backend.claim(public, BY, exclusive=True, timeouts=TIMEOUTS, now=NOW)
                    done += 1
                except Exception:
                    errors += 1
                    await asyncio.sleep(0.01)

        started = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in ids))
        elapsed = time.perf_counter() - started
        await backend.disconnect()
        return {"claims": done, "errors": errors, "seconds": elapsed}

    out.put(asyncio.run(main()))


def claims_per_second(url: str, workers: int, concurrency: int, seconds: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_claim_worker, args=(url, i, concurrency, seconds, out))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    claims = sum(r["claims"] for r in results)
    longest = max(r["seconds"] for r in results)
    return {
        "claims": claims,
        "errors": sum(r["errors"] for r in results),
        "claims_per_s": round(claims / longest),
        "workers": workers,
        "concurrency": concurrency,
    }


# -- claim → push latency ------------------------------------------------------------------


async def push_latency(url: str, samples: int, sessions: int = 30) -> dict[str, Any]:
    backend = await connected(url)
    subscription = backend.subscription()
    arrived: asyncio.Queue[float] = asyncio.Queue()

    async def read() -> None:
        async for message in subscription:
            if not message.resync:
                arrived.put_nowait(time.perf_counter())

    reader = asyncio.create_task(read())
    ids = []
    for i in range(sessions):  # spread over the slots (and primaries)
        rec = record(f"push{i}")
        await backend.login(None, rec, limit=None, deny=False, timeouts=TIMEOUTS, now=NOW)
        ids.append(rec.id)
    await asyncio.wait_for(subscription.subscribe(*(session_channel(PREFIX, i) for i in ids)), 30)
    latencies = []
    for n in range(samples):
        started = time.perf_counter()
        await backend.claim(ids[n % sessions], BY, exclusive=True, timeouts=TIMEOUTS, now=NOW)
        latencies.append(1000 * (await asyncio.wait_for(arrived.get(), 10) - started))
    await subscription.aclose()
    reader.cancel()
    await backend.disconnect()
    return {
        "samples": samples,
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
    }


# -- per-operation costs on one Redis ------------------------------------------------------


def _cpu(client: syncredis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def costs(url: str, count: int) -> dict[str, Any]:
    """Redis CPU (µs) per claim / load / push and memory (bytes) per session / channel."""
    admin = syncredis.Redis.from_url(url)
    backend = await connected(url)
    before = admin.info("memory")["used_memory"]
    ids = []
    for i in range(count):
        rec = record(f"cost{i}")
        await backend.login(None, rec, limit=None, deny=False, timeouts=TIMEOUTS, now=NOW)
        ids.append(rec.id)
    per_session = (admin.info("memory")["used_memory"] - before) / count

    async def measure(step: Any) -> float:
        cpu = _cpu(admin)
        for public in ids:
            await step(public)
        return 1e6 * (_cpu(admin) - cpu) / count

    claim = await measure(
        lambda p: backend.claim(p, BY, exclusive=False, timeouts=TIMEOUTS, now=NOW)
    )
    load = await measure(lambda p: backend.load(p, timeouts=TIMEOUTS, now=NOW))
    cpu = _cpu(admin)  # presence: the hub refreshes each socket once per heartbeat, 32 a batch
    for batch in range(0, count, 32):
        sockets = [(i, f"socket-{i}") for i in ids[batch : batch + 32]]
        await backend.set_presence(sockets, until=NOW + 60_000, now=NOW)
    presence = 1e6 * (_cpu(admin) - cpu) / count
    # One raw pub/sub connection holds a channel per session (as hubs do, spread over
    # workers); subscribed in chunks, each confirmed, then drained while claims publish.
    listener = aioredis.Redis.from_url(url).pubsub()
    memory = admin.info("memory")["used_memory"]
    for chunk in range(0, count, 1000):
        channels = [session_channel(PREFIX, i) for i in ids[chunk : chunk + 1000]]
        await listener.subscribe(*channels)
        confirmed = 0
        async with asyncio.timeout(60):
            while confirmed < len(channels):
                message = await listener.get_message(timeout=1.0)
                confirmed += bool(message and message["type"] == "subscribe")
    per_channel = (admin.info("memory")["used_memory"] - memory) / count
    reader = asyncio.create_task(_drain(listener))
    push = await measure(lambda p: backend.claim(p, BY, exclusive=True, timeouts=TIMEOUTS, now=NOW))
    reader.cancel()
    await listener.aclose()
    await backend.disconnect()
    admin.close()
    return {
        "operations": count,
        "cpu_us_claim": round(claim, 1),
        "cpu_us_load": round(load, 1),
        # a push: the claim that publishes, less one that does not
        "cpu_us_push": round(max(push - claim, 0.0), 1),
        "cpu_us_presence_per_socket": round(presence, 1),
        "bytes_per_session": round(per_session),
        "bytes_per_channel": round(per_channel),
    }


async def _drain(listener: Any) -> None:
    while True:
        await listener.get_message(timeout=1.0)


async def cluster_costs(cluster: RedisCluster, count: int) -> dict[str, Any]:
    """Redis CPU (µs, summed over the primaries) per claim, load and presence refresh on
    the cluster: each call is a script on its slot's primary; a presence batch is split
    into one script per slot (sessions of different users share none)."""
    admins = [syncredis.Redis(port=n.port) for n in cluster.primaries()]
    backend = await connected(cluster.url, "costs:")
    ids = []
    for i in range(count):
        rec = record(f"ccost{i}")
        await backend.login(None, rec, limit=None, deny=False, timeouts=TIMEOUTS, now=NOW)
        ids.append(rec.id)

    def cpu() -> float:
        return sum(_cpu(admin) for admin in admins)

    async def measure(step: Any) -> float:
        before = cpu()
        for public in ids:
            await step(public)
        return round(1e6 * (cpu() - before) / count, 1)

    claim = await measure(
        lambda p: backend.claim(p, BY, exclusive=False, timeouts=TIMEOUTS, now=NOW)
    )
    load = await measure(lambda p: backend.load(p, timeouts=TIMEOUTS, now=NOW))
    before = cpu()
    for batch in range(0, count, 32):
        sockets = [(i, f"socket-{i}") for i in ids[batch : batch + 32]]
        await backend.set_presence(sockets, until=NOW + 60_000, now=NOW)
    presence = round(1e6 * (cpu() - before) / count, 1)
    await backend.disconnect()
    for admin in admins:
        admin.close()
    return {
        "operations": count,
        "cpu_us_claim": claim,
        "cpu_us_load": load,
        "cpu_us_presence_per_socket": presence,
    }


# -- spread over the primaries ---------------------------------------------------------------


async def spread(cluster: RedisCluster, sessions: int) -> dict[str, Any]:
    backend = await connected(cluster.url, "spread:")
    primaries = cluster.primaries()
    admins = {n.port: syncredis.Redis(port=n.port) for n in primaries}
    for admin in admins.values():
        admin.config_resetstat()
    semaphore = asyncio.Semaphore(64)

    async def login(i: int) -> None:
        async with semaphore:
            await backend.login(
                None, record(f"spread{i}"), limit=None, deny=False, timeouts=TIMEOUTS, now=NOW
            )

    started = time.perf_counter()
    for batch in range(0, sessions, 2000):  # bounded: a batch at a time
        await asyncio.gather(*(login(i) for i in range(batch, min(batch + 2000, sessions))))
    elapsed = time.perf_counter() - started
    nodes = {}
    for port, admin in admins.items():
        stats = admin.info("commandstats")
        nodes[port] = {
            "keys": sum(1 for _ in admin.scan_iter(match="spread:*", count=5000)),
            "commands": sum(int(v["calls"]) for v in stats.values()),
            "scripts": int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
        }
        admin.close()
    await backend.disconnect()
    keys = sum(n["keys"] for n in nodes.values())
    scripts = sum(n["scripts"] for n in nodes.values())
    for node in nodes.values():
        node["keys_share"] = round(node["keys"] / keys, 4)
        node["scripts_share"] = round(node["scripts"] / max(scripts, 1), 4)
    return {"sessions": sessions, "logins_per_s": round(sessions / elapsed), "nodes": nodes}


# -- the command -----------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, single: RedisServer, cluster: RedisCluster
) -> dict[str, Any]:
    results: dict[str, Any] = {"errors": []}
    for name, url in (("redis", single.url), ("cluster", cluster.url)):
        throughput = await asyncio.to_thread(
            claims_per_second, url, args.workers, args.concurrency, args.seconds
        )
        latency = await push_latency(url, args.pushes)
        results[name] = {"throughput": throughput, "push": latency}
        if throughput["errors"]:
            results["errors"].append(f"{name}: {throughput['errors']} failed claims")
    results["costs"] = await costs(single.url, args.cost_ops)
    results["cluster_costs"] = await cluster_costs(cluster, args.cost_ops)
    results["spread"] = await spread(cluster, args.sessions)
    worst = max(n["keys_share"] for n in results["spread"]["nodes"].values())
    if worst > 0.40:
        results["errors"].append(f"uneven spread: a primary holds {worst:.1%} of the keys")
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| topology | claims/s | claim → push p50 | p99 |",
        "|---|---|---|---|",
    ]
    for name in ("redis", "cluster"):
        r = results[name]
        lines.append(
            f"| {name} | {r['throughput']['claims_per_s']:,} | {r['push']['p50_ms']} ms "
            f"| {r['push']['p99_ms']} ms |"
        )
    c = results["costs"]
    lines += [
        "",
        f"one Redis, per operation: claim {c['cpu_us_claim']} µs CPU, protected request "
        f"(load) {c['cpu_us_load']} µs, push {c['cpu_us_push']} µs, presence refresh "
        f"{c['cpu_us_presence_per_socket']} µs per socket; "
        f"{c['bytes_per_session']} B per session, {c['bytes_per_channel']} B per subscribed channel",
        "",
        f"cluster, summed over the primaries: claim {results['cluster_costs']['cpu_us_claim']} µs, "
        f"load {results['cluster_costs']['cpu_us_load']} µs, presence refresh "
        f"{results['cluster_costs']['cpu_us_presence_per_socket']} µs per socket",
        "",
        f"after {results['spread']['sessions']:,} sign-ins on the cluster "
        f"({results['spread']['logins_per_s']:,} logins/s):",
        "",
        "| primary | keys | share | commands | scripts share |",
        "|---|---|---|---|---|",
    ]
    for port, node in results["spread"]["nodes"].items():
        lines.append(
            f"| :{port} | {node['keys']:,} | {node['keys_share']:.1%} | {node['commands']:,} "
            f"| {node['scripts_share']:.1%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.cluster", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test run's mode)")
    parser.add_argument("--workers", type=int, default=2, help="claiming processes")
    parser.add_argument("--concurrency", type=int, default=32, help="claims in flight per process")
    parser.add_argument("--seconds", type=float, default=10.0, help="claiming time per topology")
    parser.add_argument("--pushes", type=int, default=2000, help="claim → push samples")
    parser.add_argument("--cost-ops", type=int, default=20_000, help="operations per cost figure")
    parser.add_argument("--sessions", type=int, default=100_000, help="sign-ins for the spread")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.workers, args.concurrency, args.seconds = 1, 4, 1.0
        args.pushes, args.cost_ops, args.sessions = 50, 300, 1500
    with RedisServer() as single, RedisCluster() as cluster:
        results = asyncio.run(run(args, single, cluster))
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    for error in results["errors"]:
        print("error:", error, file=sys.stderr)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
