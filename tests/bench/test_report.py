"""The report's arithmetic on hand-made results: issue #17's targets (met and missed)
and the charts command. No benchmark runs here; test_bench_smoke.py runs one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.ladders import cpu_ms_per_claim
from bench.report import render
from bench.runner import main, write_charts
from bench.targets import Target, compare_ladders, targets

HTTP_RATES = [100, 500, 1000]
DIRECT_RATES = [100, 1000, 5000, 10000]


def step(
    rate: float,
    p50: float | None,
    p99: float | None,
    *,
    collapsed: bool = False,
    cpu: float | None = None,
) -> dict[str, Any]:
    """One ladder step as takeover.py records it (the fields the report reads);
    ``cpu``: the workers' CPU seconds over the step, for 2 s of claims."""
    ok = int(rate * 2)
    return {
        "rate": float(rate),
        "ok": ok,
        "achieved": float(rate),
        "p50": p50,
        "p99": p99,
        "max": p99,
        "lost": 0,
        "failures": {},
        "passed": p99 is not None and p99 <= 5.0 and not collapsed,
        "collapsed": collapsed,
        "cores": {"server": round((cpu or 0.0) / 2, 3)},
        "cpu_seconds": {"server": cpu if cpu is not None else 0.002 * ok},
    }


def results(
    takeover: list[dict[str, Any]],
    *,
    tabs: tuple[int, ...] = (1000, 10000),
    overhead: dict[str, Any] | None = None,
    memory: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "meta": {
            "command": "python -m tests.bench run",
            "preset": "full",
            "runs": 1,
            "date": "2026-12-01 00:00 UTC",
            "commit": "abc1234",
            "cpus": 2,
            "cpu_model": "test",
            "memory_gb": 1.0,
            "python": "3.11",
            "redis": "7",
            "load_processes": "none",
            "preset_values": {
                "tabs": list(tabs),
                "http_rates": HTTP_RATES,
                "direct_rates": DIRECT_RATES,
            },
        },
        "takeover": takeover,
        "memory": memory or [],
        "overhead": overhead,
        "fanout": None,
        "storm": None,
        "errors": [],
    }


def ladder(kind: str, tabs: int, **modes: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {"kind": kind, "tabs": tabs, "server": "uvicorn", "modes": modes, "idle_cores": 0.02}


def by_target(found: list[Target], start: str) -> Target:
    matches = [t for t in found if t.target.startswith(start)]
    assert len(matches) == 1, [t.target for t in found]
    return matches[0]


def test_sessionwatch_at_or_below_python_socketio_at_every_rate() -> None:
    # python-socketio collapses at 5,000/s, so its ladder never reaches 10,000/s: both
    # count for sessionwatch, whose steps there were measured.
    data = results(
        [
            ladder(
                "sw",
                1000,
                direct=[
                    [
                        step(100, 0.5, 1.0),
                        step(1000, 0.4, 0.9),
                        step(5000, 0.8, 3.0),
                        step(10000, 1.0, 4.0),
                    ]
                ],
            ),
            ladder(
                "sio",
                1000,
                direct=[
                    [
                        step(100, 0.5, 1.1),
                        step(1000, 0.5, 0.9),
                        step(5000, 1.0, 900, collapsed=True),
                    ]
                ],
            ),
        ],
        tabs=(1000,),
    )
    comparison = compare_ladders(data, 1000, "direct")
    assert comparison is not None
    assert (comparison.rates, comparison.passed, comparison.by_collapse) == (4, 4, 2)
    assert comparison.failing == ()
    row = by_target(targets(data), "sessionwatch p50 and p99")
    assert row.passed is True and row.measured.startswith("4/4 rates")


def test_every_peer_compared_the_floor_within_two_times_and_memory() -> None:
    """Issue #28: a comparison row per peer, the floor's p50 bound at 2 times, memory at
    or below every peer's, and every implementation in one side-by-side table."""

    def steps(*figures: tuple[float, float]) -> list[list[dict[str, Any]]]:
        return [[step(rate, *pair) for rate, pair in zip(DIRECT_RATES, figures, strict=True)]]

    data = results(
        [
            ladder("sw", 1000, direct=steps((0.5, 1.0), (0.9, 2.0), (1.0, 3.0), (1.2, 4.0))),
            ladder("node", 1000, direct=steps((0.6, 1.2), (0.8, 2.5), (1.1, 3.5), (1.5, 5.0))),
            ladder("channels", 1000, direct=steps((0.9, 3.0), (2.0, 9.0), (3.0, 9.5), (4, 30))),
            ladder("floor", 1000, direct=steps((0.3, 0.6), (0.4, 0.9), (0.5, 1.0), (0.6, 2.0))),
        ],
        tabs=(1000,),
        memory=[
            {"label": "sw-uvicorn", "kind": "sw", "connected": 1000, "kb_per_tab": 15.0},
            {"label": "node-cluster", "kind": "node", "connected": 1000, "kb_per_tab": 12.0},
            {
                "label": "channels-uvicorn",
                "kind": "channels",
                "connected": 1000,
                "kb_per_tab": 20.0,
            },
            {"label": "floor-uvicorn", "kind": "floor", "connected": 1000, "kb_per_tab": 5.0},
        ],
    )
    found = targets(data)
    node = by_target(found, "sessionwatch p50 and p99 ≤ Socket.IO (Node)'s")
    assert node.passed is False and node.measured == "3/4 rates; ✗ 1,000/s p50 0.90 > 0.80 (ms)"
    assert by_target(found, "sessionwatch p50 and p99 ≤ Django Channels's").passed is True
    floor = by_target(found, "sessionwatch p50 ≤ 2 x the floor's")
    assert (
        floor.passed is False and floor.measured == "3/4 rates; ✗ 1,000/s p50 0.90 > 2 x 0.40 (ms)"
    )
    memory = by_target(found, "memory per idle tab ≤ every peer's")
    assert memory.passed is False  # the floor is not a peer here; Node's 12 KB is
    assert memory.measured == "15.0 KB vs Socket.IO (Node) 12.0, Django Channels 20.0"
    text = render({**data, "memory": []})
    assert "| 1,000 | 100 | 0.50 / 1.00 | 2.000 | 0.60 / 1.20 | 2.000 | 0.90 / 3.00 |" in text
    assert "| tabs | sessionwatch | Socket.IO (Node) | Django Channels | floor |" in text


def test_slower_steps_and_steps_sessionwatch_never_reached_fail() -> None:
    data = results(
        [
            ladder(
                "sw",
                1000,
                http=[
                    [step(100, 2.4, 3.4), step(500, 0.9, 1.5), step(1000, 9.0, 150, collapsed=True)]
                ],
            ),
            ladder(
                "sio", 1000, http=[[step(100, 1.8, 3.0), step(500, 1.0, 1.6), step(1000, 2.0, 4.0)]]
            ),
        ],
        tabs=(1000,),
    )
    comparison = compare_ladders(data, 1000, "http")
    assert comparison is not None
    assert (comparison.rates, comparison.passed) == (3, 1)
    assert comparison.failing == (
        "100/s p50 2.40 > 1.80, p99 3.40 > 3.00",
        "1,000/s p50 9.00 > 2.00, p99 150.00 > 4.00",
    )
    # A rate of the preset's ladder that neither reached: not measured for sessionwatch.
    data["meta"]["preset_values"]["http_rates"] = [*HTTP_RATES, 2000]
    comparison = compare_ladders(data, 1000, "http")
    assert comparison is not None
    assert comparison.failing[-1] == "2,000/s not measured"
    row = by_target(targets(data), "sessionwatch p50 and p99")
    assert row.passed is False and "✗ 100/s p50 2.40 > 1.80" in row.measured


def test_medians_over_runs_and_a_python_socketio_collapse_in_one_run_of_three() -> None:
    sw = [[step(100, p50, p99)] for p50, p99 in ((0.5, 1.0), (0.7, 2.0), (0.6, 9.0))]
    sio = [[step(100, 0.6, 2.5)], [step(100, 0.6, 1.5)], [step(100, 5, 500, collapsed=True)]]
    data = results([ladder("sw", 1000, http=sw), ladder("sio", 1000, http=sio)], tabs=(1000,))
    data["meta"]["preset_values"]["http_rates"] = [100]
    comparison = compare_ladders(data, 1000, "http")
    assert comparison is not None
    # sessionwatch: p50 0.6, p99 2.0; python-socketio's two steps that held: 0.6, 2.0.
    assert (comparison.passed, comparison.by_collapse, comparison.failing) == (1, 0, ())
    sio[1][0]["p99"] = 1.4
    comparison = compare_ladders(data, 1000, "http")
    assert comparison is not None and comparison.failing == ("100/s p99 2.00 > 1.95",)
    # Two of three runs collapsed: python-socketio did not hold 100/s, whatever its third.
    sio[0][0]["collapsed"] = True
    comparison = compare_ladders(data, 1000, "http")
    assert comparison is not None
    assert (comparison.passed, comparison.by_collapse, comparison.failing) == (1, 1, ())


def test_no_comparison_without_python_socketio() -> None:
    data = results([ladder("sw", 1000, http=[[step(100, 0.5, 1.0)]])], tabs=(1000,))
    assert compare_ladders(data, 1000, "http") is None
    assert not any(t.target.startswith("sessionwatch p50 and p99") for t in targets(data))


def full_run(*, fast: bool) -> dict[str, Any]:
    """Both tab counts, both modes; ``fast``: every figure meets its target."""
    sw_http = [
        step(100, 0.8 if fast else 2.4, 1.9 if fast else 3.4, cpu=0.14 if fast else 0.3),
        step(500, 1.0, 2.0),
        step(1000, 1.2, 2.5),
    ]
    sw_direct = [
        step(100, 0.5, 1.0),
        step(1000, 0.4, 0.9, cpu=0.08 if fast else 0.4),
        step(5000, 0.8, 3.0 if fast else 8.0),
        step(10000, 2.0, 30.0),
    ]
    rps = {"bare": [12000.0], "cookie": [10000.0], "open": [9000.0]}
    return results(
        [
            ladder("sw", 10000, direct=[sw_direct]),
            ladder("sw", 1000, http=[sw_http], direct=[sw_direct]),
        ],
        overhead={
            "workers": {
                "2": {
                    "rps": {**rps, "protected": [8500.0 if fast else 5500.0]},
                    "redis": {"protected": {"evalsha_per_request": 1.0, "per_request": {}}},
                }
            }
        },
        memory=[
            {
                "label": "sw-uvicorn",
                "kind": "sw",
                "server": "uvicorn",
                "connected": 10000,
                "kb_per_tab": 15.5 if fast else 22.7,
                "batch_kb_per_tab": [15.0, 16.0],
                "negotiated": 0,
                "tabs_per_worker": [5000, 5000],
            }
        ],
    )


def test_every_single_figure_target_met() -> None:
    found = targets(full_run(fast=True))
    assert [t.passed for t in found] == [True] * len(found)
    assert by_target(found, "HTTP claim → push p50").measured == "0.80 ms"
    assert "1,000 tabs, http, 100/s" in by_target(found, "HTTP claim → push p99").target
    assert by_target(found, "≥ 5,000 pushes/s").measured == (
        "highest passing: 5,000/s (p99 at 5,000/s: 3.00 ms)"
    )
    assert "10,000 tabs, direct" in by_target(found, "≥ 5,000 pushes/s").target
    claim = by_target(found, "worker CPU per HTTP claim ≤ 0.8 ms")
    assert claim.measured.startswith("0.700 ms")  # 0.14 s over 200 claims
    assert "idle work ≈ 0.200 ms" in claim.measured  # 0.02 cores at 100/s
    push = by_target(found, "worker CPU per push ≤ 0.05 ms")
    assert "1,000 tabs, direct, 1,000/s" in push.target
    assert push.measured.startswith("0.040 ms")  # 0.08 s over 2,000 claims
    route = by_target(found, "protected route ≥ 80%")
    assert route.measured == "85% (8,500 vs 10,000)" and "(2 worker(s))" in route.target
    assert by_target(found, "1 Redis round trip").passed is True
    assert by_target(found, "≤ 16 KB per idle tab").measured == "15.5 KB"


def test_every_single_figure_target_missed() -> None:
    found = targets(full_run(fast=False))
    missed = {
        "HTTP claim → push p50": "2.40 ms",
        "HTTP claim → push p99": "3.40 ms",
        "≥ 5,000 pushes/s": "highest passing: 1,000/s (p99 at 5,000/s: 8.00 ms)",
        "worker CPU per HTTP claim": "1.500 ms; of it the workers' idle work ≈ 0.200 ms",
        "worker CPU per push": "0.200 ms; of it the workers' idle work ≈ 0.020 ms",
        "protected route": "55% (5,500 vs 10,000)",
        "≤ 16 KB per idle tab": "22.7 KB",
    }
    for start, measured in missed.items():
        target = by_target(found, start)
        assert (target.measured, target.passed) == (measured, False), start


def test_the_cpu_rows_name_the_kernels_share_and_every_peers_figure() -> None:
    mine = step(1000, 0.5, 1.0, cpu=0.4)  # 2,000 claims: 0.200 ms each
    mine["cpu_seconds"]["server_kernel"] = 0.1
    node = step(1000, 0.3, 0.6, cpu=0.3)
    data = results(
        [
            ladder("sw", 1000, direct=[[step(100, 0.5, 1.0), mine]]),
            ladder("node", 1000, direct=[[step(100, 0.4, 0.8), node]]),
        ],
        tabs=(1000,),
    )
    push = by_target(targets(data), "worker CPU per push ≤ 0.05 ms")
    assert push.measured.startswith(
        "0.200 ms (Socket.IO (Node) 0.150); of it in the kernel (system calls) 0.050 ms"
    )


def test_closest_tab_count_and_rate_of_a_smaller_preset_are_named() -> None:
    data = results(
        [ladder("sw", 20, http=[[step(250, 0.5, 1.0)]], direct=[[step(250, 0.5, 1.0)]])],
        tabs=(20,),
    )
    data["meta"]["preset_values"].update(http_rates=[250], direct_rates=[250])
    found = targets(data)
    assert "20 tabs, http, 250/s (this preset's closest to 1,000 tabs, 100/s)" in (
        by_target(found, "HTTP claim → push p50").target
    )
    assert "(the largest tab count of this preset, not 10,000)" in (
        by_target(found, "≥ 5,000 pushes/s").target
    )


def test_cpu_per_claim_from_results_written_before_cpu_seconds() -> None:
    old = step(1000, 0.5, 1.0)
    del old["cpu_seconds"]
    old["cores"] = {"server": 0.19}
    assert cpu_ms_per_claim(old) == pytest.approx(0.19)
    assert cpu_ms_per_claim({**old, "ok": 0}) is None


def test_report_renders_the_targets_and_the_cpu_column() -> None:
    text = render(full_run(fast=False))
    assert "### Targets (issues #17 and #28)" in text and "issue #6" not in text
    assert text.count("worker CPU ms/claim") == 2  # the http and direct tables
    assert "| 1,000 | 100 | 100 | 2.40 | 3.40 | 3.40 | 1.500 |" in text


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_charts_command_draws_each_ladder_deterministically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    data = results(
        [
            ladder(
                "sw",
                1000,
                http=[[step(100, 2.4, 3.4)]],
                direct=[[step(100, 0.5, 1.0), step(1000, 0.4, 0.9)]],
            ),
            ladder(
                "sio",
                1000,
                direct=[[step(100, 0.5, 1.1), step(1000, 50, 400, collapsed=True)]],
            ),
        ],
        tabs=(1000,),
    )
    source = write(tmp_path / "bench-full-1.json", data)
    assert main(["charts", str(source), "--out", str(tmp_path / "a")]) == 0
    assert main(["charts", str(source), "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["takeover-1000-direct.svg", "takeover-1000-http.svg"]
    for name in names:
        first = (tmp_path / "a" / name).read_text()
        assert first == (tmp_path / "b" / name).read_text()  # no churn when redrawn
        assert first.lstrip().startswith("<?xml") and "<svg" in first
        assert "<dc:date>" not in first and "sessionwatch p50" in first
    direct = (tmp_path / "a" / "takeover-1000-direct.svg").read_text()
    assert "python-socketio p99" in direct and "collapsed, ladder stopped" in direct
    assert "collapsed" not in (tmp_path / "a" / "takeover-1000-http.svg").read_text()
    # Without --out: next to the JSON, named after it (as `run` writes them).
    assert main(["charts", str(source)]) == 0
    assert (tmp_path / "bench-full-1-takeover-1000-http.svg").is_file()
    assert "chart: " in capsys.readouterr().out


def test_charts_command_fails_without_ladders(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    source = write(tmp_path / "empty.json", results([]))
    assert main(["charts", str(source), "--out", str(tmp_path / "out")]) == 1


def test_run_without_matplotlib_writes_no_charts_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    data = results([ladder("sw", 1000, http=[[step(100, 0.5, 1.0)]])], tabs=(1000,))
    assert write_charts(data, tmp_path, "bench-") == []
    assert "no charts" in capsys.readouterr().err and not list(tmp_path.iterdir())
