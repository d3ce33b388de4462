"""One connected tab's socket, as the hub sees it.

A :class:`Connection` owns a bounded outbound queue, so the hub's fan-out only ever
appends (``push``) and never awaits a socket; a full queue closes the socket (4012)
instead of slowing anyone else down. The frame reader runs in the socket's own task
(:meth:`Connection.serve`), or, on a server that calls back with each frame, in no task
at all (:meth:`Connection.listen`); a writer task exists only while something is queued,
so an idle socket costs no task of its own. A socket closing after what is queued
(:meth:`Connection.finish`) whose peer does not take it within :data:`CLOSE_TIMEOUT` is
aborted: a peer that stops reading never holds a closing socket.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.events import CloseCode, encode, superseded_message
from ..core.exceptions import SessionWatchError

__all__ = ["CLOSE_TIMEOUT", "Connection", "ConnectionState", "TooManySockets"]

logger = logging.getLogger(__name__)

# Seconds a closing socket has to write what is queued, and then the close: beyond, what
# is left is dropped (Connection.finish), and the server cuts the connection off
# (sessionwatch.service.servers).
CLOSE_TIMEOUT = 2.0


def _nothing() -> None:
    return None


def _ignore_delay(seconds: float | None) -> None:
    return None


class _Resumed:
    """Awaitable that finishes a coroutine which already ran up to its first wait
    (``waiting``, the future it yielded): the task awaiting it passes the results on."""

    __slots__ = ("_coroutine", "_waiting")

    def __init__(self, coroutine: Any, waiting: Any) -> None:
        self._coroutine = coroutine
        self._waiting = waiting

    def __await__(self) -> Any:
        coroutine, value = self._coroutine, self._waiting
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancelled (or thrown into) while it waits
                try:
                    value = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


class ConnectionState(enum.Enum):
    """Where a socket is in its life (``Connection.state``), one value instead of
    flags. OPEN -> CLOSING (finish, or the reader ended) -> ABORTED (abort) or GONE (the
    peer left); an abort is never undone by the peer leaving afterwards."""

    OPEN = "open"  # messages are queued and written
    CLOSING = "closing"  # nothing more is queued; what is queued is written, then the close
    ABORTED = "aborted"  # closing now: what is queued is dropped (slow consumer, shut-down)
    GONE = "gone"  # the peer disconnected: nothing more is written, not even a close


class TooManySockets(SessionWatchError):
    """This process already holds the maximum of sockets for the session or user."""

    code = "too_many_sockets"


class Connection:
    """One local socket as the hub sees it: who it belongs to, the tab token it is
    bound to, and its bounded send queue.

    Args:
        session: the session's public id.
        user: the signed-in user, or ``None``.
        send: sends one text frame (the writer task, or at once for a push to an idle
            socket: :meth:`_send_now`).
        queue_size: frames that may wait; one more closes the socket with 4012.
    """

    __slots__ = (
        "_capacity",
        "_interrupted",
        "_pending",
        "_send",
        "_stop",
        "_task",
        "_writer",
        "close_code",
        "event_at",
        "gen",
        "id",
        "on_overflow",
        "on_pushed",
        "reading",
        "session",
        "stalled",
        "state",
        "timer",
        "told_gen",
        "user",
    )

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
        self.gen: int | None = None  # the bound token's generation (None: no hello yet)
        self.told_gen = 0  # highest ``superseded`` generation already queued
        self.close_code: int | None = None
        self.state = ConnectionState.OPEN
        self.reading = False  # the reader is waiting for a frame (see read_timed_out)
        self.stalled = False  # the peer did not take what was sent (see close_wait)
        self.timer: list[Any] | None = None  # the read deadline's entry (see .timers)
        self._send = send
        self._capacity = queue_size
        # The send queue, only while something is queued (an idle socket gets a pong
        # every heartbeat). ``None`` marks the close; a terminal message may exceed capacity.
        self._pending: deque[str | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._task: asyncio.Task[Any] | None = None  # the task in serve(), while it reads
        # How to end the serving (serve()'s task, or listen()'s callback), while it lasts.
        self._stop: Callable[[], None] | None = None
        self._interrupted = False
        self.on_overflow: Callable[[], None] = _nothing  # set by the hub
        # When the oldest event whose frames are queued arrived (loop time; set by the
        # hub), and what hears the delay once they are written (set by the hub).
        self.event_at: float | None = None
        # ``None``: written at once, while the hub was routing the event.
        self.on_pushed: Callable[[float | None], None] = _ignore_delay

    @property
    def closing(self) -> bool:
        """True once no more messages are queued (any state but OPEN)."""
        return self.state is not ConnectionState.OPEN

    @property
    def aborted(self) -> bool:
        """True when what is queued is dropped."""
        return self.state is ConnectionState.ABORTED

    @property
    def has_pending(self) -> bool:
        """True while frames wait to be written (or one is being written)."""
        return bool(self._pending) or self._writer is not None

    @property
    def idle(self) -> bool:
        """True when the socket holds neither a send queue nor a writer task, as it does
        between pushes: most sockets are idle most of the time, and cost no more."""
        return self._pending is None and self._writer is None

    @property
    def close_wait(self) -> float:
        """Seconds to wait for the close to be sent: none when the peer did not take
        what was sent before it (a full queue, a close overdue), as it would not take the
        close either; else :data:`CLOSE_TIMEOUT`."""
        return 0.0 if self.stalled else CLOSE_TIMEOUT

    @property
    def bound(self) -> bool:
        """True once a ``hello`` has bound a genuine token."""
        return self.gen is not None

    def bind(self, gen: int) -> None:
        """Bind the socket to the generation of a genuine tab token (MAC-checked by the
        hello, :func:`~sessionwatch.core.tabs.verify_tab_token`)."""
        self.gen = gen

    def push(self, message: dict[str, Any] | str) -> bool:
        """Queue a message (a dict, or the text of one already encoded: an event going
        to several sockets is encoded once) without waiting; a full queue aborts the
        socket (4012). Returns whether it was queued."""
        if self.closing:
            return False
        if self._pending is not None and len(self._pending) >= self._capacity:
            self.stalled = True
            self.abort(CloseCode.SLOW_CONSUMER)
            self.on_overflow()
            return False
        self._put(message if isinstance(message, str) else encode(message))
        return True

    def _put(self, item: str | None) -> None:
        if (
            item is not None
            and self._writer is None
            and self._stop is not None
            and not self._pending
        ):
            self._send_now(item)
            return
        if self._pending is None:
            self._pending = deque()
        self._pending.append(item)
        if self._writer is None and self._stop is not None:
            self._writer = asyncio.ensure_future(self._write())

    def _send_now(self, text: str) -> None:
        """Write ``text`` in the caller's turn: no writer task, no wait behind the
        loop's other ready work (a push used to wait one turn for its task). uvicorn's
        send completes without suspending; a server whose send must wait (flow control)
        gets the rest of it run by the writer task, before anything queued after."""
        sending = self._send(text)
        try:
            waiting = sending.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            self.on_pushed(None)  # written during the event's routing (if it is one)
            return
        except Exception as exc:  # the peer is gone; the server reports the disconnect
            logger.debug("send failed on socket %s: %r", self.id, exc)
            self._interrupt()
            return
        self._writer = asyncio.ensure_future(self._write(_Resumed(sending, waiting)))

    def supersede(self, gen: int, by: Any, text: str | None = None) -> bool:
        """Tell the tab (once per generation) that a newer claim won; ``text`` is the
        message already encoded, when the caller tells several tabs."""
        if self.gen is None or gen <= self.gen or gen <= self.told_gen:
            return False
        self.told_gen = gen
        return self.push(text if text is not None else superseded_message(gen, by))

    def finish(self, code: int, message: dict[str, Any] | str | None = None) -> None:
        """Send ``message`` (if any) after what is queued, then close with ``code``."""
        if self.closing:
            return
        self.state = ConnectionState.CLOSING
        self.close_code = code
        if message is not None:
            self._put(message if isinstance(message, str) else encode(message))
        self._put(None)
        if self._writer is not None:
            self._close_within(CLOSE_TIMEOUT)

    def _close_within(self, seconds: float) -> None:
        """Abort the socket (its code kept) unless it has ended ``seconds`` from now:
        a peer that does not read keeps the writer waiting for the transport's buffer
        to drain, which it never does."""
        asyncio.get_running_loop().call_later(seconds, self._overdue)

    def _overdue(self) -> None:
        if self.state is ConnectionState.CLOSING and self._stop is not None:
            assert self.close_code is not None  # set by finish
            logger.info("socket %s: closing took over %.1f s, aborted", self.id, CLOSE_TIMEOUT)
            self.stalled = True
            self.abort(self.close_code)

    def abort(self, code: int) -> None:
        """Close now with ``code``, dropping what is queued (slow consumer, shut-down)."""
        self.state = ConnectionState.ABORTED
        if self.close_code is None:
            self.close_code = code
        if self._writer is not None:
            self._writer.cancel()
        self._interrupt()

    def read_timed_out(self) -> None:
        """The read deadline passed (the hub's timers call this): close with 4014 (4009
        before the ``hello``) if the reader is waiting for a frame. A reader busy with
        one re-arms its deadline before it reads again (a passed one fires at once), as
        ``asyncio.timeout`` around each read did."""
        if self.reading:
            self.abort(CloseCode.HEARTBEAT_TIMEOUT if self.bound else CloseCode.HELLO_TIMEOUT)

    def peer_gone(self) -> None:
        """The peer disconnected: stop, and send nothing more (not even a close)."""
        if self.state is not ConnectionState.ABORTED:
            self.state = ConnectionState.GONE
        self.close_code = None

    def _interrupt(self) -> None:
        """End the serving: :meth:`serve`'s task is cancelled (serve() absorbs that one
        cancellation, as ``asyncio.timeout`` does), or :meth:`listen`'s ``stop`` called."""
        stop = self._stop
        if stop is None or self._interrupted:
            return
        self._interrupted = True
        stop()

    def _stop_task(self) -> None:
        task = self._task
        if task is None:
            return
        if task is asyncio.current_task():
            # The reader itself closed the socket; it stops at its next await.
            asyncio.get_running_loop().call_soon(self._cancel_reader)
        else:
            task.cancel()

    def _cancel_reader(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _write(self, first: Awaitable[None] | None = None) -> None:
        """Write what is queued, in order, after ``first`` (a send begun by
        :meth:`_send_now` that had to wait); a ``None`` item ends the socket."""
        try:
            if first is not None:
                try:
                    await first
                except Exception as exc:  # the peer is gone; the server reports it
                    logger.debug("send failed on socket %s: %r", self.id, exc)
                    self._interrupt()
                    return
                if self.event_at is not None and not self._pending:
                    self.on_pushed(asyncio.get_running_loop().time() - self.event_at)
                    self.event_at = None
            pending = self._pending
            while pending:
                text = pending.popleft()
                if text is None:
                    self._interrupt()
                    return
                try:
                    await self._send(text)
                except Exception as exc:  # the peer is gone; the server reports the disconnect
                    logger.debug("send failed on socket %s: %r", self.id, exc)
                    self._interrupt()
                    return
                if self.event_at is not None and (not pending or pending[0] is None):
                    # Everything queued up to the event is written: the push is done.
                    self.on_pushed(asyncio.get_running_loop().time() - self.event_at)
                    self.event_at = None
        finally:
            self._writer = None
            if not self._pending:
                self._pending = None

    async def serve(self, read: Awaitable[None]) -> int | None:
        """Run the frame reader ``read`` in this task, with a writer whenever something
        is queued, until the reader returns, the writer sends the close or the socket is
        aborted.

        Returns the close code to send (``None``: nothing to send, the peer left)."""
        if self.aborted:  # before it started (a full queue, a shut-down)
            if inspect.iscoroutine(read):
                read.close()
            return self.close_code
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._start(self._stop_task)
        failed: BaseException | None = None
        try:
            await read
        except asyncio.CancelledError:
            # Ours (the writer finished or the socket was aborted) unless the task was
            # also cancelled from outside, e.g. the server dropping the connection.
            if not self._interrupted or task.uncancel() > 0:
                raise
        except Exception as exc:
            failed = exc
        finally:
            self._task = None
            await self._stopped()
        return self._ended(failed)

    def listen(self, stop: Callable[[], None]) -> bool:
        """Serve without a task of its own: the reader is called back with each frame
        and ends with :meth:`stopped`; ``stop`` is called (once) when the socket must end
        (the writer sent the close, or the socket was aborted), as :meth:`serve`'s task
        is cancelled then. Returns False when the socket is already aborted."""
        if self.aborted:  # before it started (a full queue, a shut-down)
            return False
        self._start(stop)
        return True

    async def stopped(self, failed: BaseException | None = None) -> int | None:
        """End :meth:`listen`'s serving (the reader ended, or ``stop`` was called;
        ``failed``: the reader raised). Returns the close code to send, as serve()."""
        await self._stopped()
        return self._ended(failed)

    def _start(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self._pending:
            self._writer = asyncio.ensure_future(self._write())
            if self.state is ConnectionState.CLOSING:  # finished before it was served
                self._close_within(CLOSE_TIMEOUT)

    async def _stopped(self) -> None:
        self._stop = None
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSING
        writer = self._writer
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    def _ended(self, failed: BaseException | None) -> int | None:
        if failed is not None:
            logger.error("socket %s reader failed", self.id, exc_info=failed)
            return CloseCode.INTERNAL_ERROR
        return self.close_code
