"""``python -m tests.bench run``: every scenario of issue #6 in one run.

Order (each server started once, sessions created once and reused):

1. request overhead (4): its own small apps, 1 and 2 workers;
2. idle memory (3) of the configurations other than the two defaults;
3. sessionwatch in its production configuration (``sessionwatch serve --workers 2``):
   memory (3), takeover ladders for each tab count from the largest down (1), the
   reconnect storm (6), the revoke-all fan-out (5);
4. each peer (``--peers``, default all: python-socketio + AsyncRedisManager, Node
   Socket.IO + redis-adapter, Django Channels + RedisPubSubChannelLayer, the floor),
   2 workers each: memory (3) and takeover ladders (2).

Prints a markdown report and writes it with the raw figures as JSON to
``tests/bench/results/`` (or ``--json``), and the SVG charts of the takeover ladders
next to them. ``python -m tests.bench charts results.json --out docs/perf/`` draws the
charts again from a JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from .context import ALL_MEMORY, HOLDERS, MAIN_MEMORY, OTHER_MEMORY, PRESETS, Bench, Preset
from .fanout import run_fanout
from .ladders import NAMES
from .memory import measure_memory
from .overhead import run_overhead
from .report import render
from .servers import (
    PEERS,
    REPO,
    Server,
    ensure_node_peer,
    peer_server,
    peer_versions,
    sessionwatch_server,
    socketio_server,
)
from .storm import run_storm
from .takeover import run_takeover

__all__ = ["main", "run", "write_charts"]

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE_SERVERS = ("uvicorn", "hypercorn", "granian")
_OTHER_WS = {"sansio": "websockets-sansio", "wsproto": "wsproto", "websockets": "websockets"}


def _main_memory(bench: Bench, kind: str) -> str:
    """The memory configuration measured on the phase's own server (``sw-uvicorn``
    unless ``--service-server`` says otherwise)."""
    return f"sw-{bench.service_server}" if kind == "sw" else MAIN_MEMORY[kind]


def _memory_server(bench: Bench, label: str) -> tuple[str, Server, bool]:
    url = bench.redis_url
    factory = bench.service_factory
    if label == "sw-uvicorn":
        return "sw", sessionwatch_server(url, factory=factory), False
    if label == "sw-uvicorn-deflate":
        return "sw", sessionwatch_server(url, deflate=True, factory=factory), True
    if label == "sw-hypercorn":
        return "sw", sessionwatch_server(url, server="hypercorn"), False
    if label == "sw-hypercorn-deflate":
        return "sw", sessionwatch_server(url, server="hypercorn"), True
    if label.startswith("sw-uvicorn-") and label[len("sw-uvicorn-") :] in _OTHER_WS:
        ws = _OTHER_WS[label[len("sw-uvicorn-") :]]
        return "sw", sessionwatch_server(url, factory=factory, ws=ws), False
    if label == "sw-granian":
        return "sw", sessionwatch_server(url, server="granian"), False
    if label == "sio-uvicorn":
        return "sio", socketio_server(url), False
    if label == "sio-uvicorn-deflate":
        return "sio", socketio_server(url, deflate=True), True
    raise ValueError(f"unknown memory configuration {label!r}")


def _attempt(results: dict[str, Any], name: str, action: Callable[[], Any]) -> Any:
    """Run one scenario; a failure is recorded in the results and the run goes on."""
    try:
        return action()
    except Exception as exc:
        detail = traceback.format_exc()
        print(f"!! {name} failed: {exc}\n{detail}", file=sys.stderr, flush=True)
        results["errors"].append({"scenario": name, "error": str(exc)[:2000]})
        return None


def _phase(
    bench: Bench,
    kind: str,
    scenarios: set[int],
    modes: tuple[str, ...],
    results: dict[str, Any],
    pool_size: int,
) -> None:
    """One implementation in its default configuration: memory, then the takeover
    ladders (largest tab count first), then (sessionwatch) storm and fan-out."""
    preset = bench.preset
    main_memory = _main_memory(bench, kind)
    server = bench.start(
        sessionwatch_server(
            bench.redis_url, server=bench.service_server, factory=bench.service_factory
        )
        if kind == "sw"
        else peer_server(kind, bench.redis_url)
    )
    try:
        bench.ensure_pool(kind, server, pool_size)
        connected = 0
        if 3 in scenarios and main_memory in preset.memory_configs:
            memory = _attempt(
                results,
                f"memory {main_memory}",
                lambda: measure_memory(
                    bench,
                    main_memory,
                    kind,
                    server,
                    preset.memory_tabs,
                    compression=False,
                    batches=preset.memory_batches,
                ),
            )
            if memory is not None:
                results["memory"].append(memory)
            connected = preset.memory_tabs
        plan: list[tuple[int, int, str]] = []
        if (1 if kind == "sw" else 2) in scenarios:
            plan += [(n, 0, "takeover") for n in preset.tabs]
        if kind == "sw" and 6 in scenarios:
            plan.append((preset.storm_tabs, 1, "storm"))
        plan.sort(key=lambda item: (-item[0], item[1]))
        if plan:
            bench.claimer.call(
                "set_targets",
                120,
                kind=kind,
                host=server.host,
                port=server.port,
                sessions=[tuple(e) for e in bench.pools[kind]],
                redis_url=bench.redis_url,
            )
        for tabs, _, what in plan:
            if connected > tabs:
                bench.close_tabs(list(range(tabs, connected)))
            elif connected < tabs:
                bench.connect(kind, server, range(connected, tabs))
            connected = tabs
            bench.wait_idle(server)
            if what == "takeover":
                takeover = _attempt(
                    results,
                    f"takeover {kind} {tabs}",
                    lambda tabs=tabs: run_takeover(bench, kind, server, tabs, modes),
                )
                if takeover is not None:
                    results["takeover"].append(takeover)
            else:
                bench.log(f"  storm · {tabs:,} tabs")
                results["storm"] = _attempt(
                    results, "storm", lambda tabs=tabs: run_storm(bench, server, tabs)
                )
        bench.close_tabs()
        if kind == "sw" and 5 in scenarios:
            bench.wait_idle(server)  # the workers detach the closed tabs
            bench.log(f"  fan-out · {preset.fanout_tabs} tabs")
            results["fanout"] = _attempt(results, "fan-out", lambda: run_fanout(bench, server))
    finally:
        bench.close_tabs()
        bench.stop(server)


def run(
    preset: Preset,
    scenarios: set[int],
    modes: tuple[str, ...],
    command: str,
    service_factory: str | None = None,
    service_server: str = "uvicorn",
    peers: tuple[str, ...] = PEERS,
) -> dict[str, Any]:
    started = time.monotonic()
    if "node" in peers:
        ensure_node_peer()  # before _meta reads the Node packages' versions (a fresh clone)
    bench = Bench(preset, service_factory=service_factory, service_server=service_server)
    results: dict[str, Any] = {
        "meta": _meta(preset, bench, command),
        "takeover": [],
        "memory": [],
        "overhead": None,
        "fanout": None,
        "storm": None,
        "errors": [],
    }
    need = {
        "sw": max(
            [
                preset.memory_tabs if 3 in scenarios else 0,
                *(preset.tabs if 1 in scenarios else [0]),
                preset.storm_tabs if 6 in scenarios else 0,
            ]
        ),
    }
    for kind in peers:
        need[kind] = max(
            [preset.memory_tabs if 3 in scenarios else 0, *(preset.tabs if 2 in scenarios else [0])]
        )
    try:
        if 4 in scenarios:
            bench.log("[4] request overhead")
            results["overhead"] = _attempt(results, "overhead", lambda: run_overhead(bench))
        if 3 in scenarios:
            for label in preset.memory_configs:
                if label in (_main_memory(bench, "sw"), *MAIN_MEMORY.values()):
                    continue  # measured with the takeover servers below (selected peers)
                bench.log(f"[3] idle memory · {label}")
                kind, server, compression = _memory_server(bench, label)
                try:
                    bench.start(server)
                    bench.ensure_pool(kind, server, need.get(kind, preset.memory_tabs))
                    memory = _attempt(
                        results,
                        f"memory {label}",
                        lambda label=label, kind=kind, server=server, compression=compression: (
                            measure_memory(
                                bench,
                                label,
                                kind,
                                server,
                                preset.memory_tabs,
                                compression=compression,
                                batches=preset.memory_batches,
                            )
                        ),
                    )
                    if memory is not None:
                        results["memory"].append(memory)
                finally:
                    bench.close_tabs()
                    bench.stop(server)
        if scenarios & {1, 5, 6} or (
            3 in scenarios and _main_memory(bench, "sw") in preset.memory_configs
        ):
            bench.log("[1,3,5,6] sessionwatch, production configuration")
            _attempt(
                results,
                "sessionwatch phase",
                lambda: _phase(bench, "sw", scenarios, modes, results, need["sw"]),
            )
        for kind in peers:
            if 2 in scenarios or (3 in scenarios and MAIN_MEMORY[kind] in preset.memory_configs):
                bench.log(f"[2,3] {NAMES[kind]}")
                _attempt(
                    results,
                    f"{NAMES[kind]} phase",
                    lambda kind=kind: _phase(bench, kind, scenarios, modes, results, need[kind]),
                )
        results["setup"] = [agent.call("status", 30) for agent in bench.holders]
    finally:
        bench.close()
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    return results


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "server"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() + (
            " + uncommitted server changes" if dirty.stdout.strip() else ""
        )
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _meta(preset: Preset, bench: Bench, command: str) -> dict[str, Any]:
    from importlib import metadata

    import uvicorn
    import websockets

    return {
        "command": command,
        "preset": preset.name,
        "runs": preset.runs,
        "preset_values": preset.__dict__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "redis": bench.redis_client.info("server").get("redis_version", "?"),
        "commit": _git_commit(),
        "versions": {
            "quart": metadata.version("quart"),
            "uvicorn": uvicorn.__version__,
            "websockets": websockets.__version__,
            "python-socketio": metadata.version("python-socketio"),
            "redis-py": metadata.version("redis"),
            "granian": _version_or_none("granian"),
            **peer_versions(),
        },
        "load_processes": f"{HOLDERS} tab-holder processes and 1 claimer process, uvloop",
    }


def _version_or_none(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _clean(value: Any) -> Any:
    """JSON without NaN (as null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description="sessionwatch benchmarks (issue #6)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run the scenarios and print the report")
    size = run_cmd.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="about a minute: 1 run, 1,000 tabs, fewer rates"
    )
    size.add_argument(
        "--smoke", action="store_true", help="the smallest run (CI): a few tabs, one rate, one run"
    )
    run_cmd.add_argument("--runs", type=int, help="runs per measurement (default 3; quick/smoke 1)")
    run_cmd.add_argument(
        "--scale", type=float, default=1.0, help="multiply every tab count (e.g. 0.1)"
    )
    run_cmd.add_argument("--tabs", help="takeover tab counts, comma-separated (default 1000,10000)")
    run_cmd.add_argument(
        "--http-rates", help="claims/s of the HTTP ladder, comma-separated (default: the preset's)"
    )
    run_cmd.add_argument(
        "--direct-rates",
        help="claims/s of the direct ladder, comma-separated (default: the preset's)",
    )
    run_cmd.add_argument("--scenarios", default="1,2,3,4,5,6", help="which scenarios (default all)")
    run_cmd.add_argument("--modes", default="http,direct", help="claim modes for 1-2: http,direct")
    run_cmd.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"peers of scenarios 2-3, comma-separated (default all: {','.join(PEERS)}; "
        "node needs node and npm, its packages are installed with npm ci on first use)",
    )
    run_cmd.add_argument(
        "--service-factory",
        help="module:function of the sessionwatch app (default: the service), to measure a "
        "candidate change without editing server/ (e.g. tests.bench.variants:create_gc_default_app)",
    )
    run_cmd.add_argument(
        "--memory-configs",
        help="idle-memory configurations of scenario 3, comma-separated, from "
        f"{','.join((*ALL_MEMORY, *OTHER_MEMORY))} "
        "(default: the preset's)",
    )
    run_cmd.add_argument(
        "--service-server",
        choices=SERVICE_SERVERS,
        default="uvicorn",
        help="ASGI server of the sessionwatch phase (scenarios 1, 3, 5, 6; default uvicorn, "
        "the service default), e.g. granian to compare claim latency under it",
    )
    run_cmd.add_argument(
        "--json", type=Path, help="where to write the JSON (default tests/bench/results/)"
    )
    charts_cmd = commands.add_parser(
        "charts", help="draw the SVG charts of a results JSON again (no benchmark run)"
    )
    charts_cmd.add_argument("results", type=Path, help="a JSON written by `run`")
    charts_cmd.add_argument(
        "--out",
        type=Path,
        help="directory of the SVGs (default: next to the JSON, named after it)",
    )
    args = parser.parse_args(argv)
    if args.command == "charts":
        return _charts_command(args.results, args.out)
    if args.service_factory and args.service_server != "uvicorn":
        parser.error("--service-factory runs under uvicorn: leave --service-server out")

    preset = PRESETS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.scale != 1.0:
        preset = preset.scaled(args.scale)
    overrides: dict[str, Any] = {}
    if args.runs:
        overrides["runs"] = args.runs
    if args.tabs:
        overrides["tabs"] = tuple(sorted(int(n) for n in args.tabs.split(",")))
    for mode in ("http", "direct"):
        rates = getattr(args, f"{mode}_rates")
        if rates:
            try:
                overrides[f"{mode}_rates"] = tuple(int(r) for r in rates.split(","))
            except ValueError:
                parser.error(f"--{mode}-rates: whole numbers, comma-separated")
            if not all(r > 0 for r in overrides[f"{mode}_rates"]):
                parser.error(f"--{mode}-rates: every rate must be above 0")
    if args.memory_configs:
        labels = tuple(label.strip() for label in args.memory_configs.split(",") if label.strip())
        unknown = sorted(set(labels) - {*ALL_MEMORY, *OTHER_MEMORY})
        if unknown:
            parser.error(f"unknown memory configuration(s): {', '.join(unknown)}")
        overrides["memory_configs"] = labels
    if overrides:
        preset = Preset(**{**preset.__dict__, **overrides})
    scenarios = {int(s) for s in args.scenarios.split(",") if s.strip()}
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    if set(peers) - set(PEERS):
        parser.error(f"unknown peer(s): {', '.join(sorted(set(peers) - set(PEERS)))}")
    command = "python -m tests.bench " + " ".join(argv if argv is not None else sys.argv[1:])

    print(
        f"sessionwatch benchmarks · preset {preset.name} · scenarios {sorted(scenarios)}",
        flush=True,
    )
    print(
        f"note: {os.cpu_count()} cores shared by the servers, Redis and the load generator "
        f"({HOLDERS} tab holders + 1 claimer)",
        flush=True,
    )
    load = os.getloadavg()[0]
    if load > 1.0:
        print(
            f"warning: the load average is {load:.1f} before starting: other processes share "
            "the cores and will distort the figures",
            file=sys.stderr,
            flush=True,
        )
    results = _clean(
        run(preset, scenarios, modes, command, args.service_factory, args.service_server, peers)
    )
    results["meta"]["loadavg_before"] = load
    results["meta"]["service_factory"] = args.service_factory
    results["meta"]["service_server"] = args.service_server
    results["meta"]["loadavg_after"] = os.getloadavg()[0]
    report = render(results)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = args.json or RESULTS / f"bench-{preset.name}-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    path.with_suffix(".md").write_text(report)
    charts = write_charts(results, path.parent, f"{path.stem}-")
    print()
    print(report)
    if results["errors"]:
        print(
            f"{len(results['errors'])} scenario(s) failed: see above and the JSON", file=sys.stderr
        )
    print(
        f"JSON: {path}\nmarkdown: {path.with_suffix('.md')}\n"
        + "".join(f"chart: {chart}\n" for chart in charts)
        + f"({results['meta']['seconds']:.0f} s)"
    )
    return 0


def write_charts(results: dict[str, Any], out: Path, prefix: str) -> list[Path]:
    """The SVG charts, or none (with a note) where matplotlib is not installed: the
    benchmark itself does not need it."""
    try:
        from .charts import draw_charts

        return draw_charts(results, out, prefix)
    except ImportError as exc:
        print(f"no charts: {exc} (pip install --group bench installs matplotlib)", file=sys.stderr)
        return []


def _charts_command(results_path: Path, out: Path | None) -> int:
    from .charts import draw_charts

    results = json.loads(results_path.read_text())
    if out is None:
        written = draw_charts(results, results_path.parent, f"{results_path.stem}-")
    else:
        written = draw_charts(results, out)
    for chart in written:
        print(f"chart: {chart}")
    if not written:
        print(f"{results_path}: no takeover ladders to draw", file=sys.stderr)
        return 1
    return 0
