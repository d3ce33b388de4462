"""The direct takeover ladder at one tab count, with every process probed for event-loop
stalls (:mod:`tests.bench.gcprobe`), for A/B runs of candidate service apps::

    python -m tests.bench.stalls --tabs 10000 --rates 2000,5000 --rounds 2 \\
        --variant base=sessionwatch.service.app:create_service_app \\
        --variant other=tests.bench.variants:create_gc_frozen_app

Each round starts every variant's server in turn (A B A B ...), connects the tabs,
runs ``--ladders`` direct ladders and closes them; per variant and step it prints the
push latency and, for the connect phase and each step, the collections per generation
(count, total ms, largest ms, CPU ms) and the loop lags (over 2 ms) of the workers, the
tab holders and the claimer, and the load average. Bounded: one server start, one
connect and a few 2 s steps per variant and round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .agents import Agent, call_all
from .context import HOLDERS, PRESETS, Bench
from .gcprobe import summarize
from .servers import sessionwatch_server
from .takeover import _step

RESULTS = Path(__file__).parent / "results"


def _probed_agents(bench: Bench) -> None:
    for agent in [*bench.holders, bench.claimer]:
        agent.stop()
    bench.holders = [
        Agent("tests.bench.gcprobe:ProbedTabHolder", f"tabs-{i}") for i in range(HOLDERS)
    ]
    bench.claimer = Agent("tests.bench.gcprobe:ProbedClaimer", "claimer")


def _worker_events(directory: Path) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = []
    for path in directory.glob("*.jsonl"):
        events += [tuple(json.loads(line)) for line in path.read_text().splitlines()]
    return events


def _line(label: str, summary: dict[str, Any]) -> str:
    return (
        f"      {label:8} gen0 {summary['gen0']}  gen1 {summary['gen1']}  gen2 {summary['gen2']}"
        f"  lags {summary['lags']} >5ms {summary['lags_over_5ms']} with gc {summary['lags_with_gc']}"
        f" busy {summary['lags_busy']}"
    )


def one_round(
    bench: Bench, name: str, factory: str, tabs: int, rates: list[int], ladders: int
) -> dict[str, Any]:
    factory, *flags = factory.split("@")
    quiet_holders = "loud" not in flags
    _probed_agents(bench)  # fresh load-generator processes for every round
    probe_dir = Path(tempfile.mkdtemp(prefix="sw-probe-"))
    os.environ["SW_BENCH_PROBE_DIR"] = str(probe_dir)
    os.environ["SW_BENCH_INNER_FACTORY"] = factory
    load_before = os.getloadavg()
    server = bench.start(
        sessionwatch_server(bench.redis_url, factory="tests.bench.gcprobe:create_probed_app")
    )
    phases: list[tuple[str, float, float]] = []
    steps: list[dict[str, Any]] = []
    try:
        bench.ensure_pool("sw", server, tabs)
        call_all(bench.holders, "probe_start", 30, [dict(quiet=quiet_holders)] * HOLDERS)
        bench.claimer.call("probe_start", 30)
        began = time.monotonic()
        bench.connect("sw", server, range(tabs))
        bench.wait_idle(server)
        phases.append(("connect", began, time.monotonic()))
        bench.claimer.call(
            "set_targets",
            120,
            kind="sw",
            host=server.host,
            port=server.port,
            sessions=[tuple(e) for e in bench.pools["sw"]],
            redis_url=bench.redis_url,
        )
        _step(bench, server, tabs, "direct", 100.0, 0.5)  # warm-up
        time.sleep(0.3)
        for ladder in range(ladders):
            for rate in rates:
                began = time.monotonic()
                step = _step(bench, server, tabs, "direct", float(rate), bench.preset.step_seconds)
                phases.append((f"{rate}/s#{ladder + 1}", began, time.monotonic()))
                steps.append(step)
                time.sleep(0.3)
        bench.sync_tokens("sw")
        time.sleep(1.2)  # the workers' last flush
        holder_events = [e for batch in call_all(bench.holders, "probe_take", 30) for e in batch]
        claimer_events = bench.claimer.call("probe_take", 30)
    finally:
        bench.close_tabs()
        bench.stop(server)
    worker_events = _worker_events(probe_dir)
    shutil.rmtree(probe_dir, ignore_errors=True)
    load_after = os.getloadavg()
    out: dict[str, Any] = {
        "variant": name,
        "factory": factory,
        "quiet_holders": quiet_holders,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "steps": [
            {k: step[k] for k in ("rate", "achieved", "p50", "p99", "max", "lost", "cores")}
            for step in steps
        ],
        "phases": {},
    }
    print(f"    {name}: load average {load_before[0]:.2f} → {load_after[0]:.2f}")
    for label, start, end in phases:
        workers = summarize(worker_events, start, end)
        holders = summarize(holder_events, start, end)
        claimer = summarize(claimer_events, start, end)
        out["phases"][label] = {"workers": workers, "holders": holders, "claimer": claimer}
        print(f"    {label}")
        print(_line("workers", workers))
        print(_line("holders", holders))
        print(_line("claimer", claimer))
        counts = [e for e in worker_events if e[0] == "count" and start <= e[1] < end]
        if counts:
            print(f"      worker gc counts {[tuple(e[2:]) for e in counts]}")
    sockets = [e[2] for e in worker_events if e[0] == "sockets"]
    out["max_sockets_per_worker"] = max(sockets, default=0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.stalls", description=__doc__)
    parser.add_argument("--tabs", type=int, default=10_000)
    parser.add_argument("--rates", default="2000,5000", help="direct claims/s, comma-separated")
    parser.add_argument("--ladders", type=int, default=2, help="ladders per server start")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name=module:function of the app; @loud: the tab holders collect garbage"
        " at the default thresholds throughout, as before their quiet GC (repeat; default"
        " the service)",
    )
    args = parser.parse_args(argv)
    variants = [tuple(v.split("=", 1)) for v in args.variant] or [
        ("base", "sessionwatch.service.app:create_service_app")
    ]
    rates = [int(r) for r in args.rates.split(",")]
    preset = replace(PRESETS["quick"], tabs=(args.tabs,), step_seconds=args.step_seconds)
    bench = Bench(preset)
    results: list[dict[str, Any]] = []
    try:
        for number in range(args.rounds):
            for name, factory in variants:
                print(f"  round {number + 1}/{args.rounds} · {name} ({factory})", flush=True)
                results.append(one_round(bench, name, factory, args.tabs, rates, args.ladders))
    finally:
        bench.close()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"stalls-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    labels = [f"{r}/s#{n + 1} p50/p99/max" for n in range(args.ladders) for r in rates]
    print(f"\n  {'variant':10} {'load':>5}  " + "  ".join(f"{x:>22}" for x in labels))
    for result in results:
        cells = []
        for step in result["steps"]:
            cells.append(f"{step['p50']:7.2f}/{step['p99']:7.2f}/{step['max']:6.1f}")
        print(f"  {result['variant']:10} {result['loadavg_before'][0]:5.2f}  " + "  ".join(cells))
    print(f"  written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
