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
from collections.abc import Awaitable, Callable

from ..core.audit import security_event
from ..core.events import CloseCode, parse_client_message, pong_message
from ..core.exceptions import BackendUnavailable, ProtocolError
from ..core.tabs import verify_tab_token
from .admission import Ticket
from .connection import Connection, TooManySockets
from .gates import SocketGates
from .hub import Hub

__all__ = ["CLOSE_TIMEOUT", "PeerGone", "Receive", "serve_socket"]

# Reads the next frame: text, bytes, ``None`` for an empty binary frame; raises
# :class:`PeerGone` when the peer has disconnected.
Receive = Callable[[], Awaitable[str | bytes | None]]

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0  # seconds to send the close frame


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
) -> int | None:
    """Serve an accepted socket: register it with the hub, read its frames, forget it.
    ``opening`` (its admission) is released once it is registered: the wait for its
    ``hello`` holds no turn (a silent client must not block others), and hellos come
    no faster than turns are given. ``address`` (the client's) is counted against
    ``max_sockets_per_address`` (4011 beyond) and ``max_hellos_per_second`` (4010).
    Returns the close code to send (``None``: nothing to send)."""
    limits = gates.address_limits
    if not limits.open_socket(address):
        opening.release()
        security_event("rate_limited", logging.WARNING, limit="sockets", address=address)
        return CloseCode.TOO_MANY_SOCKETS
    try:
        try:
            await hub.attach(conn)
        except TooManySockets:
            return CloseCode.TOO_MANY_SOCKETS
        except BackendUnavailable:
            return CloseCode.TRY_AGAIN_LATER
        finally:
            opening.release()
        return await conn.serve(_read_frames(hub, gates, conn, tab_key, receive, address))
    finally:  # also when cancelled while attaching (the peer left during the subscribe)
        limits.close_socket(address)
        gates.read_deadlines.cancel(conn)
        await hub.detach(conn)


async def _read_frames(
    hub: Hub,
    gates: SocketGates,
    conn: Connection,
    tab_key: str,
    receive: Receive,
    address: str | None,
) -> None:
    """Read frames until the socket must close; sets ``conn.close_code`` and returns."""
    settings = hub.settings
    loop = asyncio.get_running_loop()
    bucket = _TokenBucket(settings.max_messages_per_second)
    deadline = loop.time() + settings.hello_timeout
    silence = settings.heartbeat_interval + settings.heartbeat_timeout
    deadlines = gates.read_deadlines
    while True:
        # Only the wait for a frame is timed (Connection.read_timed_out): one shared
        # timer instead of an ``asyncio.timeout`` per frame (~0.7 KB per socket).
        deadlines.at(conn, deadline)
        conn.reading = True
        try:
            raw = await receive()
        except PeerGone:
            conn.peer_gone()
            return
        finally:
            conn.reading = False
        if conn.bound:
            deadline = loop.time() + silence
        if not bucket.take():
            conn.abort(CloseCode.RATE_LIMITED)
            return
        try:
            if raw is None:  # an empty binary frame
                raise ProtocolError("empty binary frame", CloseCode.INVALID_DATA)
            message = parse_client_message(raw, max_size=settings.max_frame)
        except ProtocolError as exc:
            logger.info("socket %s closed %d: %s", conn.id, exc.close_code, exc)
            conn.abort(exc.close_code)
            return
        if message is None:
            continue  # an unknown type: ignored (forward compatibility)
        if message.type == "ping":
            if not conn.bound:
                conn.abort(CloseCode.POLICY_VIOLATION)  # the first frame must be hello
                return
            conn.push(pong_message())
            continue
        if not gates.address_limits.hello(address, loop.time()):
            # Each hello costs a backend read: one address may not make them faster.
            security_event("rate_limited", logging.WARNING, limit="hellos", address=address)
            conn.abort(CloseCode.RATE_LIMITED)
            return
        first = not conn.bound
        if not await _hello(hub, conn, tab_key, message.tab):
            return
        if first:
            deadline = loop.time() + silence
            await hub.arrive(conn)


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
