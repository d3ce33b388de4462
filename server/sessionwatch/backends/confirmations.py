"""Callers waiting for Redis to confirm their subscriptions, by channel.

A subscribe returns only once Redis confirmed it (so a state check made afterwards
cannot miss an event published in between); several callers may wait on one channel.
Shared by the single-node reader (``subscription.py``) and the sharded one
(``cluster_pubsub.py``): each registers its waiters here and confirms what its reader
hears.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

__all__ = ["Confirmations"]


class Confirmations:
    """Futures resolved when a channel's subscription is confirmed."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    def expect(self, channels: Iterable[str]) -> list[asyncio.Future[None]]:
        """One waiter per channel, in the order given."""
        loop = asyncio.get_running_loop()
        waiters = []
        for channel in channels:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(channel, []).append(waiter)
            waiters.append(waiter)
        return waiters

    def confirm(self, channel: str) -> None:
        """Redis confirmed ``channel``: release everyone waiting for it."""
        for waiter in self._waiting.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    def forget(self, channels: Sequence[str], waiters: Sequence[asyncio.Future[None]]) -> None:
        """Drop the waiters :meth:`expect` gave for ``channels`` (confirmed or not)."""
        for channel, waiter in zip(channels, waiters, strict=True):
            pending = self._waiting.get(channel)
            if pending and waiter in pending:
                pending.remove(waiter)
                if not pending:
                    del self._waiting[channel]
