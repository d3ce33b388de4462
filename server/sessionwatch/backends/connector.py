"""A worker's connection to its backend that never makes the worker's start fail.

A worker can be (re)started while Redis is down: its ASGI server restarts it after a
crash, a ``SIGHUP`` or a memory limit. Failing the start then is worse than useless:
uvicorn's supervisor stops the whole service when a worker fails its start, granian
exits after a second failure in a row, and the outage becomes a full stop that lasts
after Redis is back. So :class:`BackendConnector` waits a moment for the backend and
then lets the worker serve anyway, connecting in the background until it succeeds.

Meanwhile every backend call raises :class:`~sessionwatch.BackendUnavailable` (each
door answers 503 ``backend_unavailable``, ``/readyz`` answers 503), and the calls work
as soon as the backend answers again: a backend's ``connect()`` is a warm-up, never a
precondition of its calls (the Redis backend loads its scripts, which the calls resend
on ``NOSCRIPT`` anyway). Refusing to run without the backend is the service's first
start's decision (``sessionwatch serve`` checks once), never a worker's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from ..core.exceptions import BackendUnavailable
from .base import Backend
from .tasks import stop_task

__all__ = ["BackendConnector"]

logger = logging.getLogger(__name__)

FIRST_WAIT: Final = 1.0  # seconds a start waits for the backend before serving without it
_FIRST_RETRY: Final = 0.1
_MAX_RETRY: Final = 2.0


class BackendConnector:
    """Connect ``backend`` when it can be reached, retrying in the background.

    Args:
        backend: the backend to connect.
        first_wait: seconds :meth:`start` waits for the first attempt (a reachable
            backend is connected before the worker serves, as it always was).
    """

    def __init__(self, backend: Backend, *, first_wait: float = FIRST_WAIT) -> None:
        self._backend = backend
        self._first_wait = first_wait
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.failures = 0  # failed attempts since start
        self._started = False

    async def start(self) -> None:
        """Start connecting; return once connected or after ``first_wait``.

        Raises:
            Exception: whatever ``connect()`` raised within ``first_wait`` other than
                :class:`BackendUnavailable` (a broken configuration fails the start).
        """
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._connect(), name="sessionwatch-backend-connect")
        self._task.add_done_callback(self._done)
        try:
            await asyncio.wait({self._task}, timeout=self._first_wait)
        except asyncio.CancelledError:  # the start itself was cancelled: leave nothing
            await self.stop()
            raise
        if self._task.done() and not self._task.cancelled():
            self._task.result()
        self._started = True

    async def stop(self) -> None:
        """Stop trying (cancel and await the attempt in flight)."""
        task, self._task = self._task, None
        if task is None:
            return
        await stop_task(task)  # its failure was reported (_done) or is moot now

    async def _connect(self) -> None:
        delay = _FIRST_RETRY
        while True:
            try:
                await self._backend.connect()
            except BackendUnavailable as exc:
                self.failures += 1
                if self.failures == 1:
                    logger.warning(
                        "backend unavailable (%s): serving 503 until it answers, "
                        "connecting in the background",
                        exc,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)
                continue
            self.connected = True
            if self.failures:
                logger.warning("backend connected after %d failed attempt(s)", self.failures)
            return

    def _done(self, task: asyncio.Task[None]) -> None:
        # A failure after start() returned would otherwise go unobserved.
        if self._started and not task.cancelled() and task.exception() is not None:
            logger.error("backend connect failed", exc_info=task.exception())
