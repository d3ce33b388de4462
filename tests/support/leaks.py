"""Processes a test leaves behind (a pytest plugin, registered by tests/conftest.py).

Every process the test run starts inherits :data:`MARKER` in its environment (set in
``os.environ`` before the first test), including grandchildren that outlive their
parent and are adopted by init — the case a parent/child walk misses. A process still
alive with the marker after a test's teardown that was not alive after its setup was
started by the test and not stopped; one alive at the end of the run was left by a
fixture or a test."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["MARKER", "install_marker", "marked_processes"]

# not SESSIONWATCH_*: the service refuses unknown settings of its prefix
MARKER = "TEST_RUN_OF_SESSIONWATCH"


def install_marker() -> None:
    """Give this run a unique marker that every child process inherits."""
    os.environ[MARKER] = uuid.uuid4().hex


def marked_processes() -> dict[int, str]:
    """The live processes (pid -> command line) that carry this run's marker, except
    this process and zombies (their environment is no longer readable)."""
    needle = f"{MARKER}={os.environ[MARKER]}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        text = command.decode(errors="replace")
        if not _MULTIPROCESSING_HELPER.search(text):
            found[int(entry.name)] = text[:200]
    return found


# multiprocessing's helpers of the test process itself (started once by the first test
# that uses a spawn or forkserver context, they live as long as it does: not a leak)
_MULTIPROCESSING_HELPER = re.compile(
    r"from multiprocessing\.(resource_tracker|forkserver) import main"
)


# -- the plugin: a test that leaves a process running fails (its teardown names the
# command lines), and so does the run if a fixture left one.

_alive_after_setup: dict[str, dict[int, str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    install_marker()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    result = yield
    _alive_after_setup[item.nodeid] = marked_processes()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    result = yield
    before = _alive_after_setup.pop(item.nodeid, {})
    left = _still_alive({pid: cmd for pid, cmd in marked_processes().items() if pid not in before})
    if left:
        pytest.fail(f"the test left {len(left)} process(es) running: {left}", pytrace=False)
    return result


def _still_alive(processes: dict[int, str]) -> dict[int, str]:
    """``processes`` that are still running after a grace period (a process that was
    signalled may take a moment to exit): 5 s, or ``LEAK_GRACE_SECONDS``. Polls every 50 ms."""
    deadline = time.monotonic() + float(os.environ.get("LEAK_GRACE_SECONDS", "5"))
    while processes and time.monotonic() < deadline:
        current = marked_processes()
        processes = {pid: cmd for pid, cmd in processes.items() if pid in current}
        if processes:
            time.sleep(0.05)
    return processes


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = _still_alive(marked_processes())
    if left:
        for pid, command in left.items():
            print(f"\nprocess left running by the test run: {pid} {command}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
