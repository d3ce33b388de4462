"""The durable-ends benchmark keeps working: ``python -m tests.bench.durable_ends`` with
tiny sizes (a primary and a replica) in the default test run. Speed is not checked."""

from __future__ import annotations

import pytest

from support.processes import run_module


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_durable_ends_bench_smoke() -> None:
    process = run_module(
        "tests.bench.durable_ends",
        *("--rounds", "1", "--sequential", "20", "--concurrent", "40", "--seconds", "0.2"),
        timeout=100,
    )
    rows = [
        line
        for line in process.stdout.splitlines()
        if line.startswith("| off") or line.startswith("| auto")
    ]
    assert len(rows) == 2, process.stdout
