"""The service's hypercorn supervisor: a dead worker is started again; one that keeps
dying stops the service with its exit code (not a restart loop, not exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.multiprocess

_RUN = """
import sys
from hypercorn.config import Config
from sessionwatch.service.hypercorn_server import run_hypercorn
config = Config()
config.application_path = "sessionwatch_no_such_module:app"  # every worker dies at start
config.bind = ["127.0.0.1:0"]
config.workers = 1
sys.exit(run_hypercorn(config))
"""


def test_a_worker_dying_again_right_after_its_restart_stops_the_service() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count("starting it again") == 1, output  # restarted once
    assert "died again within 5.5s of its restart" in output, output
