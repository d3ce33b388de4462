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


GOOD_KEY = "start-failure-secret-0123456789-abcdefgh"


def _serve(
    port: int,
    backend: str,
    timeout: float = 60.0,
    *,
    secret: str | None = GOOD_KEY,
    command: tuple[str, ...] = ("sessionwatch", "serve"),
) -> tuple[int | None, str]:
    """Run the CLI; its exit code (``None``: still running after ``timeout`` and killed)
    and its output."""
    env = {
        **os.environ,
        "PATH": _BIN + ":" + os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("REDIS_URL", "SESSIONWATCH_BACKEND", "WEB_CONCURRENCY", "PORT", "SECRET_KEY"):
        env.pop(key, None)
    if secret is not None:
        env["SECRET_KEY"] = secret
    process = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port), "--backend", backend],
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


@pytest.mark.parametrize(
    ("command", "workers", "hint"),
    [
        (("sessionwatch", "serve"), "1", "--port (or PORT)"),
        (("sessionwatch", "serve"), "2", "--port (or PORT)"),
        (("sessionwatch", "demo"), "1", "--port"),
    ],
)
def test_a_port_in_use_is_one_line_naming_the_port_flag(
    redis_url: str, command: tuple[str, ...], workers: str, hint: str
) -> None:
    """Issue 24: uvicorn's own "[Errno 98] ... address already in use" (exit 3, after the
    workers started) named no way out; the check before any worker names the flag."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = _serve(port, redis_url, command=(*command, "--workers", workers))
    assert code == 2, output
    assert output.strip().splitlines() == [
        f"sessionwatch: configuration error: 127.0.0.1:{port} is already in use by another "
        f"program: choose another port with {hint}"
    ], output


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
            task = asyncio.create_task(backend.epoch())
            await asyncio.sleep(0)  # the call is now waiting inside redis-py
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
    finally:
        await backend.disconnect()


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (None, "SECRET_KEY is not set"),
        ("", "SECRET_KEY is not set"),
        ("a" * 16 + "bcdefghij0", "SECRET_KEY must be at least 32 bytes"),  # 16 passed before
        ("x" * 40, "SECRET_KEY is a placeholder"),
    ],
)
def test_the_service_refuses_a_missing_short_or_placeholder_secret(
    secret: str | None, says: str
) -> None:
    """Issue 21: without ``SECRET_KEY`` the service started with an ephemeral key (and
    took 16 characters). Now: exit 2 and one line naming SECRET_KEY and how to make one."""
    code, output = _serve(free_port(), "memory://", timeout=30, secret=secret)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert says in lines[0] and "secrets.token_urlsafe(32)" in lines[0]


def test_a_bad_policy_variable_is_one_line_naming_it() -> None:
    env_code, output = _serve(
        free_port(),
        "memory://",
        timeout=30,
        command=("env", "SESSIONWATCH_ON_LIMIT=sometimes", "sessionwatch", "serve"),
    )
    assert env_code == 2, output
    assert output.strip().splitlines() == [
        "sessionwatch: configuration error: SESSIONWATCH_ON_LIMIT: must be evict_oldest, deny or ask, "
        "got 'sometimes'"
    ]


def test_the_demo_refuses_a_public_address_unless_told() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "demo", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2, process.stderr
    assert "--i-know-this-is-a-demo" in process.stderr and "Traceback" not in process.stderr


def test_without_the_service_extra_the_command_names_it() -> None:
    """Issue 24: the base install's ``sessionwatch`` died with an ImportError traceback
    (uvicorn). Now one line naming the extra, exit 2."""
    # (hypercorn comes with quart, in the base install)
    extras = ("uvicorn", "prometheus_client", "redis", "hiredis", "granian")
    blocked = (
        f"import sys; sys.modules.update(dict.fromkeys({extras!r})); "
        "from sessionwatch.service.cli import main; sys.exit(main(['serve']))"
    )
    process = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=30
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == [
        "sessionwatch: the command needs the service extra (uvicorn, prometheus_client not "
        "installed): pip install 'sessionwatch[service]'"
    ]
