"""Wrong Redis credentials are named as such, not as "Redis unreachable" (issue 24,
item 6), and the message never shows the password."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from sessionwatch.backends import backend_from_url
from sessionwatch.core.exceptions import BackendUnavailable
from support.redis_server import RedisServer, required


@pytest.fixture(name="guarded_redis", scope="module")
def _guarded_redis() -> Iterator[RedisServer]:
    with required(RedisServer) as server:
        redis.Redis(port=server.port).config_set("requirepass", "right-secret-pw")
        yield server


@pytest.mark.parametrize("userinfo", [":wrong-secret-pw", "nobody:wrong-secret-pw", ""])
async def test_refused_credentials_are_named(guarded_redis: RedisServer, userinfo: str) -> None:
    at = "@" if userinfo else ""
    backend = backend_from_url(f"redis://{userinfo}{at}127.0.0.1:{guarded_redis.port}/0")
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await asyncio.wait_for(backend.connect(), 10)
    finally:
        await asyncio.wait_for(backend.disconnect(), 10)
    message = str(caught.value)
    assert "refused the credentials" in message, message
    assert "unreachable" not in message
    assert "wrong-secret" not in message
