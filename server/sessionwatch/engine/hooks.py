"""Event hooks: the host app's functions called once per audit record, deployment-wide.

Every worker runs one :class:`Hooks` reader in the consumer group ``hooks`` of the
trail (docs/audit.md): the backend gives each record to one consumer of the group, the
hook is called and the record acknowledged after it returns. A worker that dies between
delivery and acknowledgement leaves its records pending; after ``reclaim_after`` another
worker's reader claims and delivers them again, so delivery is at least once and
``record.id`` is the key to de-duplicate. The reader is its own task: a hook that raises
is counted and logged, never retried (its record is acknowledged); a plain function runs
in a thread and an ``async`` one in the reader's task, so a slow hook never delays a
push or a request (it delays only the hooks after it).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from ..backends.base import Backend
from ..core.exceptions import BackendUnavailable, ConfigurationError
from ..core.trail import AUDIT_EVENTS, AuditRecord

__all__ = ["Hook", "Hooks"]

logger = logging.getLogger(__name__)

Hook: TypeAlias = Callable[[AuditRecord], Awaitable[None] | None]


class Hooks:
    """The registered hooks of one app and the reader that feeds them.

    Args:
        backend: the trail's backend (may be set later, before :meth:`start`).
        group: the consumer group (one per deployment and purpose).
        poll: seconds between reads when the last one found nothing (``None``: the
            backend's ``audit_poll``, 1 s on a Cluster whose sweep reads 16384
            shards, else 0.2 s).
        reclaim_after: seconds a record may stay unacknowledged before another reader
            delivers it again (longer than your slowest hook).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        group: str = "hooks",
        poll: float | None = None,
        reclaim_after: float = 30.0,
    ) -> None:
        self.backend = backend
        self.group = group
        self.poll = poll
        self.reclaim_after = reclaim_after
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._handlers: dict[str, list[Hook]] = {}
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # hook calls that returned
        self.failed = 0  # hook calls that raised
        self.redelivered = 0  # records claimed from a consumer that did not acknowledge
        self.lag = 0.0  # seconds from the last record's change to its hook call

    def on(self, event: str) -> Callable[[Hook], Hook]:
        """Decorator: call the function with each record of ``event`` (one of
        :data:`~sessionwatch.core.trail.AUDIT_EVENTS`)."""
        if event not in AUDIT_EVENTS:
            raise ConfigurationError(
                f"unknown hook event {event!r}; one of {', '.join(sorted(AUDIT_EVENTS))}"
            )

        def register(function: Hook) -> Hook:
            self._handlers.setdefault(event, []).append(function)
            return function

        return register

    @property
    def wanted(self) -> bool:
        return bool(self._handlers)

    def stats(self) -> dict[str, float]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "redelivered": self.redelivered,
            "lag": self.lag,
        }

    async def start(self) -> None:
        """Start reading (only when a hook is registered)."""
        if self.wanted and self._task is None:
            if self.backend is None:
                raise ConfigurationError("hooks need a backend")
            self._task = asyncio.create_task(self._run(), name="sessionwatch-hooks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backend = self.backend
        assert backend is not None  # start() checked
        reclaimed_at = 0.0
        while True:
            try:
                records = await backend.audit_read(self.group, self.consumer)
                if time.monotonic() - reclaimed_at >= self.reclaim_after / 2:
                    reclaimed_at = time.monotonic()
                    again = await backend.audit_reclaim(
                        self.group, self.consumer, idle_ms=int(self.reclaim_after * 1000)
                    )
                    self.redelivered += len(again)
                    records += again
                for record in records:
                    await self.deliver(record)
                    await backend.audit_ack(self.group, [record.id])
            except BackendUnavailable as exc:  # retried at the next poll
                logger.warning("hooks: the trail cannot be read (%s)", exc)
                records = []
            if not records:
                await asyncio.sleep(self.poll or float(getattr(backend, "audit_poll", 0.2)))

    async def deliver(self, record: AuditRecord) -> None:
        """Call every hook of ``record.event`` (failures counted and logged)."""
        for hook in self._handlers.get(record.event, ()):
            self.lag = max(0.0, time.time() - record.at / 1000)
            try:
                if inspect.iscoroutinefunction(hook):
                    await hook(record)
                else:
                    result: Any = await asyncio.to_thread(hook, record)
                    if inspect.isawaitable(result):
                        await result
                self.delivered += 1
            except Exception:
                self.failed += 1
                logger.exception("hook %r failed on record %s", hook, record.id)
