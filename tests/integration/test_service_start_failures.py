"""``sessionwatch serve`` when it cannot start: it says why in a line and exits, with
the Redis backend as with the memory one."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sessionwatch.backends.redis import RedisBackend
from support.redis_server import free_port

pytestmark = pytest.mark.multiprocess

_BIN = str(Path(sys.executable).parent)


def _serve(port: int, backend: str, timeout: float = 60.0) -> tuple[int | None, str]:
    """Run the CLI; its exit code (``None``: still running after ``timeout`` and killed)
    and its output."""
    env = {
        **os.environ,
        "SECRET_KEY": "start-failure-secret-0123456789",
        "PATH": _BIN + ":" + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("REDIS_URL", "SESSIONWATCH_BACKEND", "WEB_CONCURRENCY", "PORT"):
        env.pop(key, None)
    process = subprocess.Popen(
        ["sessionwatch", "serve", "--host", "127.0.0.1", "--port", str(port), "--backend", backend],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return None, output


def test_a_port_in_use_with_the_redis_backend_exits_with_the_reason(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, output = _serve(taken.getsockname()[1], redis_url)
    assert code == 3, output  # hung in the shutdown before (and ignored SIGTERM)
    assert "address already in use" in output


def test_a_closed_redis_port_is_one_line_not_a_traceback() -> None:
    """The first start checks Redis once, before any worker (which never refuses)."""
    redis_port = free_port()
    code, output = _serve(free_port(), f"redis://127.0.0.1:{redis_port}/0")
    assert code == 3, output
    assert "Traceback" not in output, output
    (reason,) = [line for line in output.splitlines() if "Redis unreachable" in line]
    assert reason.startswith("sessionwatch: cannot start: Redis unreachable"), output
    assert f"127.0.0.1:{redis_port}" in reason
    assert "startup" not in output.lower(), output  # no worker was started


async def test_a_cancelled_redis_call_does_not_return_normally(redis_url: str) -> None:
    """The cause of the hang: redis-py swallowed a cancellation that arrived while it
    took a pooled connection, so the demo's policy loop ran on and shutdown awaited it."""
    backend = RedisBackend(redis_url, key_prefix="cancel-test:")
    await backend.connect()
    try:
        for _ in range(5):
            task = asyncio.create_task(backend.get_value("x"))
            await asyncio.sleep(0)  # the call is now waiting inside redis-py
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
    finally:
        await backend.disconnect()
