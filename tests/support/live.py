"""Browsers, tabs and sockets over Quart's in-process test client, with bounded waits.

A socket goes through Quart's test client too (the task path: a coroutine per socket
reads it), unless the app's sockets are served by a real uvicorn with the service's
protocol (:func:`support.lean_sockets.serving_sockets`: the callback path)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from quart import Quart
from quart.testing import QuartClient
from quart.testing.connections import WebsocketDisconnectError, WebsocketResponseError

from sessionwatch import CloseCode, SessionWatch
from sessionwatch.live.connection import Connection

ORIGIN = "https://localhost"  # the test client's own origin over wss://
WS_PATH = "/_sessionwatch/ws"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0"
DOCUMENTED_CLOSE_CODES = frozenset(int(code) for code in CloseCode)
WAIT = 5.0  # seconds any single expected event may take
OWN: Any = object()  # "the browser's own origin"
# app.extensions[SOCKET_SERVER]: the server of the app's sockets, while one serves them
# (support.lean_sockets.LeanSocketServer).
SOCKET_SERVER = "tests.lean_socket_server"


def watch_of(app: Quart) -> SessionWatch:
    watch: SessionWatch = app.extensions["sessionwatch"]
    return watch


def serving(
    conn: Connection, path: str, read: Coroutine[Any, Any, None]
) -> asyncio.Future[int | None]:
    """Serve ``conn`` with ``read`` standing for its reader, as a socket is served on
    ``path``: ``"task"`` (``conn.serve(read)`` in the socket's task) or ``"callback"``
    (``conn.listen(stop)``, as sessionwatch.live.socket.SocketReader: no task reads; the
    socket ends when ``read`` returns or ``conn`` calls ``stop``, then ``conn.stopped()``;
    an aborted ``conn`` refuses to listen and is served as on the task path). The
    future's result is the close code to send."""
    if path == "task":
        return asyncio.ensure_future(conn.serve(read))
    assert path == "callback", path
    stop = asyncio.Event()
    if not conn.listen(stop.set):
        return asyncio.ensure_future(conn.serve(read))
    reader = asyncio.ensure_future(read)  # stands for the frames the server calls back with
    reader.add_done_callback(lambda _: stop.set())

    async def ended() -> int | None:
        await stop.wait()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return await conn.stopped()

    return asyncio.ensure_future(ended())


SERVING_PATHS = ("task", "callback")


class Closed(Exception):
    """The server closed the socket (``code``) while a message was expected."""

    def __init__(self, code: int) -> None:
        super().__init__(f"socket closed with {code}")
        self.code = code


class Socket:
    """One WebSocket of a tab, speaking the JSON protocol."""

    def __init__(self, connection: Any) -> None:
        # Quart's test connection, or a support.lean_sockets.ServedSocket (whose
        # receive raises Closed itself).
        self.connection = connection

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        raw = json.dumps(message) if isinstance(message, dict) else message
        await asyncio.wait_for(self.connection.send(raw), WAIT)

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next message; raises :class:`Closed` if the socket closes instead."""
        try:
            raw = await asyncio.wait_for(self.connection.receive(), timeout)
        except WebsocketDisconnectError as exc:
            raise Closed(int(exc.args[0])) from None
        message: dict[str, Any] = json.loads(raw)
        return message

    async def until(self, message_type: str, timeout: float = WAIT) -> dict[str, Any]:
        """Skip messages until one of ``message_type`` arrives."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive(timeout)
                if message["type"] == message_type:
                    return message

    async def hello(self, tab: str | None) -> dict[str, Any]:
        """Send ``hello`` and return the answer (``ready`` or the truth). On the callback
        path, the socket answered is served by callbacks, not by a task."""
        await self.send({"type": "hello", "v": 1, "tab": tab})
        answer = await self.receive()
        assert getattr(self.connection, "served_by_callbacks", True), "served by a task"
        return answer

    async def closed(self, timeout: float = WAIT) -> tuple[int, list[dict[str, Any]]]:
        """Wait for the close; returns its code and the messages received before it."""
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    seen.append(await self.receive(timeout))
                except Closed as closed:
                    return closed.code, seen

    async def pong(self) -> None:
        """Ping; the very next message must be the pong (so nothing else was queued)."""
        await self.send({"type": "ping"})
        message = await self.receive()
        assert message == {"type": "pong"}, message


class Browser:
    """A browser (one cookie jar) on the app, over HTTPS."""

    def __init__(self, app: Quart, user_agent: str = CHROME, *, origin: str = ORIGIN) -> None:
        self.app = app
        self.client: QuartClient = app.test_client()
        self.user_agent = user_agent
        self.origin = origin  # the page's origin, sent with requests and sockets

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"User-Agent": self.user_agent, "Origin": self.origin, **(extra or {})}

    async def post(self, path: str, json_body: Any = None, **headers: str) -> Any:
        return await asyncio.wait_for(
            self.client.post(
                path, json=json_body or {}, scheme="https", headers=self._headers(headers)
            ),
            WAIT,
        )

    async def get(self, path: str, **headers: str) -> Any:
        return await asyncio.wait_for(
            self.client.get(path, scheme="https", headers=self._headers(headers)), WAIT
        )

    async def delete(self, path: str, **headers: str) -> Any:
        return await asyncio.wait_for(
            self.client.delete(path, scheme="https", headers=self._headers(headers)), WAIT
        )

    async def claim(self) -> dict[str, Any]:
        """A new tab: ``POST /claim``; returns the answer (``tab``, ``gen``, ...)."""
        response = await self.post("/_sessionwatch/claim")
        assert response.status_code == 200, await response.get_data()
        body: dict[str, Any] = await response.get_json()
        return body

    async def login(self, user: str) -> Any:
        response = await self.post("/login", {"user": user})
        assert response.status_code == 200, await response.get_data()
        return await response.get_json()

    def _socket_headers(self, origin: Any, headers: dict[str, str] | None) -> dict[str, str]:
        all_headers = {"User-Agent": self.user_agent, **(headers or {})}
        if origin is OWN:
            origin = self.origin
        if origin is not None:
            all_headers["Origin"] = origin
        return all_headers

    @contextlib.asynccontextmanager
    async def socket(
        self, *, origin: Any = OWN, headers: dict[str, str] | None = None
    ) -> AsyncIterator[Socket]:
        """A socket from a page of ``origin`` (default: the browser's; None: no header)."""
        all_headers = self._socket_headers(origin, headers)
        server = self.app.extensions.get(SOCKET_SERVER)
        if server is not None:  # the callback path (support.lean_sockets)
            async with server.socket(WS_PATH, all_headers, self.client.cookie_jar) as served:
                yield Socket(served)
            return
        connection = self.client.websocket(WS_PATH, scheme="wss", headers=all_headers)
        async with connection as ws:
            yield Socket(ws)

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[tuple[Socket, dict[str, Any]]]:
        """A claimed tab with its socket open and ``ready``."""
        claim = await self.claim()
        async with self.socket() as ws:
            ready = await ws.hello(claim["tab"])
            assert ready["type"] == "ready", ready
            yield ws, claim

    async def refused(
        self, *, origin: Any = OWN, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Open a socket that must be refused at the handshake: (status, JSON body
        without its human ``message``, which must be there). Always through Quart's test
        client: a refusal is decided before any socket is served."""
        connection = self.client.websocket(
            WS_PATH, scheme="wss", headers=self._socket_headers(origin, headers)
        )
        async with connection as ws:
            try:
                await asyncio.wait_for(ws.receive(), WAIT)
            except WebsocketResponseError as exc:
                response = exc.response
                body = dict(await response.get_json())
                message = body.pop("message", None)
                assert isinstance(message, str) and message, body
                return response.status_code, body
        raise AssertionError("the handshake was accepted")
