"""The ASGI servers of ``sessionwatch serve``, with the limits an exposed service needs.

- **Read deadlines** (uvicorn): uvicorn times out idle keep-alive connections but
  neither a request whose headers never finish nor one whose body trickles in (a
  ``Content-Length: 100000000`` sent a byte every 2 s kept 5 of 5 connections open past
  100 s), so a slow client keeps a connection (and its memory) forever.
  :class:`BoundedHttpProtocol` closes a connection whose request line and headers are
  not complete ``header_timeout`` seconds after the connection opened or a read ended
  inside them, and answers 408 ``request_timeout`` (then closes) to a request whose body
  is not complete ``body_timeout`` seconds after its headers (the first read that ends
  inside the body). Timers are set only when a read ends inside a request, so a request
  that arrives whole in one read creates none (about 1 us per request less than the
  header timer alone cost before, which armed and cancelled one for every request).
  Hypercorn already closes such connections after its ``keep_alive_timeout`` (its idle
  timer runs until a request is complete).
- **Connections per client address** (uvicorn, hypercorn): every connection of a peer
  address counts against ``max_connections_per_address``, the one beyond is answered 429
  ``too_many_connections`` (:mod:`sessionwatch.service.connection_cap`).
- **No permessage-deflate** (hypercorn): hypercorn always accepts the extension when a
  browser offers it, and inflates a message before any size limit applies (a 14.5 KB
  compressed frame costs ~14 MiB). :func:`harden_hypercorn` makes its handshake answer
  without extensions; uvicorn is run with ``ws_per_message_deflate=False``.
- **A frame bound that holds** (hypercorn): past ``websocket_max_message_size`` hypercorn
  sends 1009 but keeps appending the rest of the frame to the same buffer (8 sockets x
  15 MiB took a worker from 52 to 173 MB); :func:`harden_hypercorn` drops the buffer
  when it overflows, so a socket holds at most the limit.
- **No wait for a peer that does not read** (uvicorn, hypercorn): asyncio's
  ``transport.close()`` and hypercorn's close write what is buffered first, for a peer
  whose TCP window stays closed never, so such a connection (its buffered bytes, its
  address's connection slot) stayed open after its socket's close, and held uvicorn's
  shut-down. A close is now cut off (:func:`cut_off`: the buffer dropped, a reset) at
  once when the write buffer is over its high-water mark, else ``CLOSE_TIMEOUT`` (2 s)
  later; :class:`LeanWebSocketProtocol` also stops reading while writing is paused, so
  the peer's pings cannot pile up pongs (160,000 took a worker +18 MB before).

- **Less memory per idle socket** (uvicorn): :class:`LeanWebSocketProtocol` is uvicorn's
  websockets-sansio protocol with two of its per-socket objects made small — the
  ``asyncio.Queue`` of received events (four deques, ~3 KB, for what is a short list
  with one reader) and the ``asyncio.Event`` of write flow control (~0.8 KB) — its
  attributes in slots (~1.2 KB less than an instance dict of ~45 keys), and the
  handshake's request and response (their ``Headers``, ~3.5 KB) dropped once the
  handshake is answered, when uvicorn no longer reads them: an idle tab 24 → 14 KB;
  and it offers the app ``listen`` (:data:`sessionwatch.live.socket.Listen`): the app
  is called back with each event and may return, leaving the socket open with no task
  and no coroutine chain of its own: 14 → 7.5 KB (docs/performance.md, finding 4).

The frame bound itself is the servers' own setting (uvicorn ``ws_max_size``, hypercorn
``websocket_max_message_size``), set by the CLI to ``max_frame``: a larger frame is
refused with 1009 as it arrives, before its payload is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable, Mapping
from functools import cache
from socket import SO_LINGER, SOL_SOCKET
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..core.codes import Code
from ..live.socket import CLOSE_TIMEOUT, LISTEN_EXTENSION
from .connection_cap import TOO_MANY_CONNECTIONS, connection_cap, http_error

__all__ = [
    "BODY_TIMEOUT_ENV",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "HEADER_TIMEOUT_ENV",
    "LISTEN_EXTENSION",
    "BoundedHttpProtocol",
    "LeanWebSocketProtocol",
    "harden_hypercorn",
]

HEADER_TIMEOUT_ENV = "SESSIONWATCH_SERVICE_HEADER_TIMEOUT"
DEFAULT_HEADER_TIMEOUT = 10.0
BODY_TIMEOUT_ENV = "SESSIONWATCH_SERVICE_BODY_TIMEOUT"
DEFAULT_BODY_TIMEOUT = 10.0


@cache
def header_timeout() -> float:
    """Seconds a client has to send a request's line and headers (from the
    environment the CLI prepares for its workers)."""
    return float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT))


@cache
def body_timeout() -> float:
    """Seconds a client has to send a request's body once its headers are complete."""
    return float(os.environ.get(BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT))


_REQUEST_TIMEOUT = http_error(
    b"408 Request Timeout", Code.REQUEST_TIMEOUT, "The request's body did not arrive in time."
)


# What a connection is reading (BoundedHttpProtocol._reading).
_BETWEEN, _HEADERS, _BODY = 0, 1, 2


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for each request's headers and
    body, and a cap on the connections of each client address (the module's
    docstring)."""

    # One timer at a time: the headers' until they are complete, then the body's. It is
    # set when a read ends inside a request (or when the connection opens), so a request
    # that arrives whole in one read creates no timer at all.
    _deadline: asyncio.TimerHandle | None = None
    _reading = _BETWEEN
    _address: str | None = None  # the key this connection is counted under

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        cap = connection_cap()
        key = cap.key(self.client)
        if key is not None:
            if not cap.counts.add(key):
                transport.write(TOO_MANY_CONNECTIONS)
                transport.close()
                return
            self._address = key
        self._deadline = self.loop.call_later(header_timeout(), self._too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        reading = self._reading
        if reading and self._deadline is None:
            seconds = header_timeout() if reading == _HEADERS else body_timeout()
            self._deadline = self.loop.call_later(seconds, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _HEADERS

    def on_headers_complete(self) -> None:
        if self._deadline is not None:
            self._disarm()
        self._reading = _BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading = _BETWEEN
        if self._deadline is not None:
            self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._reading = _BETWEEN
        self._disarm()
        key, self._address = self._address, None
        super().handle_websocket_upgrade()
        if key is None:
            return
        socket = self.transport.get_protocol()
        if isinstance(socket, LeanWebSocketProtocol):
            socket.counted_address = key  # released when the socket's connection ends
        else:
            connection_cap().counts.discard(key)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._address is not None:
            connection_cap().counts.discard(self._address)
            self._address = None
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if self._reading == _BODY and cycle is not None and not cycle.response_started:
            # The app's own answer, if it ever comes, is dropped (as after a
            # disconnect), and its receive() says http.disconnect.
            cycle.disconnected = True
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


def cut_off(transport: Any) -> None:
    """End a connection now: what is buffered is dropped, the peer gets a reset
    (``SO_LINGER`` 0: the kernel keeps nothing of it either)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _writing_paused(transport: Any) -> bool:
    """Whether the transport holds more than its high-water mark (the protocol was
    told to pause writing): the peer has not taken what was sent."""
    high = transport.get_write_buffer_limits()[1]
    return bool(transport.get_write_buffer_size() > high)


class _Inbox:
    """What uvicorn's protocol uses of an ``asyncio.Queue`` (``put_nowait``, ``get``,
    ``empty``), unbounded like its queue, in a list and one future per waiting reader
    instead of three deques and an ``Event`` created with every socket;
    once it listens (:meth:`listen`), an item is handed to the listener as it is put, unless held."""

    __slots__ = ("_heard", "_held", "_items", "_waiters")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._heard: Callable[[Any], None] | None = None
        self._held = False

    @property
    def listening(self) -> bool:
        """True once it listens."""
        return self._heard is not None

    @property
    def hearing(self) -> bool:
        """True when a put item goes to the listener at once."""
        return self._heard is not None and not self._held

    def listen(self, heard: Callable[[Any], None]) -> None:
        """Hand every item to ``heard`` from now on, held until :meth:`hold` (False)."""
        self._heard = heard
        self._held = True

    def hold(self, held: bool) -> None:
        """Hold the items back, or hand them on again (those waiting first)."""
        self._held = held
        items = self._items
        while items and not self._held and self._heard is not None:
            self._heard(items.pop(0))

    def put_nowait(self, item: Any) -> None:
        if self._heard is not None and not self._held and not self._items:
            self._heard(item)
            return
        self._items.append(item)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                break  # one item wakes one reader, as asyncio.Queue does

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._waiters.remove(waiter)
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_next()  # woken, then cancelled: the item goes to the next
                raise
            self._waiters.remove(waiter)
        return self._items.pop(0)

    def _wake_next(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return


class _Gate:
    """What uvicorn's protocol uses of an ``asyncio.Event`` (``set``, ``clear``,
    ``is_set``, ``wait``) without the deque every ``Event`` allocates up front."""

    __slots__ = ("_open", "_waiters")

    def __init__(self) -> None:
        self._open = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._open

    def set(self) -> None:
        self._open = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._open = False

    async def wait(self) -> None:
        if self._open:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol holding less per open socket (see the
    module's docstring); its behaviour is uvicorn's."""

    # uvicorn sets ~45 attributes per protocol; past 30 names CPython gives up the
    # shared-key layout and gives each instance its own 1.5 KB dict. Slots hold them in
    # the object itself (an attribute uvicorn adds that is not listed here still works:
    # it goes to the instance dict).
    __slots__ = (
        "app", "app_state", "asgi_version", "client", "close_sent", "close_timeout",
        "close_timer", "config", "conn", "connections", "counted_address",
        "curr_msg_data_type", "default_headers", "disconnected", "frames",
        "handshake_complete", "handshake_initiated", "initial_response", "last_ping_rtt",
        "logger", "loop", "pending_ping_payload", "ping_interval", "ping_sent_at",
        "ping_timeout", "ping_timer", "pong_timer", "queue", "read_paused", "request",
        "response", "root_path", "scheme", "scope", "server", "tasks", "transport",
        "writable",
    )  # fmt: skip

    queue: _Inbox  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()
        self.writable = _Gate()  # type: ignore[assignment]
        # The ConnectionCap key of the HTTP connection this socket was upgraded from.
        self.counted_address: str | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted_address is not None:
            connection_cap().counts.discard(self.counted_address)
            self.counted_address = None
        super().connection_lost(exc)

    # -- a peer that does not read ------------------------------------------------------
    # asyncio's ``transport.close()`` first writes what is buffered: for a peer that has
    # stopped reading, never, and uvicorn closes that way after the close handshake's
    # timeout, after the peer's close, at shut-down. Each of those closes is cut off
    # (``_cut_off``: the buffer dropped, a reset) CLOSE_TIMEOUT later, and at once when
    # writing is paused (the peer has not taken what was sent before the close).

    def pause_writing(self) -> None:
        super().pause_writing()
        # Nothing more is read from a peer that does not read either: each of its pings
        # would add a pong to the buffer (160,000 pings took a worker +18 MB).
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self.read_paused:
            self.transport.resume_reading()

    async def receive(self) -> Any:
        message = await super().receive()  # resumes reading once the app has read all
        if not self.writable.is_set():
            self.transport.pause_reading()  # (before any read: in the same callback)
        return message

    async def send(self, message: Any) -> None:
        closing = message["type"] == "websocket.close" and self.handshake_complete
        if closing and not self.writable.is_set() and not self.close_sent:
            # uvicorn would wait for the buffer to drain before it writes the close.
            self.close_sent = True
            self._cut_off()
            return
        await super().send(message)
        if closing and self.close_timer is not None:
            self.close_timer.cancel()  # uvicorn's: close() 10 s later
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._cut_off)

    def handle_close(self, event: Any) -> None:
        super().handle_close(event)
        self._bound_close()

    def handle_parser_exception(self) -> None:
        super().handle_parser_exception()
        self._bound_close()

    def shutdown(self) -> None:
        super().shutdown()
        self._bound_close()

    def _bound_close(self) -> None:
        """After uvicorn closed the transport: cut it off if the peer has not taken
        what is buffered within CLOSE_TIMEOUT (at once when writing is paused)."""
        transport = self.transport
        if self.disconnected or not transport.is_closing() or self.close_timer is not None:
            return
        if not transport.get_write_buffer_size():
            return  # closed at once
        if not self.writable.is_set():
            self._cut_off()
        else:
            self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self._cut_off)

    def _cut_off(self) -> None:
        self.close_timer = None
        cut_off(self.transport)

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            scope["extensions"][LISTEN_EXTENSION] = {"listen": self.listen, "receive": self.receive}

    def listen(self, heard: Callable[[Mapping[str, Any]], None]) -> Callable[[bool], None]:
        """Call ``heard`` with every event instead of queueing it for ``receive()``
        (:data:`sessionwatch.live.socket.Listen`): the app may then return and leave
        the socket open, served by callbacks, with no task of its own."""
        self.queue.listen(heard)
        return self.hold

    def hold(self, held: bool) -> None:
        """Hold the events back (reading pauses after the next frame, as uvicorn does
        while the app does not read) or hear them again, then read on."""
        self.queue.hold(held)
        self._read_on()

    def send_receive_event_to_app(self) -> None:
        super().send_receive_event_to_app()  # pauses reading until the event is read
        self._read_on()

    def _read_on(self) -> None:
        if (
            self.read_paused
            and self.queue.hearing
            and self.queue.empty()
            and self.writable.is_set()
        ):
            self.read_paused = False
            self.transport.resume_reading()

    async def run_asgi(self) -> None:
        # uvicorn's (0.55), except that an app listening to the socket (listen) leaves
        # it open when it returns: the listener closes it. The scope is dropped then
        # (uvicorn reads it only before the handshake is answered).
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.queue.listening:
            del self.scope
            return
        if self.close_timer is None:
            self.transport.close()
            self._bound_close()

    def start_keepalive(self) -> None:
        # uvicorn (0.54) calls this once, right after it has written the accepted
        # handshake's response: from here on it reads neither the request nor the
        # response. The request stays referenced by the parser (a local of websockets'
        # parse generator), so its headers are emptied too; the app has them as bytes
        # in the scope. (An older uvicorn without this hook keeps both: more memory,
        # the same behaviour.)
        request = getattr(self, "request", None)
        if self.handshake_complete and request is not None:
            request.headers.clear()
            del self.request, self.response
        super().start_keepalive()


def harden_hypercorn() -> None:
    """Make hypercorn's WebSocket handshake ignore the client's extension offers, its
    message buffer drop what it holds once a message is too large, and its connections
    count against the per-address cap (call in each worker before it serves;
    idempotent)."""
    from hypercorn.asyncio import tcp_server
    from hypercorn.protocol import ws_stream

    handshake_init = ws_stream.Handshake.__init__
    if getattr(handshake_init, "_sessionwatch", False):
        return

    def without_extensions(self: Any, *args: Any, **kwargs: Any) -> None:
        handshake_init(self, *args, **kwargs)
        self.extensions = None

    extend = ws_stream.WebsocketBuffer.extend

    def bounded_extend(self: Any, event: Any) -> None:
        try:
            extend(self, event)
        except ws_stream.FrameTooLargeError:
            self.clear()  # the socket is closing 1009: keep nothing of the frame
            raise

    run = tcp_server.TCPServer.run
    close = tcp_server.TCPServer._close

    async def capped_run(self: Any) -> None:
        peer = self.writer.get_extra_info("peername")
        cap = connection_cap()
        key = cap.key((str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None)
        if key is not None and not cap.counts.add(key):
            self.writer.write(TOO_MANY_CONNECTIONS)
            self.writer.close()
            return
        try:
            await run(self)
        finally:
            if key is not None:
                cap.counts.discard(key)

    async def bounded_close(self: Any) -> None:
        # hypercorn's close waits until what is buffered is written: for a peer that
        # does not read, forever. Cut off at once when writing is paused (the peer has
        # not taken what was sent), else CLOSE_TIMEOUT later.
        transport = self.writer.transport
        timer = None
        if not transport.is_closing() and transport.get_write_buffer_size():
            if _writing_paused(transport):
                cut_off(transport)
            else:
                timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, cut_off, transport)
        try:
            await close(self)
        finally:
            if timer is not None:
                timer.cancel()

    without_extensions._sessionwatch = True  # type: ignore[attr-defined]
    ws_stream.Handshake.__init__ = without_extensions  # type: ignore[method-assign]
    ws_stream.WebsocketBuffer.extend = bounded_extend  # type: ignore[method-assign]
    tcp_server.TCPServer.run = capped_run  # type: ignore[method-assign]
    tcp_server.TCPServer._close = bounded_close  # type: ignore[method-assign]
