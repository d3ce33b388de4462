"""The audit-trail benchmark keeps working: ``python -m tests.bench.trail`` with tiny
sizes in the default test run. Speed is not checked."""

from __future__ import annotations

import pytest

from support.processes import run_module


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_trail_bench_smoke() -> None:
    process = run_module(
        "tests.bench.trail", *("--rounds", "1", "--seconds", "0.2", "--claims", "5"), timeout=100
    )
    rows = [line for line in process.stdout.splitlines() if line.startswith(("| on", "| off"))]
    assert len(rows) == 2, process.stdout
