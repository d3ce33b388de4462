"""Expiry: ``expiring`` before a session's idle deadline, and a check at the deadline.

Each session with local sockets has one deadline on a shared :class:`~.timers.Timers`.
``expiring_lead`` seconds before it the session's bound sockets are warned (once per
deadline); at the deadline the session is re-read: the backend ends a due session and
publishes ``expired`` to every process, and a session extended elsewhere is rescheduled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..core.events import encode, expiring_message
from .registry import Registry, SessionGroup
from .routing import Deliveries
from .timers import Timers

__all__ = ["Expiry"]

logger = logging.getLogger(__name__)

_RETRY_CHECK_AFTER: Final = 2.0  # seconds, when an expiry check found the backend down


class Expiry:
    """The sessions' expiry deadlines and warnings.

    Args:
        lead: seconds before the deadline that ``expiring`` is sent.
        now_ms: the clock, in epoch milliseconds.
        registry: the local sockets (a forgotten session's deadline is dropped).
        deliveries: where the warnings sent are counted.
        check: re-reads a session and corrects its sockets (catch-up); may raise.
        spawn: runs a background task (kept and awaited by the hub).
    """

    def __init__(
        self,
        lead: float,
        now_ms: Callable[[], int],
        registry: Registry,
        deliveries: Deliveries,
        check: Callable[[SessionGroup], Awaitable[None]],
        spawn: Callable[[Awaitable[Any]], object],
    ) -> None:
        self._lead_ms = int(lead * 1000)
        self._now_ms = now_ms
        self._registry = registry
        self._deliveries = deliveries
        self._check = check
        self._spawn = spawn
        self._timers: Timers[SessionGroup] = Timers(self._on_timer)

    def set_deadline(self, group: SessionGroup, expires_at: int) -> None:
        """Move the session's deadline to ``expires_at`` (epoch ms) if that is later."""
        # Deadlines only move forward (``seen`` only grows); a late, older ``extended``
        # changes nothing.
        if group.expires_at is None or expires_at > group.expires_at:
            group.expires_at = expires_at
        elif group.timer is not None:
            return
        if not group.checking:  # the running check reschedules when it is done
            self._schedule(group)

    def cancel(self, group: SessionGroup) -> None:
        """Forget the deadline of a session that has no local socket any more."""
        self._timers.cancel(group)

    def clear(self) -> None:
        """Forget every deadline (shut-down)."""
        self._timers.clear()

    def check_all(self) -> None:
        """Re-evaluate every deadline against the clock now (after the clock jumped,
        e.g. a resumed VM; tests with a fake clock)."""
        for group in list(self._registry.sessions.values()):
            self._on_timer(group)

    def _schedule(self, group: SessionGroup, delay: float | None = None) -> None:
        if group.expires_at is None or not self._registry.current(group):
            self._timers.cancel(group)
            return
        if delay is None:
            now = self._now_ms()
            due = group.expires_at
            if group.warned != group.expires_at and now < group.expires_at - self._lead_ms:
                due -= self._lead_ms
            delay = max(0.0, (due - now) / 1000)
        self._timers.at(group, asyncio.get_running_loop().time() + delay)

    def _on_timer(self, group: SessionGroup) -> None:
        self._timers.cancel(group)  # when called directly (check_all)
        if group.expires_at is None or not self._registry.current(group):
            return
        now = self._now_ms()
        if now >= group.expires_at:
            if not group.checking:
                group.checking = True
                self._spawn(self._expire(group))
            return
        if now >= group.expires_at - self._lead_ms and group.warned != group.expires_at:
            group.warned = group.expires_at
            message = encode(expiring_message(group.expires_at, now))
            sent = sum(conn.push(message) for conn in list(group.conns) if conn.bound)
            self._deliveries.count("expiring", sent)
        self._schedule(group)

    async def _expire(self, group: SessionGroup) -> None:
        """At the deadline, ask the backend: it ends a due session and publishes
        ``expired`` to every process; a session extended elsewhere is rescheduled."""
        delay = None
        try:
            await self._check(group)
        except Exception as exc:
            logger.warning("expiry check of session %s failed: %r", group.id, exc)
            delay = _RETRY_CHECK_AFTER
        finally:
            group.checking = False
        self._schedule(group, delay)
