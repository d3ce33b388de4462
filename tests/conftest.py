"""Fixtures shared by every suite.

Redis: ``REDIS_URL`` when set (keys get a unique prefix per test; nothing is ever
flushed), else a private ``redis-server`` on a free port for the whole run. In CI a
missing Redis is a failure, not a skip. Redis Cluster: a private 6-node cluster
(``support.redis_cluster``), started once per run by the first test that asks for it;
suites opt in by parametrizing ``backend_kind`` with ``"cluster"``. Sentinel: a real
Sentinel monitoring a private Redis (``support.redis_sentinel``), likewise once per run
(``"sentinel"``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from sessionwatch.backends.base import Backend, Timeouts
from sessionwatch.backends.memory import MemoryBackend
from support.clock import FakeClock
from support.redis_cluster import RedisCluster
from support.redis_sentinel import sentinel_url
from support.redis_server import RedisServer, required

# Fails a test (and the run) that leaves a process running: support/leaks.py.
pytest_plugins = ["support.leaks"]


@pytest.fixture(scope="session", name="redis_url")
def _redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with required(RedisServer) as server:
        yield server.url


@pytest.fixture(scope="session", name="redis_cluster")
def _redis_cluster() -> Iterator[RedisCluster]:
    """A private 3-primary, 3-replica cluster for the run (tests must not break it;
    the failover tests start their own)."""
    with required(RedisCluster) as cluster:
        yield cluster


@pytest.fixture(scope="session", name="sentinel_url")
def _sentinel_url() -> Iterator[str]:
    """``redis+sentinel://…/primary`` of a Sentinel and its own private master."""
    with sentinel_url() as url:
        yield url


@pytest.fixture(name="key_prefix")
def _key_prefix() -> str:
    return f"swtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture(name="timeouts")
def _timeouts() -> Timeouts:
    return Timeouts(idle=30 * 60_000, absolute=12 * 3_600_000, refresh=60_000, tombstone=3_600_000)


@pytest.fixture(params=["memory", "redis"], name="backend_kind")
def _backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(name="backend_url")
def _backend_url(backend_kind: str, request: pytest.FixtureRequest) -> str:
    if backend_kind == "memory":
        return "memory://"
    if backend_kind == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    if backend_kind == "sentinel":
        return str(request.getfixturevalue("sentinel_url"))
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(name="backend")
async def _backend(
    backend_kind: str, key_prefix: str, request: pytest.FixtureRequest
) -> AsyncIterator[Backend]:
    backend: Backend
    if backend_kind == "memory":
        backend = MemoryBackend(key_prefix=key_prefix)
    elif backend_kind == "cluster":
        from sessionwatch.backends.redis_cluster import RedisClusterBackend

        backend = RedisClusterBackend(
            request.getfixturevalue("redis_cluster").url, key_prefix=key_prefix
        )
    else:  # one Redis, or the master a Sentinel names
        from sessionwatch.backends.redis import RedisBackend

        backend = RedisBackend(request.getfixturevalue("backend_url"), key_prefix=key_prefix)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()
