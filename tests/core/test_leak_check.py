"""The leak check (support/leaks.py) fails a test that leaves a process running,
also one adopted by init after its parent exited, and passes one that stops its own."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

LEAKY = """
import subprocess, sys

def test_leaves_a_grandchild():
    # the child starts a grandchild in its own session and exits: init adopts it
    subprocess.run(
        [sys.executable, "-c",
         "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(60)'], start_new_session=True)"],
        check=True, timeout=30,
    )

def test_stops_its_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.terminate()
    child.wait(timeout=10)
"""


def test_a_process_left_running_fails_the_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tests = str(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("LEAK_GRACE_SECONDS", "0.5")
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "support.leaks", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*the test left 1 process(es) running*time.sleep(60)*"])
    result.stdout.fnmatch_lines(["process left running by the test run: * *time.sleep(60)"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # the plugin reports the sleeper and leaves it be: end it here
    for line in result.stdout.lines:
        if line.startswith("process left running by the test run: "):
            os.kill(int(line.split(": ", 1)[1].split()[0]), signal.SIGKILL)
