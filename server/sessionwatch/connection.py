"""One connected tab's socket, as the hub sees it.

A :class:`Connection` owns a bounded outbound queue and the single writer task that
drains it, so the hub's fan-out only ever appends (``push``) and never awaits a socket;
a full queue closes the socket (4012) instead of slowing anyone else down.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .events import CloseCode, encode
from .exceptions import SessionWatchError

__all__ = ["Connection", "TooManySockets"]

logger = logging.getLogger("sessionwatch.hub")


def _nothing() -> None:
    return None


class TooManySockets(SessionWatchError):
    """This process already holds the maximum of sockets for the session or user."""

    code = "too_many_sockets"


class Connection:
    """One local socket as the hub sees it: who it belongs to, the tab token it is
    bound to, and its bounded send queue.

    Args:
        session: the session's public id.
        user: the signed-in user, or ``None``.
        send: sends one text frame (only the writer calls it).
        queue_size: frames that may wait; one more closes the socket with 4012.
    """

    def __init__(
        self,
        session: str,
        user: str | None,
        send: Callable[[str], Awaitable[None]],
        *,
        queue_size: int,
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.session = session
        self.user = user
        self.token: str | None = None
        self.gen: int | None = None  # the bound token's generation (None: no hello yet)
        self.told_gen = 0  # highest ``superseded`` generation already queued
        self.close_code: int | None = None
        self.closing = False  # no more messages are queued
        self.aborted = False  # what is queued is dropped
        self.reading = False  # the reader is waiting for a frame (see read_timed_out)
        self.timer: list[Any] | None = None  # the read deadline's entry (see .timers)
        self._send = send
        self._capacity = queue_size
        # The send queue: a deque and one wake-up future (an asyncio.Queue costs ~3 KiB
        # per socket). ``None`` marks the close; a terminal message may exceed capacity.
        self._pending: deque[str | None] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self.on_overflow: Callable[[], None] = _nothing  # set by the hub

    @property
    def bound(self) -> bool:
        """True once a ``hello`` has bound a genuine token."""
        return self.gen is not None

    def bind(self, token: str, gen: int) -> None:
        """Bind the socket to a genuine tab token (its generation is the MAC-checked one)."""
        self.token = token
        self.gen = gen

    def push(self, message: dict[str, Any]) -> bool:
        """Queue a message without waiting; a full queue aborts the socket (4012).
        Returns whether it was queued."""
        if self.closing:
            return False
        if len(self._pending) >= self._capacity:
            self.abort(CloseCode.SLOW_CONSUMER)
            self.on_overflow()
            return False
        self._put(encode(message))
        return True

    def _put(self, item: str | None) -> None:
        self._pending.append(item)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def supersede(self, gen: int, by: Any) -> bool:
        """Tell the tab (once per generation) that a newer claim won."""
        if self.gen is None or gen <= self.gen or gen <= self.told_gen:
            return False
        self.told_gen = gen
        return self.push({"type": "superseded", "gen": gen, "by": by})

    def finish(self, code: int, message: dict[str, Any] | None = None) -> None:
        """Send ``message`` (if any) after what is queued, then close with ``code``."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        if message is not None:
            self._put(encode(message))
        self._put(None)

    def abort(self, code: int) -> None:
        """Close now with ``code``, dropping what is queued (slow consumer, shut-down)."""
        self.closing = self.aborted = True
        if self.close_code is None:
            self.close_code = code
        if self._writer is not None:
            self._writer.cancel()

    def read_timed_out(self) -> None:
        """The read deadline passed (the hub's timers call this): close with 4014 (4009
        before the ``hello``) if the reader is waiting for a frame. A reader busy with
        one re-arms its deadline before it reads again (a passed one fires at once), as
        ``asyncio.timeout`` around each read did."""
        if self.reading:
            self.abort(CloseCode.HEARTBEAT_TIMEOUT if self.bound else CloseCode.HELLO_TIMEOUT)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup = loop.create_future()
                await self._wakeup
            text = self._pending.popleft()
            if text is None:
                return
            try:
                await self._send(text)
            except Exception as exc:  # the peer is gone; the server reports the disconnect
                logger.debug("send failed on socket %s: %r", self.id, exc)
                return

    async def serve(self, read: Awaitable[None]) -> int | None:
        """Run the frame reader ``read`` and the writer until either ends.

        Returns the close code to send (``None``: nothing to send, the peer left)."""
        if self.aborted:  # before it started (a full queue, a shut-down)
            if inspect.iscoroutine(read):
                read.close()
            return self.close_code
        self._writer = asyncio.create_task(self._write())
        reader = asyncio.ensure_future(read)
        try:
            await asyncio.wait((self._writer, reader), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.closing = True
            for task in (reader, self._writer):
                task.cancel()
            await asyncio.gather(reader, self._writer, return_exceptions=True)
        if not reader.cancelled() and reader.exception() is not None:
            logger.error("socket %s reader failed", self.id, exc_info=reader.exception())
            return CloseCode.INTERNAL_ERROR
        return self.close_code
