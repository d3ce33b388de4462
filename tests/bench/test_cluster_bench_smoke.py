"""The cluster benchmark command keeps working: ``python -m tests.bench.cluster --smoke``
(tiny sizes, one Redis and a 6-node cluster) in the default test run. Speed is not
checked; the spread over the primaries and the absence of errors are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.processes import run_module
from support.redis_cluster import installed
from support.redis_server import required


@pytest.mark.multiprocess
@pytest.mark.timeout(150)
def test_cluster_bench_smoke(tmp_path: Path) -> None:
    required(installed)
    out = tmp_path / "cluster.json"
    process = run_module("tests.bench.cluster", "--smoke", "--json", str(out))
    results = json.loads(out.read_text())
    assert results["errors"] == []
    for topology in ("redis", "cluster"):
        assert results[topology]["throughput"]["claims"] > 0
        assert results[topology]["push"]["samples"] == 50
    nodes = results["spread"]["nodes"]
    assert len(nodes) == 3
    # Per signed-in session: its record and its user's index; per user, the devices and
    # places the trail remembers (new_device/new_place); plus one audit stream shard per
    # slot that got a record (at most one per session here: docs/audit.md).
    assert 3 * 1500 < sum(n["keys"] for n in nodes.values()) <= 4 * 1500
    assert max(n["keys_share"] for n in nodes.values()) <= 0.40
    assert all(results["costs"][k] > 0 for k in ("cpu_us_claim", "bytes_per_session"))
    assert results["cluster_costs"]["cpu_us_presence_per_socket"] > 0
    assert "| topology | claims/s |" in process.stdout
