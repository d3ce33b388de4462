"""Collect events from a backend subscription, with bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sessionwatch.backends.base import Backend, ChannelMessage
from sessionwatch.core.events import Event, parse_event


class EventCollector:
    """Subscribes to channels and queues what arrives (resync markers included)."""

    def __init__(self, backend: Backend) -> None:
        self.subscription = backend.subscription()
        self.queue: asyncio.Queue[ChannelMessage] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        async for message in self.subscription:
            self.queue.put_nowait(message)

    async def __aenter__(self) -> EventCollector:
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.subscription.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def subscribe(self, *channels: str) -> None:
        await asyncio.wait_for(self.subscription.subscribe(*channels), 10)

    async def next_message(self, timeout: float = 5.0) -> ChannelMessage:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def next(self, timeout: float = 5.0) -> tuple[str, Event]:
        """The next event (skipping resync markers) and its channel."""
        while True:
            message = await self.next_message(timeout)
            if not message.resync:
                return message.channel, parse_event(message.payload)

    async def nothing(self, within: float = 0.2) -> None:
        """Assert no event arrives within ``within`` seconds."""
        try:
            message = await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {message}")
