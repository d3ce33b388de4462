"""Serving an accepted live-push socket (docs/protocol.md §3).

An accepted socket is registered with the hub (which subscribes its channels) *before*
the ``hello`` is checked against freshly loaded state, so an event published in
between cannot be missed. Afterwards the reader enforces the frame size, the message
rate and the heartbeat; the connection's writer sends everything else.

The handshake before it is decided by :func:`sessionwatch.live.handshake.open_handshake`;
both doors (the raw ASGI route, :mod:`sessionwatch.web.rawwebsocket`, and the Quart view,
:mod:`sessionwatch.web.websocket`) then call :func:`serve_socket`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from ..core.audit import security_event
from ..core.events import CloseCode, parse_client_message, pong_message
from ..core.exceptions import BackendUnavailable, ProtocolError
from ..core.tabs import verify_tab_token
from .admission import Ticket
from .connection import CLOSE_TIMEOUT, Connection, TooManySockets
from .gates import SocketGates
from .hub import Hub

__all__ = [
    "CLOSE_TIMEOUT",
    "DETACHED",
    "LISTEN_EXTENSION",
    "Listen",
    "PeerGone",
    "Receive",
    "SocketReader",
    "frame_of",
    "serve_socket",
]

# Reads the next frame: text, bytes, ``None`` for an empty binary frame; raises
# :class:`PeerGone` when the peer has disconnected.
Receive = Callable[[], Awaitable[str | bytes | None]]

# ``listen(heard)``, offered by a server that can call back with each event it
# receives (the service's uvicorn protocol, LeanWebSocketProtocol): from then on it calls
# ``heard(event)`` with every ASGI ``receive`` event instead of queueing it for
# ``receive()``, the ones already queued first. It returns ``hold``, with the events held
# back: ``hold(False)`` hears them (those waiting first), ``hold(True)`` holds them back
# again (they wait, and reading pauses, as for an app that does not read).
Listen = Callable[[Callable[[Mapping[str, Any]], None]], Callable[[bool], None]]

# The scope extension of a server offering ``listen``: ``{"listen": listen, "receive":
# receive}``, the ``receive`` it passed the app (events reach the app's ``receive``
# unchanged only when no middleware wrapped it: only then may the app listen).
LISTEN_EXTENSION = "sessionwatch.listen"

logger = logging.getLogger(__name__)

DETACHED = -1  # serve_socket's answer when the socket is served by callbacks


class PeerGone(Exception):
    """Raised by a :data:`Receive` once the peer has disconnected."""


class _TokenBucket:
    """``rate`` messages a second on average, bursts of up to ``rate`` (at least 1)."""

    __slots__ = ("_last", "_rate", "_tokens")

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = max(rate, 1.0)
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(max(self._rate, 1.0), self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


async def serve_socket(
    hub: Hub,
    gates: SocketGates,
    conn: Connection,
    tab_key: str,
    receive: Receive,
    opening: Ticket,
    address: str | None = None,
    *,
    listen: Listen | None = None,
    ended: Callable[[int | None], Awaitable[None]] | None = None,
) -> int | None:
    """Serve an accepted socket: register it with the hub, read its frames, forget it.
    ``opening`` (its admission) is released once it is registered: the wait for its
    ``hello`` holds no turn (a silent client must not block others), and hellos come
    no faster than turns are given. ``address`` (the client's) is counted against
    ``max_sockets_per_address`` (4011 beyond) and ``max_hellos_per_second`` (4010).
    Returns the close code to send (``None``: nothing to send).

    With ``listen`` (a server that calls back with each received event, see
    :data:`Listen`) and ``ended``, the registered socket is served by those callbacks,
    in no task: this returns :data:`DETACHED` at once, and ``ended(code)`` is awaited
    when the socket has ended, unless the peer left (``code`` as returned otherwise)."""
    limits = gates.address_limits
    if not limits.open_socket(address):
        opening.release()
        security_event("rate_limited", logging.WARNING, limit="sockets", address=address)
        return CloseCode.TOO_MANY_SOCKETS
    detached = False
    try:
        try:
            await hub.attach(conn)
        except TooManySockets:
            return CloseCode.TOO_MANY_SOCKETS
        except BackendUnavailable:
            return CloseCode.TRY_AGAIN_LATER
        finally:
            opening.release()
        reader = SocketReader(hub, gates, conn, tab_key, address)
        if listen is not None and ended is not None:
            detached = reader.listen(listen, ended)
            if detached:
                return DETACHED
        return await conn.serve(reader.read(receive))
    finally:  # also when cancelled while attaching (the peer left during the subscribe)
        if not detached:
            await _forget(hub, gates, conn, address)


async def _forget(hub: Hub, gates: SocketGates, conn: Connection, address: str | None) -> None:
    gates.address_limits.close_socket(address)
    gates.read_deadlines.cancel(conn)
    await hub.detach(conn)


def frame_of(event: Mapping[str, Any]) -> str | bytes | bool | None:
    """What an ASGI ``receive`` event is to the reader: a frame's text or bytes (``None``
    for an empty binary frame, as Quart reads it), ``False`` for the disconnect, ``True``
    for anything else (``websocket.connect``, unknown types: ignored, as Quart does)."""
    kind = event["type"]
    if kind == "websocket.receive":
        data: str | bytes | None = event.get("bytes") or event.get("text")
        return data
    if kind == "websocket.disconnect":
        return False
    return True


_ENDING: set[asyncio.Task[None]] = set()  # listening sockets being forgotten


class SocketReader:
    """Reads one socket's frames until it must close: the frame size, the message rate,
    the heartbeat, the hellos. :meth:`read` reads them in the socket's task (from a
    :data:`Receive`); :meth:`listen` has them called back by the server instead, so an
    idle socket waits in no coroutine: the socket's bytes and objects are this reader,
    its connection and the server's protocol (docs/performance.md, finding 4)."""

    __slots__ = (
        "_address",
        "_bucket",
        "_busy",
        "_conn",
        "_deadline",
        "_ended",
        "_failed",
        "_gates",
        "_gone",
        "_hold",
        "_hub",
        "_tab_key",
    )

    def __init__(
        self, hub: Hub, gates: SocketGates, conn: Connection, tab_key: str, address: str | None
    ) -> None:
        self._hub = hub
        self._gates = gates
        self._conn = conn
        self._tab_key = tab_key
        self._address = address
        self._bucket = _TokenBucket(hub.settings.max_messages_per_second)
        self._deadline = asyncio.get_running_loop().time() + hub.settings.hello_timeout
        self._busy: asyncio.Future[bool] | None = None  # a hello being answered (listen)
        self._hold: Callable[[bool], None] | None = None
        self._ended: Callable[[int | None], Awaitable[None]] | None = None
        self._failed: BaseException | None = None
        self._gone = False

    def _arm(self) -> None:
        """Wait for the next frame: only that wait is timed (Connection.read_timed_out),
        by one shared timer instead of an ``asyncio.timeout`` per frame (~0.7 KB)."""
        self._gates.read_deadlines.at(self._conn, self._deadline)
        self._conn.reading = True

    async def read(self, receive: Receive) -> None:
        """Read frames until the socket must close; sets ``conn.close_code`` and returns."""
        conn = self._conn
        while True:
            self._arm()
            try:
                raw = await receive()
            except PeerGone:
                conn.peer_gone()
                return
            finally:
                conn.reading = False
            step = self._feed(raw)
            if step is True:
                continue
            if step is False or not await step:
                return

    def _feed(self, raw: str | bytes | None) -> bool | Coroutine[Any, Any, bool]:
        """Handle one frame: True to read on, False when the socket closes, or the
        hello's answer to await (then whether to read on)."""
        hub, conn = self._hub, self._conn
        settings = hub.settings
        now = asyncio.get_running_loop().time()
        if conn.bound:
            self._deadline = now + settings.heartbeat_interval + settings.heartbeat_timeout
        if not self._bucket.take():
            conn.abort(CloseCode.RATE_LIMITED)
            return False
        try:
            if raw is None:  # an empty binary frame
                raise ProtocolError("empty binary frame", CloseCode.INVALID_DATA)
            message = parse_client_message(raw, max_size=settings.max_frame)
        except ProtocolError as exc:
            logger.info("socket %s closed %d: %s", conn.id, exc.close_code, exc)
            conn.abort(exc.close_code)
            return False
        if message is None:
            return True  # an unknown type: ignored (forward compatibility)
        if message.type == "ping":
            if not conn.bound:
                conn.abort(CloseCode.POLICY_VIOLATION)  # the first frame must be hello
                return False
            conn.push(pong_message())
            return True
        if not self._gates.address_limits.hello(self._address, now):
            # Each hello costs a backend read: one address may not make them faster.
            security_event("rate_limited", logging.WARNING, limit="hellos", address=self._address)
            conn.abort(CloseCode.RATE_LIMITED)
            return False
        return self._hello(message.tab)

    async def _hello(self, token: str | None) -> bool:
        hub, conn = self._hub, self._conn
        first = not conn.bound
        if not await _hello(hub, conn, self._tab_key, token):
            return False
        if first:
            settings = hub.settings
            now = asyncio.get_running_loop().time()
            self._deadline = now + settings.heartbeat_interval + settings.heartbeat_timeout
            await hub.arrive(conn)
        return True

    # -- served by the server's callbacks -----------------------------------------------

    def listen(self, listen: Listen, ended: Callable[[int | None], Awaitable[None]]) -> bool:
        """Have the server call :meth:`heard` with each received event from now on;
        False when the socket is aborted already (then read it as before)."""
        if not self._conn.listen(self._stop):
            return False
        self._ended = ended
        self._arm()
        self._hold = listen(self.heard)
        self._hold(False)
        return True

    def heard(self, event: Mapping[str, Any]) -> None:
        """One event the server received (an ASGI ``receive`` event)."""
        if self._ended is None:
            return  # ending: nothing more is read
        conn = self._conn
        conn.reading = False
        raw = frame_of(event)
        if raw is True:
            self._arm()
            return
        if raw is False:
            self._gone = True
            conn.peer_gone()
            self._stop()
            return
        try:
            step = self._feed(raw)
        except Exception as exc:
            self._failed = exc
            self._stop()
            return
        if step is True:
            self._arm()
        elif step is False:
            self._stop()
        else:  # the hello's answer: nothing more is heard until it is given
            assert self._hold is not None
            self._hold(True)
            self._busy = asyncio.ensure_future(self._answer(step))

    async def _answer(self, step: Coroutine[Any, Any, bool]) -> bool:
        try:
            going_on = await step
        except Exception as exc:
            self._failed = exc
            going_on = False
        self._busy = None
        if not going_on or self._ended is None:
            self._stop()
            return False
        self._arm()
        assert self._hold is not None
        self._hold(False)  # hears what arrived meanwhile
        return True

    def _stop(self) -> None:
        """The socket ends (once): forget it, then close it, in a task of its own."""
        if self._ended is None:
            return
        ended, self._ended = self._ended, None
        busy = self._busy
        if busy is not None and busy is not asyncio.current_task():
            busy.cancel()  # as the reader's task is cancelled while it awaits a hello
        task = asyncio.ensure_future(self._end(ended))
        _ENDING.add(task)
        task.add_done_callback(_ENDING.discard)

    async def _end(self, ended: Callable[[int | None], Awaitable[None]]) -> None:
        conn = self._conn
        busy = self._busy
        if busy is not None and busy is not asyncio.current_task():
            await asyncio.gather(busy, return_exceptions=True)
        try:
            code = await conn.stopped(self._failed)
        finally:
            await _forget(self._hub, self._gates, conn, self._address)
        if not self._gone:
            await ended(code)


async def _hello(hub: Hub, conn: Connection, tab_key: str, token: str | None) -> bool:
    """Bind ``token`` and send the truth. Returns False when the socket is closing."""
    gen = verify_tab_token(token, tab_key)  # the one MAC check of this hello
    if token is None or gen is None:
        if token is not None:
            security_event("tab_refused", logging.WARNING, session=conn.session, socket=True)
        conn.abort(CloseCode.TAB_INVALID)
        return False
    # Bound first, so a newer claim published while we read is routed to this socket.
    conn.bind(gen)
    try:
        found = await hub.load(conn.session)
    except BackendUnavailable as exc:
        logger.warning("socket %s: state not loaded: %s", conn.id, exc)
        conn.abort(CloseCode.TRY_AGAIN_LATER)
        return False
    hub.settle(conn, found)
    return not conn.closing
