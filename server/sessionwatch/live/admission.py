"""Admission of opening sockets: at most ``limit`` at once per process, the rest queue.

A socket is *opening* from its handshake's session check until it is registered with
the hub and its channels are subscribed (or it fails): the server's work of opening it.
Its ``hello`` is not waited for under a turn, so silent clients cannot hold turns; the
state read at ``hello`` follows at the pace turns are given. After a restart every tab
reconnects at once; unbounded, thousands of openings shared the Redis pool and the event
loop, each round trip waited behind all the others, pool waits timed out and tabs were
refused (503/1013) only to come back and redo the work. Queued here instead, a handshake
costs nothing until its turn and the openings in progress stay fast.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["Admission", "Ticket"]

logger = logging.getLogger(__name__)


class Ticket:
    """One admitted opening; :meth:`release` (idempotent) lets the next one in."""

    __slots__ = ("_admission",)

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        admission, self._admission = self._admission, None
        if admission is not None:
            admission.leave()


class Admission:
    """A FIFO gate for opening sockets.

    Args:
        limit: openings in progress at once.
        wait: seconds a handshake may queue before :meth:`enter` raises
            :class:`TimeoutError` (the handshake is then refused 503 ``busy``).
    """

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self._gate = asyncio.Semaphore(limit)
        self.opening = 0  # admitted, not yet released
        self.waiting = 0
        self.refused = 0  # waited ``wait`` seconds in vain

    async def enter(self) -> Ticket:
        """Wait for a turn (FIFO). Raises :class:`TimeoutError` (logged) after ``wait``
        seconds."""
        if not self._gate.locked():
            await self._gate.acquire()  # free: returns at once, no timer needed
        else:
            self.waiting += 1
            try:
                async with asyncio.timeout(self.wait):
                    await self._gate.acquire()
            except TimeoutError:
                self.refused += 1
                logger.warning("websocket refused: %d sockets already opening", self.limit)
                raise
            finally:
                self.waiting -= 1
        self.opening += 1
        return Ticket(self)

    def leave(self) -> None:
        """Give a turn back (through :meth:`Ticket.release`, which does it once)."""
        self.opening -= 1
        self._gate.release()
