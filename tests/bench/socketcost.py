"""Where an idle tab's bytes and objects go, for A/B runs of candidate service apps::

    python -m tests.bench.socketcost --tabs 10000 --rounds 2 \\
        --variant base=sessionwatch.service.app:create_service_app \\
        --variant other=tests.bench.variants:create_some_app [--trace]

Each round starts every variant's server in turn (A B A B ...), connects ``--warm`` tabs
and closes them, then asks each worker for a census (SIGUSR1: its live objects by type
from ``gc.get_objects()``, and with ``--trace`` a tracemalloc snapshot), connects
``--tabs`` tabs, waits for the workers to settle and asks again. Per variant it prints
the RSS growth per tab, the tracked objects per socket (and the types that grew most),
with ``--trace`` the traced KB per socket by the first frame outside the standard
library, and the workers' garbage collections while the tabs connected (count, wall and
CPU ms per generation, :mod:`tests.bench.gcprobe`), and the load average. Bounded: one
server start and one connect per variant and round.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import shutil
import signal
import sysconfig
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from .context import PRESETS, Bench
from .gcprobe import create_probed_app, summarize
from .servers import sessionwatch_server

RESULTS = Path(__file__).parent / "results"
_STDLIB = sysconfig.get_paths()["stdlib"]
_FRAMES = 12  # traceback depth kept by tracemalloc (the attribution skips stdlib frames)


def _site(trace: tracemalloc.Traceback) -> str:
    """The innermost frame of ``trace`` (oldest first) outside the standard library."""
    for frame in reversed(trace):
        name = frame.filename
        if not name.startswith(_STDLIB) or "site-packages" in name:
            short = name.split("site-packages/")[-1].split("/server/")[-1]
            return f"{short}:{frame.lineno}"
    return f"{trace[-1].filename.split('/')[-1]}:{trace[-1].lineno} (stdlib)"


def _census(out: Path, sockets: int) -> None:
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    record: dict[str, Any] = {"sockets": sockets, "objects": sum(types.values()), "types": types}
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        sites: collections.Counter[str] = collections.Counter()
        for stat in snapshot.statistics("traceback"):
            sites[_site(stat.traceback)] += stat.size
        record["traced"] = sum(sites.values())
        record["sites"] = sites
    path = out / f"{os.getpid()}.census"
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def create_census_app() -> Any:
    """The app of ``SW_BENCH_INNER_FACTORY`` (the service by default) with a
    probe (:func:`~tests.bench.gcprobe.create_probed_app`) and a census on SIGUSR1, written to
    ``SW_BENCH_PROBE_DIR`` (tracemalloc when ``SW_BENCH_TRACE`` is set)."""
    if os.environ.get("SW_BENCH_TRACE"):
        tracemalloc.start(_FRAMES)
    app = create_probed_app()
    out = Path(os.environ["SW_BENCH_PROBE_DIR"])

    @app.before_serving
    async def census_on_signal() -> None:
        hub = app.extensions["sessionwatch"].hub
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: _census(out, len(hub.sockets()))
        )

    return app


def _ask_census(bench: Bench, pids: list[int], directory: Path) -> list[dict[str, Any]]:
    def counts() -> list[int]:
        return [
            len((directory / f"{pid}.census").read_text().splitlines())
            if (directory / f"{pid}.census").exists()
            else 0
            for pid in pids
        ]

    before = counts()
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 300
    while any(a <= b for a, b in zip(counts(), before, strict=True)):
        if time.monotonic() > deadline:
            raise TimeoutError("no census")
        time.sleep(0.5)
    return [json.loads((directory / f"{pid}.census").read_text().splitlines()[-1]) for pid in pids]


def _sum(records: list[dict[str, Any]], key: str) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for record in records:
        total.update(record.get(key, {}))
    return total


def one_round(
    bench: Bench, name: str, factory: str, tabs: int, warm: int, workers: int, trace: bool
) -> dict[str, Any]:
    probe_dir = Path(tempfile.mkdtemp(prefix="sw-census-"))
    os.environ["SW_BENCH_PROBE_DIR"] = str(probe_dir)
    os.environ["SW_BENCH_INNER_FACTORY"] = factory
    if trace:
        os.environ["SW_BENCH_TRACE"] = "1"
    else:
        os.environ.pop("SW_BENCH_TRACE", None)
    load_before = os.getloadavg()
    server = bench.start(
        sessionwatch_server(
            bench.redis_url, workers=workers, factory="tests.bench.socketcost:create_census_app"
        )
    )
    try:
        bench.ensure_pool("sw", server, warm + tabs)
        bench.connect("sw", server, range(tabs, tabs + warm))
        bench.close_tabs(list(range(tabs, tabs + warm)))
        bench.wait_idle(server)
        time.sleep(1.0)
        pids = server.worker_pids()
        before = _ask_census(bench, pids, probe_dir)
        rss_before = server.rss()
        began = time.monotonic()
        summary = bench.connect("sw", server, range(tabs))
        bench.wait_idle(server)
        ended = time.monotonic()
        time.sleep(1.0)
        rss_after = server.rss()
        after = _ask_census(bench, pids, probe_dir)
        time.sleep(1.2)  # the workers' last flush of their probe
    finally:
        bench.close_tabs()
        bench.stop(server)
    events: list[tuple[Any, ...]] = []
    for path in probe_dir.glob("*.jsonl"):
        events += [tuple(json.loads(line)) for line in path.read_text().splitlines()]
    shutil.rmtree(probe_dir, ignore_errors=True)
    sockets = sum(r["sockets"] for r in after) - sum(r["sockets"] for r in before)
    per = max(1, sockets)
    types = _sum(after, "types")
    types.subtract(_sum(before, "types"))
    out: dict[str, Any] = {
        "variant": name,
        "factory": factory,
        "tabs": tabs,
        "connected": summary["connected"],
        "sockets": sockets,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "kb_per_tab_rss": (rss_after - rss_before) / per / 1024,
        "objects_per_socket": (sum(r["objects"] for r in after) - sum(r["objects"] for r in before))
        / per,
        "types_per_socket": {k: v / per for k, v in types.most_common(25)},
        "connect_gc": summarize(events, began, ended),
    }
    if trace:
        sites = _sum(after, "sites")
        sites.subtract(_sum(before, "sites"))
        out["traced_kb_per_socket"] = (
            (sum(r["traced"] for r in after) - sum(r["traced"] for r in before)) / per / 1024
        )
        out["sites_kb_per_socket"] = {k: v / per / 1024 for k, v in sites.most_common(40)}
    _print(out)
    return out


def _print(out: dict[str, Any]) -> None:
    load = f"{out['loadavg_before'][0]:.2f} → {out['loadavg_after'][0]:.2f}"
    print(
        f"    {out['variant']}: {out['sockets']} sockets, {out['kb_per_tab_rss']:.1f} KB/tab RSS, "
        f"{out['objects_per_socket']:.1f} objects/socket, load {load}"
    )
    gen = out["connect_gc"]
    print(
        "      connect gc (count, wall ms, max ms, cpu ms):"
        f" gen0 {gen['gen0']} gen1 {gen['gen1']} gen2 {gen['gen2']}"
    )
    print(
        "      types/socket: "
        + ", ".join(f"{k} {v:.2f}" for k, v in out["types_per_socket"].items())
    )
    if "traced_kb_per_socket" in out:
        print(f"      traced {out['traced_kb_per_socket']:.2f} KB/socket:")
        for site, kb in out["sites_kb_per_socket"].items():
            if abs(kb) >= 0.05:
                print(f"        {kb:6.2f}  {site}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.socketcost", description=__doc__)
    parser.add_argument("--tabs", type=int, default=10_000)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="A B rounds")
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the workers")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name=module:function of the app (repeat; default the service)",
    )
    args = parser.parse_args(argv)
    variants = [tuple(v.split("=", 1)) for v in args.variant] or [
        ("base", "sessionwatch.service.app:create_service_app")
    ]
    bench = Bench(replace(PRESETS["quick"], tabs=(args.tabs,)))
    results: list[dict[str, Any]] = []
    try:
        for number in range(args.rounds):
            for name, factory in variants:
                print(f"  round {number + 1}/{args.rounds} · {name} ({factory})", flush=True)
                results.append(
                    one_round(bench, name, factory, args.tabs, args.warm, args.workers, args.trace)
                )
    finally:
        bench.close()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"socketcost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"  written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
