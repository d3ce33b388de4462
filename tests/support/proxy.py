"""What the proxy demo's tests need installed: nginx and Caddy (Debian) and the Express
example."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sessionwatch.demo.proxy.caddy import find_caddy
from sessionwatch.demo.proxy.runner import DemoError, express_ready, find_nginx

from .redis_server import in_ci

__all__ = ["demo_command", "require_caddy", "require_express", "require_nginx"]


def require_nginx() -> None:
    """Skip without nginx; in CI, fail (tests/run.sh installs nginx-light)."""
    try:
        find_nginx()
    except DemoError:
        if in_ci():
            pytest.fail("nginx is required in CI (tests/run.sh installs nginx-light)")
        pytest.skip("nginx is not installed")


def require_express() -> None:
    """Skip without the Express example's packages; in CI, fail (tests/run.sh: npm ci)."""
    if not express_ready():
        if in_ci():
            pytest.fail("the Express example is required in CI (tests/run.sh runs npm ci)")
        pytest.skip("the Express example is not installed (npm ci)")


def require_caddy() -> None:
    """Skip without Caddy; in CI, fail (tests/run.sh installs caddy)."""
    if find_caddy() is None:
        if in_ci():
            pytest.fail("caddy is required in CI (tests/run.sh installs it)")
        pytest.skip("caddy is not installed")


@contextlib.contextmanager
def demo_command(*args: str) -> Iterator[list[str]]:
    """``python -m sessionwatch.demo.proxy ARGS`` until it says it is up; yields the lines
    it printed, then stops it with SIGTERM and checks that it exits 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "sessionwatch.demo.proxy", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:  # bounded: the demo prints these within its start-up
            lines.append(line.decode())
            if "Ctrl-C" in lines[-1] or process.poll() is not None:
                break
        yield lines
    finally:
        # SIGTERM, not SIGINT: a run started in the background ignores SIGINT (issue 24)
        os.killpg(process.pid, signal.SIGTERM)
        try:
            assert process.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
