"""``GET {url_prefix}/ws`` on raw ASGI, without Quart's WebSocket layer.

For every socket Quart keeps a connection object with a queue and two tasks, a
``Websocket`` with werkzeug ``Headers``, a websocket context with the session and its
record: about 13 KB of an idle tab's ~40 (docs/performance.md, finding 4). This module
installs the app's ``asgi_websocket_class`` (the innermost ASGI layer: ASGI middleware
around the app and Quart's test client go through it) and serves an accepted socket on
the ASGI ``receive``/``send`` directly, keeping only the session's id, user and tab key.

It takes only a handshake in which nothing of the app could see a difference: no
WebSocket hook, URL value preprocessor, app-context teardown function or receiver of
Quart's WebSocket and app-context signals that would run for the endpoint, no
``SERVER_NAME`` or host or subdomain matching, the path routes to the endpoint, and the
app's session interface, ``Websocket`` class and this class are sessionwatch's and
Quart's own; everything else is handed to Quart's handling unchanged. It is a door: the
handshake is decided by :func:`~sessionwatch.live.handshake.open_handshake`, the one
function the Quart view (:mod:`.websocket`) calls too, and each refusal is written as
the view writes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, ClassVar

# Quart internals this module relies on, all here (checked against Quart 0.22.0, the
# version the test suite runs; pyproject allows 0.21 to 0.23): the app attribute
# ``asgi_websocket_class`` and ASGIWebsocketConnection's constructor and __call__, the
# app's hook registries (before/after/teardown_websocket_funcs, url_value_preprocessors,
# teardown_appcontext_funcs), the signals below, ``websocket_class``, the scope key
# ``_quart._preserve_context`` of the test client, and the endpoint name
# ``<blueprint>.live`` the extension registers.
from quart.asgi import ASGIWebsocketConnection
from quart.signals import (
    appcontext_popped,
    appcontext_pushed,
    appcontext_tearing_down,
    got_websocket_exception,
    websocket_finished,
    websocket_received,
    websocket_sent,
    websocket_started,
    websocket_tearing_down,
)
from quart.wrappers import Websocket
from werkzeug.exceptions import HTTPException

from ..core.exceptions import BackendUnavailable
from ..core.refusals import Refusal
from ..live.admission import Ticket
from ..live.connection import Connection
from ..live.gates import SocketGates
from ..live.handshake import open_handshake
from ..live.hub import Hub
from ..live.socket import (
    DETACHED,
    LISTEN_EXTENSION,
    Listen,
    PeerGone,
    frame_of,
    serve_socket,
)
from .rawhttp import route_path
from .requestfacts import ScopeHeaders, facts_of_scope
from .responses import refusal_response
from .sessions import ServerSession, ServerSessionInterface, UnavailableSession
from .websocket import WebSocketHost

if TYPE_CHECKING:
    from quart import Quart, Response
    from quart.blueprints import BlueprintSetupState

    from ..backends.base import SessionRecord

__all__ = ["install"]

_SIGNALS = (
    websocket_started,
    websocket_received,
    websocket_sent,
    websocket_finished,
    websocket_tearing_down,
    got_websocket_exception,
    appcontext_pushed,
    appcontext_popped,
    appcontext_tearing_down,
)

logger = logging.getLogger(__name__)


def install(
    state: BlueprintSetupState,
    host: WebSocketHost,
    hub: Hub,
    gates: SocketGates,
    interface: ServerSessionInterface,
) -> None:
    """Make the app's WebSocket connections :class:`_Endpoint` (unless the app brought
    its own class: then it is left alone and Quart serves the endpoint).

    Args:
        host: the extension (its origin rule and settings).
        hub: this process's hub.
        gates: this process's socket gates (the view's).
        interface: the extension's session interface (reads the cookie and the session).
    """
    app = state.app
    if getattr(app, "asgi_websocket_class", None) is not ASGIWebsocketConnection:
        return
    path = (state.url_prefix or "") + "/ws"
    blueprint = state.name

    class Endpoint(_Endpoint):
        __slots__ = ()

    Endpoint.host = host
    Endpoint.hub = hub
    Endpoint.gates = gates
    Endpoint.interface = interface
    Endpoint.path = path
    Endpoint.blueprint = blueprint
    app.asgi_websocket_class = Endpoint  # type: ignore[attr-defined]


class _QuartConnection(ASGIWebsocketConnection):
    """Quart's handling of the endpoint, with two fixes:

    - Quart reads ``event.get("bytes") or event["text"]``, so an empty binary frame from
      uvicorn (no ``text`` key) raised KeyError in its receiver and crashed the
      connection; the frame reaches the view as ``None`` instead and is refused with 1007.
    - Quart sends a refusal's body (403 origin, 401 session) in pieces with
      ``more_body``; granian (2.8) takes a denial response in one body message only and
      raised "Unsupported ASGI message" for the first piece. The pieces are joined into
      one message, which every server takes.
    """

    async def __call__(self, receive: Any, send: Any) -> None:
        async def guarded() -> Any:
            event = await receive()
            if event["type"] == "websocket.receive" and not event.get("bytes"):
                if event.get("text") is None:
                    return {"type": "websocket.receive", "bytes": None, "text": None}
            return event

        pieces: list[bytes] = []

        async def joined(message: Any) -> None:
            if message["type"] == "websocket.http.response.body":
                pieces.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                message = {"type": message["type"], "body": b"".join(pieces), "more_body": False}
            await send(message)

        await super().__call__(guarded, joined)


async def _send_text(send: Any, text: str) -> None:
    await send({"type": "websocket.send", "bytes": None, "text": text})


def _reasoned_close(scope: Any) -> bool:
    """Whether the server takes a close's ``reason`` (ASGI spec 2.3 and later)."""
    version = str(scope.get("asgi", {}).get("spec_version", "2.0"))
    return [int(part) for part in version.split(".")] >= [2, 3]


async def _close_socket(send: Any, reasoned: bool, conn: Connection, code: int | None) -> None:
    """Close the socket with ``code`` (Quart closes a socket its view leaves open with
    1000), within ``conn.close_wait`` (CLOSE_TIMEOUT; none for a peer that did not take
    what was sent: the server then cuts the connection off)."""
    code = code or 1000
    message = {"type": "websocket.close", "code": code}
    if reasoned:
        message["reason"] = ""
    try:
        async with asyncio.timeout(conn.close_wait):  # 0: as far as it goes without waiting
            await send(message)
    except Exception as exc:  # the peer is already gone
        logger.debug("close %s not sent: %r", code, exc)


class _Endpoint:
    """One WebSocket connection of the app (Quart creates one per handshake)."""

    __slots__ = ("_app", "_gone", "_receive", "_scope", "_send")

    host: ClassVar[WebSocketHost]  # these are set on the app's subclass by install()
    hub: ClassVar[Hub]
    gates: ClassVar[SocketGates]
    interface: ClassVar[ServerSessionInterface]
    path: ClassVar[str]
    blueprint: ClassVar[str]

    def __init__(self, app: Quart, scope: Any) -> None:
        self._app = app
        self._scope = scope
        self._gone = False

    async def __call__(self, receive: Any, send: Any) -> None:
        if route_path(self._scope) != self.path:
            await ASGIWebsocketConnection(self._app, self._scope)(receive, send)
        elif not self._plain():
            await _QuartConnection(self._app, self._scope)(receive, send)
        else:
            self._receive = receive
            self._send = send
            await self._serve()

    async def _quart(self) -> None:
        await _QuartConnection(self._app, self._scope)(self._receive, self._send)

    # -- the handshake ----------------------------------------------------------------

    def _plain(self) -> bool:
        """True when Quart's handling would run nothing but the view for this handshake
        (see the module's docstring)."""
        app, scope = self._app, self._scope
        interface: Any = app.session_interface
        if scope.get("_quart._preserve_context", False):
            return False  # a test client keeping the context for inspection
        if (
            app.config["SERVER_NAME"] is not None
            or app.url_map.host_matching
            or app.subdomain_matching
            or app.teardown_appcontext_funcs
            or type(interface) is not ServerSessionInterface
            or interface is not self.interface
            or app.websocket_class is not Websocket
        ):
            return False
        for name in (None, self.blueprint):
            if (
                app.before_websocket_funcs.get(name)
                or app.after_websocket_funcs.get(name)
                or app.teardown_websocket_funcs.get(name)
                or app.url_value_preprocessors.get(name)
            ):
                return False
        if any(signal.receivers for signal in _SIGNALS):
            return False
        try:
            adapter = app.url_map.bind(
                "localhost", scope.get("root_path", ""), url_scheme=scope["scheme"]
            )
            rule, _ = adapter.match(route_path(scope), method="GET", return_rule=True)
        except (HTTPException, KeyError):
            return False
        return bool(rule.endpoint == f"{self.blueprint}.live")

    async def _serve(self) -> None:
        scope, interface, hub = self._scope, self.interface, self.hub
        try:
            facts = facts_of_scope(
                scope,
                ScopeHeaders(scope),
                lambda secure: interface.cookie_name(self._app, secure),
                trust_forwarded_for=hub.settings.trust_forwarded_for,
            )
        except Exception:  # a malformed scope: Quart's handling deals with it
            await self._quart()
            return
        load = functools.partial(self._load, facts.cookies, facts.cookies_named)
        outcome = await open_handshake(
            facts, origins=self.host.origins, hub=hub, gates=self.gates, load_session=load
        )
        if isinstance(outcome, Refusal):
            async with self._app.app_context():
                response = refusal_response(outcome)
            await self._refuse(response)
            return
        # The socket keeps the session's id, user and tab key, its turn and the address:
        # nothing else of the handshake stays referenced for the socket's lifetime.
        record, ticket, address = outcome.record, outcome.ticket, facts.address
        # Neither the connection nor a listening reader keeps this object (or the
        # scope): only the ASGI ``send``.
        conn = Connection(
            record.id,
            record.user,
            functools.partial(_send_text, self._send),
            queue_size=hub.settings.send_queue_size,
        )
        tab_key = record.tab_key
        del outcome, facts, load, record
        try:
            await self._open(conn, tab_key, ticket, address)
        finally:
            ticket.release()

    async def _load(
        self, cookies: tuple[str, ...], named: int
    ) -> tuple[SessionRecord | None, str | None]:
        """The handshake's session, as Quart's session interface opens it."""
        session = await self.interface.open_cookies(list(cookies), defer=False, named=named)
        if isinstance(session, UnavailableSession):
            raise session.error
        if not isinstance(session, ServerSession):
            raise BackendUnavailable("the session could not be opened")
        return session.record, session.ended

    async def _open(
        self, conn: Connection, tab_key: str, ticket: Ticket, address: str | None
    ) -> None:
        """Accept and serve the socket (its turn: ``ticket``)."""
        try:
            await self._send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        except Exception as exc:
            # The peer left meanwhile: Quart's receiver would have seen it and quietly
            # cancelled the view.
            logger.debug("socket not accepted: %r", exc)
            return
        code: int | None
        closing = functools.partial(_close_socket, self._send, _reasoned_close(self._scope), conn)
        try:
            code = await serve_socket(
                self.hub,
                self.gates,
                conn,
                tab_key,
                self._read,
                ticket,
                address,
                listen=self._listen(),
                ended=closing,
            )
        except Exception as exc:  # as Quart: logged, and the socket closed with 1000
            self._app.logger.error(f"Exception on websocket {self.path}", exc_info=exc)
            code = None
        if self._gone or code == DETACHED:
            return
        await closing(code)

    def _listen(self) -> Listen | None:
        """The server's ``listen`` (served by callbacks, no task per socket), when it
        offers one and our ``receive`` is its own (no middleware between)."""
        offer = (self._scope.get("extensions") or {}).get(LISTEN_EXTENSION)
        if not isinstance(offer, dict) or offer.get("receive") != self._receive:
            return None
        listen: Listen | None = offer.get("listen")
        return listen

    # -- ASGI messages, as Quart sends and reads them -----------------------------------

    async def _read(self) -> str | bytes | None:
        while True:
            # As Quart reads it; ``None`` (an empty binary frame) is refused with 1007.
            frame = frame_of(await self._receive())
            if frame is False:
                self._gone = True
                raise PeerGone
            if frame is not True:
                return frame

    async def _refuse(self, response: Response) -> None:
        """Send an HTTP answer instead of the upgrade where the server supports it, else
        close before accepting (the server answers 403)."""
        extensions = self._scope.get("extensions") or {}
        if "websocket.http.response" not in extensions:
            await self._send({"type": "websocket.close", "code": 1000})
            return
        headers = [
            (key.lower().encode(), value.encode()) for key, value in response.headers.items()
        ]
        await self._send(
            {
                "type": "websocket.http.response.start",
                "status": response.status_code,
                "headers": headers,
            }
        )
        async with response.response as body:  # one message: see _QuartConnection
            data = b"".join([piece async for piece in body])
        await self._send({"type": "websocket.http.response.body", "body": data, "more_body": False})
