"""Black-box security tests: real ``sessionwatch serve`` processes on a private Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.redis_server import RedisServer


@pytest.fixture(name="redis_server", scope="module")
def _redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the module's services (each service has its own
    key prefix; nothing is flushed)."""
    with RedisServer() as server:
        yield server
