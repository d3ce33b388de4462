"""Run a benchmark command's smoke mode as the tests do (a subprocess from the repo root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["run_bench"]

REPO = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: float = 140) -> subprocess.CompletedProcess[str]:
    """``python -m <args>`` from the repository root; fails the test on a non-zero exit."""
    process = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-4000:]
    return process
