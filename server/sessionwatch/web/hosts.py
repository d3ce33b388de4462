"""A ``Host`` no URL can be built for: 400 ``bad_host`` on every route of the app.

werkzeug's URL map IDNA-encodes the request's host when Quart binds it
(``Map.bind``) and raises ``BadHost`` for a label of 64 or more characters, an empty
label (``a..b``) or a name the codec refuses. Quart binds the map while it creates the
request context, before its error handling, so such a request answered 500 with a
traceback in the log on every Quart route (the app's own included), and the raw claim
path, which binds nothing, answered normally (issue 22). :func:`install` puts a check
in front of the app's ASGI callable: the host of an HTTP request or WebSocket handshake
is bound to the app's own URL map first (werkzeug's rule, not a copy of it), and a
request it refuses gets 400 ``bad_host`` on every path. A binding costs ~4.5 µs, so the
hosts that passed are remembered (a few; the set starts over when it is full): a
request to a known host pays one dictionary lookup.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from werkzeug.exceptions import BadHost

from ..core.codes import Code
from .responses import error_fields

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["install"]

_HOST: Final = b"host"
_KNOWN_HOSTS: Final = 64
_BODY: Final = (json.dumps(error_fields(Code.BAD_HOST), separators=(",", ":")) + "\n").encode()
_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"cache-control", b"no-store"),
]


def _valid_host(app: Quart, scope: Any, known: set[bytes]) -> bool:
    """Whether Quart can bind the app's URL map to the ``Host`` of ``scope`` (the first
    one, as Quart's headers read it; none: the server's address, always fine).
    ``known``: hosts that passed before."""
    for name, value in scope.get("headers", ()):
        if name.lower() == _HOST:
            if value in known:
                return True
            try:
                app.url_map.bind(value.decode("latin-1"))
            except BadHost:
                return False
            if len(known) >= _KNOWN_HOSTS:
                known.clear()
            known.add(value)
            return True
    return True


def install(app: Quart) -> None:
    """Wrap ``app.asgi_app`` so that a request with a bad ``Host`` is answered 400
    ``bad_host`` (a WebSocket handshake too, or closed where the server cannot send
    an HTTP answer to it) before Quart or the raw routes see it."""
    inner = app.asgi_app
    known: set[bytes] = set()

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or _valid_host(app, scope, known):
            await inner(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 400, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})
        else:
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {"type": "websocket.http.response.start", "status": 400, "headers": _HEADERS}
                )
                await send({"type": "websocket.http.response.body", "body": _BODY})
            else:
                await send({"type": "websocket.close", "code": 1008})

    app.asgi_app = asgi_app  # type: ignore[method-assign]
