"""A small, fast HTTP/1.1 keep-alive client on raw asyncio protocols.

aiohttp costs more CPU per request than the Quart handler it measures, and the load
generator shares the machine's two cores with the servers and Redis. This client sends
pre-built request bytes and parses only the status line and the headers it needs.
Every wait is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

__all__ = ["HttpError", "HttpPool", "Response", "build_request"]

_CRLF2 = b"\r\n\r\n"


class HttpError(Exception):
    """The connection failed or closed before a whole response arrived."""


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    sent_ns: int = 0  # perf_counter_ns() just before the request was written
    done_ns: int = 0  # perf_counter_ns() when the whole response was read

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def cookies(self) -> dict[str, str]:
        """``name -> value`` of every ``Set-Cookie`` (attributes dropped)."""
        jar = {}
        for key, value in self.headers:
            if key == "set-cookie":
                pair = value.split(";", 1)[0]
                name, _, val = pair.partition("=")
                jar[name.strip()] = val.strip()
        return jar


def build_request(
    method: str,
    path: str,
    host: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._head: tuple[int, list[tuple[str, str]], int] | None = None
        self._body_start = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._head is None:
            end = self._buffer.find(_CRLF2)
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            status = int(head[0][9:12])
            headers = []
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                value = value.strip()
                headers.append((name, value))
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    self._fail(HttpError("chunked responses are not supported"))
                    return
            self._head = (status, headers, length)
            self._body_start = end + 4
        status, headers, length = self._head
        if len(self._buffer) - self._body_start < length:
            return
        body = bytes(self._buffer[self._body_start : self._body_start + length])
        del self._buffer[: self._body_start + length]
        self._head = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, headers, body, done_ns=time.perf_counter_ns()))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def send(self, raw: bytes) -> tuple[asyncio.Future[Response], int]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        sent = time.perf_counter_ns()
        self.transport.write(raw)
        return self._waiter, sent


@dataclass
class HttpPool:
    """Up to ``size`` keep-alive connections to ``host:port``; reconnects lazily (the
    server closes idle keep-alive connections after a few seconds)."""

    host: str
    port: int
    size: int = 32
    timeout: float = 10.0
    _idle: list[_Connection] = field(default_factory=list)
    _open: int = 0
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port), self.timeout
        )
        return protocol

    async def _acquire(self) -> _Connection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open < self.size:
                self._open += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._open -= 1
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _release(self, conn: _Connection) -> None:
        if conn.closed:
            self._open -= 1
        else:
            self._idle.append(conn)
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break

    async def request(self, raw: bytes) -> Response:
        """Send ``raw`` on an idle connection and return the whole response."""
        conn = await self._acquire()
        try:
            future, sent = conn.send(raw)
            response = await asyncio.wait_for(future, self.timeout)
            response.sent_ns = sent
            return response
        except BaseException:
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
            raise
        finally:
            self._release(conn)

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        self._open = 0
