"""Presence: which bound sockets are live, as the session listing counts them.

Each bound socket's presence is stored until two heartbeat intervals from now and
refreshed once per interval, a twentieth of the sockets at a time; a socket that leaves
drops its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from ..backends.base import Backend
from .connection import Connection
from .registry import Registry

__all__ = ["Presence"]

logger = logging.getLogger(__name__)

# A slice of the sockets per tick; bigger pipelines block the loop while redis-py
# parses the replies (256 sockets per pipeline raised push p99 to ~30 ms).
_SLICES: Final = 20
_BATCH: Final = 32


class Presence:
    """Keeps the local sockets' presence in the backend.

    Args:
        backend: where presence is stored.
        heartbeat_interval: seconds between a client's pings.
        now_ms: the clock, in epoch milliseconds.
        registry: the local sockets.
    """

    def __init__(
        self,
        backend: Backend,
        heartbeat_interval: float,
        now_ms: Callable[[], int],
        registry: Registry,
    ) -> None:
        self._backend = backend
        self._interval = heartbeat_interval
        self._now_ms = now_ms
        self._sockets = registry.sockets

    async def tick_forever(self) -> None:
        """Refresh a slice of the sockets every ``1/_SLICES`` of the heartbeat interval,
        so each socket is refreshed once per interval without a burst: with thousands of
        sockets, refreshing all at once kept a worker busy for seconds and delayed every
        push meanwhile (docs/performance.md, finding 2)."""
        interval = self._interval / _SLICES
        tick = 0
        while True:
            await asyncio.sleep(interval)
            tick = (tick + 1) % _SLICES
            due = [conn for conn in self._sockets if hash(conn.id) % _SLICES == tick]
            try:
                await self.refresh(due)
            except Exception:
                logger.exception("presence refresh failed")

    async def refresh(self, conns: list[Connection]) -> None:
        """Mark bound sockets as live for two heartbeat intervals, in sequential batches
        of ``_BATCH`` (one backend round trip each); failures are logged."""
        now = self._now_ms()
        until = now + int(2 * self._interval * 1000)
        live = [(conn.session, conn.id) for conn in conns if conn.bound and not conn.closing]
        failed = 0
        error: Exception | None = None
        for start in range(0, len(live), _BATCH):
            batch = live[start : start + _BATCH]
            try:
                await self._backend.set_presence(batch, until=until, now=now)
            except Exception as exc:
                failed += len(batch)
                error = exc
        if error is not None:
            logger.warning("presence of %d socket(s) not refreshed: %r", failed, error)

    async def drop(self, conn: Connection) -> None:
        """Forget a leaving socket's presence (a failure is logged: it lapses anyway)."""
        if not conn.bound:
            return
        try:
            await self._backend.set_presence(
                [(conn.session, conn.id)], until=None, now=self._now_ms()
            )
        except Exception as exc:
            logger.warning("presence of socket %s not dropped: %r", conn.id, exc)
