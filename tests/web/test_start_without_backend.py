"""An app started while Redis is down serves 503 and recovers by itself (issue 23): its
start never depends on the backend (sessionwatch.backends.connector)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from sessionwatch.backends.connector import BackendConnector
from sessionwatch.backends.memory import MemoryBackend
from sessionwatch.core.exceptions import BackendUnavailable, ConfigurationError
from support.app_factory import make_app
from support.redis_server import RedisServer, required


async def test_an_app_started_while_redis_is_down_answers_503_then_serves(
    key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis = required(RedisServer)  # a port nothing listens on yet
    app = make_app(redis.url, key_prefix=key_prefix)
    watch = app.extensions["sessionwatch"]
    try:
        with caplog.at_level(logging.WARNING, "sessionwatch.backends.connector"):
            async with app.test_app():  # raised BackendUnavailable before the fix
                client = app.test_client()
                refused = await client.post("/_sessionwatch/claim", json={})
                assert refused.status_code == 503
                assert (await refused.get_json())["error"] == "backend_unavailable"
                assert watch.hub.running  # the hub keeps reconnecting on its own
                await asyncio.to_thread(redis.start)
                for _ in range(200):  # bounded: the backend answers at once when up
                    answer = await client.post("/_sessionwatch/claim", json={})
                    if answer.status_code == 200:
                        break
                    assert answer.status_code == 503
                    await asyncio.sleep(0.05)
                assert answer.status_code == 200
                assert "tab" in await answer.get_json()
        assert "serving 503 until it answers" in caplog.text
    finally:
        await asyncio.to_thread(redis.cleanup)


class _FlakyBackend(MemoryBackend):
    """Unreachable for its first ``failures`` connects."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.connected = asyncio.Event()

    async def connect(self) -> None:
        if self.failures:
            self.failures -= 1
            raise BackendUnavailable("down")
        await super().connect()
        self.connected.set()


async def test_the_connector_returns_at_once_and_connects_in_the_background() -> None:
    backend = _FlakyBackend(failures=3)
    connector = BackendConnector(backend, first_wait=0.05)
    await asyncio.wait_for(connector.start(), 1)
    assert not connector.connected
    await asyncio.wait_for(backend.connected.wait(), 5)
    assert connector.connected and connector.failures == 3
    await connector.stop()
    await backend.disconnect()


async def test_the_connector_stops_trying_on_stop() -> None:
    backend = _FlakyBackend(failures=10**9)
    connector = BackendConnector(backend, first_wait=0.01)
    await asyncio.wait_for(connector.start(), 1)
    await asyncio.wait_for(connector.stop(), 1)
    tries = backend.failures
    await asyncio.sleep(0.3)  # longer than its retry delay: no attempt after stop()
    assert backend.failures == tries and not connector.connected


async def test_a_broken_configuration_still_fails_the_start() -> None:
    class _Broken(MemoryBackend):
        async def connect(self) -> None:
            raise ConfigurationError("bad")

    with pytest.raises(ConfigurationError):
        await asyncio.wait_for(BackendConnector(_Broken()).start(), 2)


async def test_a_cancelled_start_leaves_no_attempt_running() -> None:
    cancelled = asyncio.Event()

    class _Hanging(MemoryBackend):
        async def connect(self) -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

    start = asyncio.create_task(BackendConnector(_Hanging(), first_wait=10).start())
    await asyncio.sleep(0.05)  # the attempt is now waiting inside connect()
    start.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(start, 2)
    await asyncio.wait_for(cancelled.wait(), 2)
