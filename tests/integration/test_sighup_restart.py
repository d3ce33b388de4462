"""``SIGHUP`` replaces the service's workers in place even when a new worker is slow to
start (issue 23, rolling restarts). uvicorn's supervisor starts each replacement, waits
until it is ready, then stops an old worker; it gave up after its default 5 s
(``timeout_worker_healthcheck``: "New child process ... was not ready in time; keeping
worker ... and aborting the restart"), so on a loaded machine a deploy by ``SIGHUP`` kept
the old code running without a word to the operator. The service gives a new worker
``WORKER_START_TIMEOUT`` (30 s). The slow start is made by a ``sitecustomize``
(``tests/support/slowstart/``) that sleeps 8 s in every process started after the test
creates its file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from support.redis_server import RedisServer, required
from support.service_process import ServiceProcess

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

SLOW_START = Path(__file__).resolve().parents[1] / "support" / "slowstart"


def _workers(service: ServiceProcess) -> set[int]:
    assert service.process is not None
    found = set()
    for child in psutil.Process(service.process.pid).children():
        try:
            if not any("resource_tracker" in part for part in child.cmdline()):
                found.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_sighup_replaces_workers_that_are_slow_to_start(tmp_path: Path) -> None:
    redis = required(RedisServer)
    redis.start()
    slow = tmp_path / "slow"
    path = os.environ.get("PYTHONPATH", "")
    env = {
        "SLOW_START_FILE": str(slow),
        "PYTHONPATH": str(SLOW_START) + (os.pathsep + path if path else ""),
    }
    service = ServiceProcess(redis.url, workers=2, env=env)
    try:
        service.start(60)
        deadline = time.monotonic() + 30
        while len(_workers(service)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = _workers(service)
        assert len(before) == 2
        slow.write_text("8")  # every worker started from now on takes 8 s to start
        assert service.process is not None
        service.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = _workers(service)
            if len(current) == 2 and not current & before:
                break
            time.sleep(0.2)
        assert not _workers(service) & before, service.output()
        assert len(_workers(service)) == 2, service.output()
        assert "not ready in time" not in service.output()
    finally:
        service.stop()
        service.log.unlink(missing_ok=True)
        redis.cleanup()
