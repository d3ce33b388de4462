"""The ASGI servers of ``sessionwatch serve``, with the limits an exposed service needs.

- **Header-read timeout** (uvicorn): uvicorn times out idle keep-alive connections but
  not a request whose headers never finish, so a client trickling half a request keeps a
  connection (and its memory) forever. :class:`HeaderTimeoutProtocol` closes a connection
  whose request line and headers are not complete ``header_timeout`` seconds after the
  connection opened or the request began. Hypercorn already closes such a connection
  after its ``keep_alive_timeout`` (its idle timer runs until a request is complete).
- **No permessage-deflate** (hypercorn): hypercorn always accepts the extension when a
  browser offers it, and inflates a message before any size limit applies (a 14.5 KB
  compressed frame costs ~14 MiB). :func:`harden_hypercorn` makes its handshake answer
  without extensions; uvicorn is run with ``ws_per_message_deflate=False``.
- **A frame bound that holds** (hypercorn): past ``websocket_max_message_size`` hypercorn
  sends 1009 but keeps appending the rest of the frame to the same buffer (8 sockets x
  15 MiB took a worker from 52 to 173 MB); :func:`harden_hypercorn` drops the buffer
  when it overflows, so a socket holds at most the limit.

The frame bound itself is the servers' own setting (uvicorn ``ws_max_size``, hypercorn
``websocket_max_message_size``), set by the CLI to ``max_frame``: a larger frame is
refused with 1009 as it arrives, before its payload is buffered.
"""

from __future__ import annotations

import asyncio
import os
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "HEADER_TIMEOUT_ENV",
    "HeaderTimeoutProtocol",
    "harden_hypercorn",
]

HEADER_TIMEOUT_ENV = "SESSIONWATCH_SERVICE_HEADER_TIMEOUT"
DEFAULT_HEADER_TIMEOUT = 10.0


@cache
def header_timeout() -> float:
    """Seconds a client has to send a request's line and headers (from the
    environment the CLI prepares for its workers)."""
    return float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT))


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for each request's headers."""

    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(header_timeout(), self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def harden_hypercorn() -> None:
    """Make hypercorn's WebSocket handshake ignore the client's extension offers, and
    its message buffer drop what it holds once a message is too large (call in each
    worker before it serves; idempotent)."""
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

    without_extensions._sessionwatch = True  # type: ignore[attr-defined]
    ws_stream.Handshake.__init__ = without_extensions  # type: ignore[method-assign]
    ws_stream.WebsocketBuffer.extend = bounded_extend  # type: ignore[method-assign]
