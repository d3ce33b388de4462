"""Real server processes running ``support.push_app`` and real clients for them.

- :class:`AppProcess`: uvicorn or hypercorn on a free port, its output in a log file.
- :class:`HttpBrowser`: a cookie jar and plain HTTP/1.1 requests (asyncio streams, no
  dependency), so one browser can talk to every process.
- :class:`LiveTab`: a tab's socket (the ``websockets`` client) that reconnects and
  catches up the way the browser client does, recording what it was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sessionwatch import CloseCode

from .processes import ManagedProcess

__all__ = [
    "ORIGIN",
    "AppProcess",
    "HttpBrowser",
    "LiveTab",
    "exchange",
    "next_of",
    "parse_response",
]

TESTS = Path(__file__).resolve().parents[1]
# The page origin every client sends: the one name the processes share behind a load
# balancer (each process listens on its own port). ``push_app`` allows only this one.
ORIGIN = "http://app.test"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
Server = Literal["uvicorn", "hypercorn"]


class AppProcess(ManagedProcess):
    """``support.push_app:app`` served by ``server`` in one process on a free port."""

    ready_path = "/_test/hub"

    def __init__(
        self,
        server: Server,
        redis_url: str,
        key_prefix: str,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.name = server
        super().__init__()
        self.server = server
        self.cwd = TESTS
        self.env.update(
            {
                "REDIS_URL": redis_url,
                "SESSIONWATCH_KEY_PREFIX": key_prefix,
                "PUSH_APP_OPTIONS": json.dumps(options or {}),
                "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        bind = ["--host", "127.0.0.1", "--port", str(self.port)]
        if server == "uvicorn":
            self.command = [
                *(sys.executable, "-m", "uvicorn", "support.push_app:app", *bind),
                *("--log-level", "warning", "--no-access-log", "--ws-max-size", "65536"),
            ]
        else:  # --workers 0: serve in this very process (its RSS is the server's)
            self.command = [
                *(sys.executable, "-m", "hypercorn", "support.push_app:app"),
                *("--bind", f"127.0.0.1:{self.port}", "--workers", "0"),
                *("--log-level", "warning"),
            ]

    async def hub(self) -> dict[str, Any]:
        status, body = await HttpBrowser().request("GET", self.url + "/_test/hub")
        assert status == 200
        return dict(body)


class HttpBrowser:
    """One browser's cookie jar; each request is one HTTP/1.1 connection to any process."""

    def __init__(self, user_agent: str = CHROME, *, origin: str = ORIGIN) -> None:
        self.user_agent = user_agent
        self.origin = origin
        self.cookies: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        """What the browser sends with a WebSocket handshake too."""
        headers = {"Origin": self.origin, "User-Agent": self.user_agent}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        *,
        form: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request; the answer's JSON (or text), cookies kept like a browser."""
        parts = urlsplit(url)
        if form is not None:
            payload, content_type = urlencode(form).encode(), "application/x-www-form-urlencoded"
        else:
            payload, content_type = (
                (b"", "") if body is None else (json.dumps(body).encode(), "application/json")
            )
        target = parts.path + (f"?{parts.query}" if parts.query else "")  # the query counts
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        all_headers = {**self.headers(), "Content-Length": str(len(payload)), **(headers or {})}
        if content_type:
            all_headers["Content-Type"] = content_type
        lines += [f"{name}: {value}" for name, value in all_headers.items()]
        raw = await exchange(str(parts.hostname), int(parts.port or 80), lines, payload)
        status, jar, answer = parse_response(raw)
        for key, value in jar.items():
            if value is None:
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = value
        return status, answer

    async def claim(self, process: AppProcess) -> dict[str, Any]:
        """``POST /claim`` (retrying while the backend is down: 503)."""
        for _ in range(200):
            status, body = await self.request("POST", process.url + "/_sessionwatch/claim", {})
            if status == 200:
                return dict(body)
            assert status == 503, (status, body)
            await asyncio.sleep(0.05)
        raise AssertionError("the backend did not come back")

    async def transfer(self, process: AppProcess, token: str) -> tuple[int, Any]:
        """The app's protected route, as tab ``token``."""
        return await self.request(
            "POST", process.url + "/transfer", {}, {"X-SessionWatch-Tab": token}
        )


async def exchange(host: str, port: int, lines: list[str], payload: bytes) -> bytes:
    """Send one request (its head ``lines`` and body) on a new connection and read the
    whole response until the server closes it (``Connection: close``)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def parse_response(raw: bytes) -> tuple[int, dict[str, str | None], Any]:
    """A whole HTTP/1.1 response: its status, its cookies (``None``: deleted) and its
    body as JSON (or text). Raises ``ValueError`` for something that is not one."""
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    jar: dict[str, str | None] = {}
    chunked = False
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.lower() == "set-cookie":
            cookie, _, attributes = value.strip().partition(";")
            key, _, cookie_value = cookie.partition("=")
            deleted = not cookie_value or "max-age=0" in attributes.lower()
            jar[key] = None if deleted else cookie_value
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        content = _dechunk(content)
    try:
        answer = json.loads(content) if content else None
    except ValueError:
        answer = content.decode("utf-8", "replace")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line!r}")
    return int(parts[1]), jar, answer


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


async def next_of(ws: Any, message_type: str, timeout: float = 10.0) -> dict[str, Any]:
    """Skip frames of ``ws`` until one of ``message_type`` arrives (bounded)."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == message_type:
                return message


async def open_socket(
    browser: HttpBrowser, process: AppProcess, *, deflate: bool = True
) -> ClientConnection:
    """A WebSocket to ``process`` with the browser's cookie and Origin, offering
    permessage-deflate as browsers do (unless ``deflate`` is false)."""
    return await connect(
        process.ws_url,
        additional_headers=browser.headers(),
        open_timeout=10,
        ping_interval=None,
        compression="deflate" if deflate else None,
    )


_RETRY_CODES = {1001, 1006, 1011, 1012, 1013, 4009, 4010, 4012, 4013, 4014}


class LiveTab:
    """A tab connected to one process: sends ``hello``, records what it is told, and
    reconnects (with catch-up) after closes the protocol says to retry."""

    def __init__(self, browser: HttpBrowser, process: AppProcess, token: str) -> None:
        self.browser = browser
        self.process = process
        self.token = token
        self.gen = int(token.split(".")[0])
        self.ready = 0  # times the server answered ready
        self.told = 0  # the highest superseded gen received
        self.connected = False
        self.connects = 0
        self.close_code: int | None = None  # the final one (the tab stopped)
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_until(self, predicate: Callable[[LiveTab], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _note(self, **changes: Any) -> None:
        async with self._changed:
            for name, value in changes.items():
                setattr(self, name, value)
            self._changed.notify_all()

    async def _run(self) -> None:
        delay = 0.05
        while True:
            code = await self._session()
            if code is not None and code not in _RETRY_CODES:
                await self._note(close_code=code)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _session(self) -> int | None:
        try:
            ws = await open_socket(self.browser, self.process)
        except InvalidStatus as exc:
            status = exc.response.status_code
            return None if status == 503 else status  # 401/403: stop
        except OSError:
            return None
        await self._note(connected=True, connects=self.connects + 1)
        try:
            await ws.send(json.dumps({"type": "hello", "v": 1, "tab": self.token}))
            async for raw in ws:
                message = json.loads(raw)
                self.messages.append(message)
                if message["type"] == "ready":
                    await self._note(ready=self.ready + 1)
                elif message["type"] == "superseded":
                    await self._note(told=max(self.told, message["gen"]))
        except ConnectionClosed:
            pass
        finally:
            await self._note(connected=False)
        return ws.close_code if ws.close_code is not None else int(CloseCode.GOING_AWAY)
