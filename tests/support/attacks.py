"""Clients for the security tests: raw HTTP with every header under the test's control
(duplicates, foreign origins, forwarded headers), and the sockets of the attacks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from .push_processes import _dechunk

__all__ = ["Answer", "open_ws", "raw_request", "sign_in_and_claim"]


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    cookies: dict[str, str] = field(default_factory=dict)  # Set-Cookie name -> raw line

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    timeout: float = 15.0,
    source: str | None = None,
    host: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> Answer:
    """One HTTP/1.1 request on its own connection; headers are sent exactly as given
    (duplicates included) after ``Host`` (``host``, else the server's address).
    ``source``: the loopback address to send from (127.0.0.0/8: each is another client
    address to the server); ``tls``: over HTTPS with this client context."""
    host = host or f"127.0.0.1:{port}"
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    lines.append(f"Content-Length: {len(body)}")
    local = (source, 0) if source else None
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, local_addr=local, ssl=tls), timeout
    )
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = []
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.append((name.strip(), value.strip()))
    answer = Answer(int(status_line.split()[1]), parsed, content)
    if answer.header("Transfer-Encoding") == "chunked":
        answer.body = _dechunk(content)
    for value in answer.all("Set-Cookie"):
        answer.cookies[value.split("=", 1)[0]] = value
    return answer


def cookie_value(set_cookie: str) -> str:
    """The value of a ``Set-Cookie`` line."""
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


async def sign_in_and_claim(
    port: int, user: str, origin: str, *, cookie_name: str = "session"
) -> tuple[str, str]:
    """Sign ``user`` in through the demo's form (``sessionwatch demo``) and claim a tab:
    (cookie, tab token)."""
    origin_header = [("Origin", origin)]
    answer = await raw_request(
        port,
        "POST",
        "/login",
        [*origin_header, ("Content-Type", "application/x-www-form-urlencoded")],
        f"username={user}&password=demo".encode(),
    )
    assert answer.status == 302, (answer.status, answer.body[:300])
    cookie = cookie_value(answer.cookies[cookie_name])
    claim = await raw_request(
        port,
        "POST",
        "/_sessionwatch/claim",
        [
            *origin_header,
            ("Cookie", f"{cookie_name}={cookie}"),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    )
    assert claim.status == 200, (claim.status, claim.body[:300])
    return cookie, claim.json()["tab"]


async def open_ws(
    port: int,
    cookie: str | None,
    origin: str,
    *,
    compression: str | None = None,
    cookie_name: str = "session",
    max_size: int | None = 2**20,
    source: str | None = None,
) -> ClientConnection:
    headers = {"Origin": origin}
    if cookie is not None:
        headers["Cookie"] = f"{cookie_name}={cookie}"
    return await connect(
        f"ws://127.0.0.1:{port}/_sessionwatch/ws",
        additional_headers=headers,
        open_timeout=10,
        close_timeout=5,
        ping_interval=None,
        compression=compression,
        max_size=max_size,
        local_addr=(source, 0) if source else None,
    )
