"""The benchmark command keeps working: its smallest mode (a few tabs, one rate, one
run) in the default test run. The benchmarks themselves run only through
``python -m tests.bench run`` (docs/performance.md); nothing here checks speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from support.bench_command import run_bench
from support.redis_server import in_ci


@pytest.mark.multiprocess
@pytest.mark.timeout(150)
def test_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        if in_ci():
            pytest.fail("redis-server is required in CI (tests/run.sh installs it)")
        pytest.skip("redis-server is not installed")
    out = tmp_path / "smoke.json"
    process = run_bench("tests.bench", "run", "--smoke", "--peers", "sio", "--json", str(out))
    results = json.loads(out.read_text())
    assert results["errors"] == []
    assert "| target |" in process.stdout and out.with_suffix(".md").is_file()
    assert "### Targets (issues #17 and #28)" in process.stdout
    assert "sessionwatch p50 and p99 ≤ python-socketio's at every rate" in process.stdout
    assert "worker CPU per HTTP claim" in process.stdout
    for mode in ("http", "direct"):  # the charts, next to the JSON
        chart = tmp_path / f"smoke-takeover-20-{mode}.svg"
        assert f"chart: {chart}" in process.stdout
        assert "python-socketio p99" in chart.read_text()

    assert {entry["kind"] for entry in results["takeover"]} == {"sw", "sio"}
    for entry in results["takeover"]:
        assert set(entry["modes"]) == {"http", "direct"}
        for mode, runs in entry["modes"].items():
            step = runs[0][0]
            assert step["ok"] == step["offered"] > 0, (entry["kind"], mode, step)
            assert step["lost"] == 0, (entry["kind"], mode, step)
            assert step["cpu_seconds"]["server"] >= 0, (entry["kind"], mode, step)
        assert entry["idle_cores"] >= 0
    assert {m["label"] for m in results["memory"]} == {"sw-uvicorn", "sio-uvicorn"}
    assert all(m["connected"] == m["tabs"] for m in results["memory"])
    overhead = results["overhead"]["workers"]["1"]
    assert all(overhead["rps"][route][0] > 0 for route in ("bare", "cookie", "open", "protected"))
    assert overhead["redis"]["protected"]["statuses"] == {"200": 2000}
    fanout = results["fanout"]["runs"][0]
    assert fanout["told"] == fanout["tabs"] and fanout["closes"] == {"close_4003": fanout["tabs"]}
    storm = results["storm"]["runs"][0]
    assert storm["reverified"] == storm["tabs"] and not storm["errors"]


@pytest.mark.multiprocess
@pytest.mark.timeout(200)
def test_peers_smoke(tmp_path: Path) -> None:
    """Each other peer app (Node Socket.IO, Django Channels, the floor) starts, creates
    sessions, holds tabs and delivers every HTTP and direct claim's push; sessionwatch
    itself is left out (scenarios 2-3 only) to keep this short."""
    if shutil.which("redis-server") is None or shutil.which("node") is None:
        if in_ci():
            pytest.fail("redis-server and node are required in CI (tests/run.sh installs them)")
        pytest.skip("redis-server or node is not installed")
    out = tmp_path / "peers.json"
    process = run_bench(
        "tests.bench", "run", "--smoke", "--scenarios", "2,3", "--peers", "node,channels,floor",
        "--memory-configs", "node-cluster,channels-uvicorn,floor-uvicorn", "--json", str(out), timeout=190,
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert results["errors"] == []
    peers = {"node", "channels", "floor"}
    assert {entry["kind"] for entry in results["takeover"]} == peers
    for entry in results["takeover"]:
        assert set(entry["modes"]) == {"http", "direct"}
        for mode, runs in entry["modes"].items():
            step = runs[0][0]
            assert step["ok"] == step["offered"] > 0, (entry["kind"], mode, step)
            assert step["lost"] == 0 and not step["closed_sockets"], (entry["kind"], mode, step)
    assert {m["kind"] for m in results["memory"]} == peers
    assert all(m["connected"] == m["tabs"] for m in results["memory"])
    versions = results["meta"]["versions"]
    assert versions["socket.io"] and versions["channels"] and versions["channels_redis"]
    assert "Every implementation side by side (direct" in process.stdout
    assert "Socket.IO (Node) p50 / p99 ms" in process.stdout
