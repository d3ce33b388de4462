"""Presence: which bound sockets are live, as the session listing counts them.

Each bound socket's presence is stored until two heartbeat intervals from now and
refreshed once per interval, a twentieth of the sockets at a time; a socket that leaves
drops its own. With ``presence_events`` on, a socket that arrives or leaves also tells
the user's tabs its session's new count (``presence``, docs/protocol.md §3), coalesced
per session and bounded per process (:class:`PresenceNotices`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..backends.base import Backend, user_channel
from ..core.events import encode, presence_message
from .connection import Connection
from .registry import Registry

__all__ = ["Presence", "PresenceNotices"]

logger = logging.getLogger(__name__)

# A slice of the sockets per tick; bigger pipelines block the loop while redis-py
# parses the replies (256 sockets per pipeline raised push p99 to ~30 ms).
_SLICES: Final = 20
_BATCH: Final = 32
# Presence notices: changes within this many seconds make one notice per session; at
# most _NOTICES sessions are counted and told per round, and at most _PENDING sessions
# wait (beyond, a change is not told: the listing still counts it). A reconnect storm
# of thousands of tabs thus costs a few notices a session, never one per socket.
NOTICE_DELAY: Final = 0.25
_NOTICES: Final = 256
_PENDING: Final = 10_000


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
        notices: PresenceNotices | None = None,
    ) -> None:
        self._backend = backend
        self._interval = heartbeat_interval
        self._now_ms = now_ms
        self._sockets = registry.sockets
        self._notices = notices

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

    async def arrive(self, conn: Connection) -> None:
        """Count a socket that just bound its first token as live, and tell its user's
        tabs (with ``presence_events``)."""
        await self.refresh([conn])
        if self._notices is not None:
            self._notices.changed(conn.session, conn.user)

    async def drop(self, conn: Connection) -> None:
        """Forget a leaving socket's presence (a failure is logged: it lapses anyway),
        and tell its user's tabs (with ``presence_events``)."""
        if not conn.bound:
            return
        try:
            await self._backend.set_presence(
                [(conn.session, conn.id)], until=None, now=self._now_ms()
            )
        except Exception as exc:
            logger.warning("presence of socket %s not dropped: %r", conn.id, exc)
        if self._notices is not None:
            self._notices.changed(conn.session, conn.user)


class PresenceNotices:
    """Publishes ``presence{id, live_tabs, at}`` on a user's channel when the live tab
    count of one of their sessions changed here: the count is read (across every
    process) :data:`NOTICE_DELAY` after the first change, so that a burst of arrivals
    and departures makes one notice per session.

    Args:
        backend: where presence is counted and the notice published.
        now_ms: the clock, in epoch milliseconds (the notice's ``at``).
        spawn: starts a task the hub keeps, cancels and awaits on shut-down.
    """

    def __init__(
        self,
        backend: Backend,
        now_ms: Callable[[], int],
        spawn: Callable[[Awaitable[Any]], asyncio.Future[Any]],
    ) -> None:
        self._backend = backend
        self._now_ms = now_ms
        self._spawn = spawn
        self._pending: dict[str, str] = {}  # session -> its user, in order of change
        self._round: asyncio.Future[Any] | None = None
        self.published = 0
        self.telling = True  # off while the hub stops: every socket is leaving

    def changed(self, session: str, user: str | None) -> None:
        """Note that ``session``'s live tab count changed (anonymous sessions have no
        user's tabs to tell)."""
        if not self.telling or not user:
            return
        if session not in self._pending and len(self._pending) >= _PENDING:
            return
        self._pending[session] = user
        if self._round is None or self._round.done():
            self._round = self._spawn(self._tell())

    async def _tell(self) -> None:
        while self._pending:
            await asyncio.sleep(NOTICE_DELAY)
            due = list(self._pending.items())[:_NOTICES]
            for session, _ in due:
                del self._pending[session]
            try:
                await self._publish(due)
            except Exception as exc:  # the listing still counts them: not retried
                logger.warning("presence of %d session(s) not told: %r", len(due), exc)

    async def _publish(self, due: list[tuple[str, str]]) -> None:
        now = self._now_ms()
        counts = await self._backend.count_presence([session for session, _ in due], now=now)
        prefix = self._backend.key_prefix
        for session, user in due:
            message = presence_message(session, counts.get(session, 0), now)
            await self._backend.publish(user_channel(prefix, user), encode(message))
            self.published += 1
