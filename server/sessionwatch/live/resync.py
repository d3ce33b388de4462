"""Resync: every local session re-checked when messages may have been lost.

Two things say so: the pub/sub connection was re-established (or its reader restarted),
and the backend's epoch changed, which means the stored state was lost (``FLUSHALL``, a
restart without persistence) with no lost connection to tell. Either way each local
session is re-read and its sockets corrected (``superseded``, or a terminal close: 4013
for a session that is gone), retrying with backoff the ones the backend cannot answer
for yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from ..backends.base import Backend
from ..core.exceptions import BackendUnavailable
from .registry import Registry, SessionGroup

__all__ = ["STATE_CHECK_EVERY", "Resync"]

logger = logging.getLogger(__name__)

_CHECK_CONCURRENCY: Final = 32  # backend reads in flight during a resync
_MAX_BACKOFF: Final = 5.0
# Seconds between epoch reads: how soon tabs learn that stored state was lost.
STATE_CHECK_EVERY: Final = 1.0


class Resync:
    """Re-checks every local session on request and when the stored state was lost.

    Args:
        backend: its epoch is watched.
        registry: the local sessions.
        check: re-reads a session and corrects its sockets (catch-up); may raise.
        spawn: runs a background task (kept and awaited by the hub).
        running: whether the hub still runs (a stopping hub retries nothing).
    """

    def __init__(
        self,
        backend: Backend,
        registry: Registry,
        check: Callable[[SessionGroup], Awaitable[None]],
        spawn: Callable[[Awaitable[Any]], object],
        running: Callable[[], bool],
    ) -> None:
        self._backend = backend
        self._registry = registry
        self._check = check
        self._spawn = spawn
        self._running = running
        self.resyncs = 0
        self.state_lost = 0

    def request(self) -> None:
        """Start a resync in the background."""
        self._spawn(self.run())

    async def run(self) -> None:
        """Re-check every local session against stored state, retrying with backoff
        the ones the backend could not answer for yet."""
        self.resyncs += 1
        groups = list(self._registry.sessions.values())
        delay = 0.1
        while groups:
            results = await _gather_limited(self._check, groups)
            failed = [
                group
                for group, result in zip(groups, results, strict=True)
                if isinstance(result, Exception) and self._registry.current(group)
            ]
            for group, result in zip(groups, results, strict=True):
                if isinstance(result, Exception) and not isinstance(result, BackendUnavailable):
                    logger.error("session %s not re-checked", group.id, exc_info=result)
            if not failed or not self._running():
                return
            logger.warning(
                "resync: %d session(s) not re-checked yet; retrying in %.1fs", len(failed), delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_BACKOFF)
            groups = failed

    async def watch_epoch_forever(self) -> None:
        """Read the backend's epoch every ``STATE_CHECK_EVERY`` seconds; when it changed,
        the stored state was lost, so every local session is re-checked. Unreachable
        backend: the reader's reconnect resyncs."""
        known: str | None = None
        first = True
        while True:
            if not first:
                await asyncio.sleep(STATE_CHECK_EVERY)
            first = False
            try:
                epoch = await self._backend.epoch()
            except BackendUnavailable:
                continue
            except Exception:
                logger.exception("epoch check failed")
                continue
            if known is not None and epoch != known:
                self.state_lost += 1
                logger.warning("stored state was lost (new epoch); re-checking every session")
                self.request()
            known = epoch


_Item = TypeVar("_Item")


async def _gather_limited(
    action: Callable[[_Item], Awaitable[None]], items: list[_Item]
) -> list[Exception | None]:
    """Run ``action`` on every item, at most ``_CHECK_CONCURRENCY`` at a time; returns
    each one's exception or ``None``."""
    limit = asyncio.Semaphore(_CHECK_CONCURRENCY)

    async def one(item: _Item) -> Exception | None:
        async with limit:
            try:
                await action(item)
            except Exception as exc:
                return exc
            return None

    return list(await asyncio.gather(*(one(item) for item in items)))
