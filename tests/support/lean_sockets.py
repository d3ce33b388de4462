"""An app's live-push sockets served by a real uvicorn with the service's WebSocket
protocol (``LeanWebSocketProtocol``), in the test's event loop.

That protocol offers the scope extension ``sessionwatch.listen`` (LISTEN_EXTENSION), so an
accepted socket is served the way ``sessionwatch serve`` serves it: by callbacks, the
app's ASGI call returned, no task of its own (the *callback path*; Quart's test client
and every other server take the *task path*). :func:`serving_sockets` starts it next to a
served app (``app.test_app()``); from then on :class:`support.live.Browser` opens that
app's sockets through it, with the ``websockets`` client, while its HTTP requests
(claims, logins, refused handshakes) stay on Quart's test client, sharing its cookies.

The server is uvicorn's own: its HTTP protocol upgrading to the WebSocket protocol, its
proxy-headers middleware (the client is a page of ``https://localhost`` behind a
TLS-terminating proxy: ``X-Forwarded-Proto: https``), on a listener made as
``uvicorn.Server.startup`` makes it, without the server's 0.1 s main-loop tick and
shut-down sleep (a fifth of a second more per test). Its frame bound stays uvicorn's
(16 MiB), so the app's reader enforces ``max_frame``; ``sessionwatch serve`` sets
``ws_max_size`` to it (``ws_max_size=`` does too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from http.cookiejar import CookieJar
from typing import Any

import uvicorn
from quart import Quart
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sessionwatch.live import socket as socket_module
from sessionwatch.live.socket import LISTEN_EXTENSION
from sessionwatch.service.servers import LeanWebSocketProtocol
from support.live import SOCKET_SERVER, Closed

__all__ = ["LeanSocketServer", "ServedSocket", "serving_sockets"]

WAIT = 5.0
_POLL = 0.005


class ServedSocket:
    """One client socket to the server: what :class:`support.live.Socket` uses of
    Quart's test connection (``send``, ``receive``), and the server's protocol object
    of this socket."""

    def __init__(self, ws: ClientConnection, protocol: Any) -> None:
        self.ws = ws
        self.protocol = protocol

    async def send(self, raw: str | bytes) -> None:
        """Send a frame; once the socket is closed, nothing (a browser's ``send``
        then discards the data, as Quart's test connection does): receive tells."""
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(raw)

    async def receive(self) -> str | bytes:
        """The next frame; raises :class:`~support.live.Closed` once the server has
        closed (1006: without a close frame)."""
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise Closed(exc.rcvd.code if exc.rcvd is not None else 1006) from None

    @property
    def served_by_callbacks(self) -> bool:
        """True when the app listens to this socket (LISTEN_EXTENSION) and its ASGI call
        has returned: the protocol dropped the scope then (LeanWebSocketProtocol.run_asgi)."""
        listening = bool(getattr(self.protocol.queue, "listening", False))
        return listening and not hasattr(self.protocol, "scope")


class LeanSocketServer:
    """uvicorn serving one app on 127.0.0.1 with ``LeanWebSocketProtocol`` (``ws``:
    another WebSocket protocol, to compare)."""

    def __init__(
        self, app: Quart, *, ws: Any = LeanWebSocketProtocol, ws_max_size: int | None = None
    ) -> None:
        options: dict[str, Any] = {}
        if ws_max_size is not None:
            options["ws_max_size"] = ws_max_size
        # When the app's call of each socket returns (by the client address the protocol
        # gives it), and how many sockets it had left to callbacks (listen) then.
        self._calls: dict[tuple[str, int], asyncio.Event] = {}
        self.listened = 0
        self.config = uvicorn.Config(
            self._called(app),
            host="127.0.0.1",
            port=0,
            ws=ws,
            ws_per_message_deflate=False,
            ws_ping_interval=None,  # as sessionwatch serve: the tabs' heartbeat only
            ws_ping_timeout=None,
            lifespan="off",  # the app is served already (app.test_app())
            proxy_headers=True,
            forwarded_allow_ips="127.0.0.1",
            access_log=False,
            log_level="warning",
            **options,
        )
        self.config.load()
        self.state = ServerState()
        self.port = 0
        self._listener: asyncio.Server | None = None

    def _called(self, app: Quart) -> Any:
        """``app``, noting when its call of a socket returns and whether it listens to
        the socket then (``receive`` is passed on unchanged: the app may listen)."""

        async def called(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "websocket":
                await app(scope, receive, send)
                return
            returned = self._calls[tuple(scope["client"])] = asyncio.Event()
            try:
                await app(scope, receive, send)
            finally:
                returned.set()
                offer = scope["extensions"].get(LISTEN_EXTENSION)
                if offer is not None and offer["listen"].__self__.queue.listening:
                    self.listened += 1

        return called

    async def start(self) -> None:
        config, state = self.config, self.state

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}
            )
            return made

        self._listener = await asyncio.get_running_loop().create_server(
            protocol, host="127.0.0.1", port=0
        )
        self.port = int(self._listener.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, shut the open sockets down as uvicorn does (1012), and wait
        until they and the app's handling of them have ended."""
        if self._listener is not None:
            self._listener.close()
        for connection in list(self.state.connections):
            connection.shutdown()
        await self.settled(self.state.connections)
        if self._listener is not None:
            await self._listener.wait_closed()

    async def settled(self, protocols: Iterable[Any]) -> None:
        """Wait until none of ``protocols`` is connected any more, the app's call of
        each has returned, and no socket the app listened to is still ending
        (sessionwatch.live.socket forgets it in a task of its own): what leaving a
        socket of Quart's test client waits for (the app's handling of it)."""
        mine = list(protocols)
        async with asyncio.timeout(WAIT):
            for protocol in mine:
                returned = self._calls.pop(protocol.client, None)
                if returned is not None:
                    await returned.wait()
            # The server's and the app's state: no event to wait on.
            while any(p in self.state.connections for p in mine) or socket_module._ENDING:  # noqa: ASYNC110
                await asyncio.sleep(_POLL)

    def _protocol_of(self, ws: ClientConnection) -> Any:
        local = tuple(ws.local_address[:2])
        for connection in self.state.connections:
            if isinstance(connection, WebSocketsSansIOProtocol) and connection.client == local:
                return connection
        raise AssertionError(f"no socket of {local} on the server")

    @contextlib.asynccontextmanager
    async def socket(
        self, path: str, headers: dict[str, str], cookies: CookieJar | None
    ) -> AsyncIterator[ServedSocket]:
        """A socket to ``path`` with ``headers`` and the jar's cookies, as a browser on
        ``https://localhost`` sends them through its proxy; on leaving, closed and
        settled (:meth:`settled`)."""
        sent = {**headers, "X-Forwarded-Proto": "https"}
        if cookies is not None and len(cookies):
            sent["Cookie"] = "; ".join(f"{c.name}={c.value}" for c in cookies)
        ws = await connect(
            f"ws://localhost{path}",  # Host: localhost (port 80 is the default: not sent)
            host="127.0.0.1",
            port=self.port,
            additional_headers=sent,
            user_agent_header=None,
            compression=None,
            proxy=None,
            ping_interval=None,
            open_timeout=WAIT,
            close_timeout=WAIT,
        )
        served = ServedSocket(ws, self._protocol_of(ws))
        try:
            yield served
        finally:
            await ws.close()
            await self.settled([served.protocol])


@contextlib.asynccontextmanager
async def serving_sockets(app: Quart, **options: Any) -> AsyncIterator[LeanSocketServer]:
    """Serve ``app``'s sockets with :class:`LeanSocketServer` (``options``: its own)
    while the context lasts; :class:`support.live.Browser` uses it meanwhile."""
    server = LeanSocketServer(app, **options)
    await server.start()
    app.extensions[SOCKET_SERVER] = server
    try:
        yield server
    finally:
        del app.extensions[SOCKET_SERVER]
        await server.stop()
