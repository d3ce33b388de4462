"""A WebSocket client that stops reading: a raw TCP socket with a receive buffer of a
few KB, so that what the server sends it piles up in the server's buffers, and its view
of the connection from the server's side (the kernel's TCP table)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from pathlib import Path

__all__ = ["PING", "client_frame", "established", "flood_pings", "open_unread"]

PING = 125  # bytes of each ping's payload (the most a control frame carries)


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame of at most 125 bytes (1: text, 9: ping)."""
    assert len(payload) <= 125
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def open_unread(
    port: int, path: str, headers: dict[str, str], *, source: str = "127.0.0.1"
) -> socket.socket:
    """Open a WebSocket to ``127.0.0.1:port`` from ``source`` with a 4 KB receive
    buffer (set before the connect: the window it offers stays small); returns the
    non-blocking socket once the server has answered 101."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Key: {key}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        async with asyncio.timeout(10):
            while b"\r\n\r\n" not in head:  # byte by byte: nothing after it is read
                head += await loop.sock_recv(sock, 1)
        assert head.startswith(b"HTTP/1.1 101"), head
    except BaseException:
        sock.close()
        raise
    return sock


async def flood_pings(sock: socket.socket, most: int) -> int:
    """Send up to ``most`` pings, each owed a pong the client will not read, until the
    server has taken none for half a second; returns how many were sent."""
    ping = client_frame(9, b"p" * PING)
    sent, rest = 0, b""  # rest: what is left of a ping sent in part
    blocked_since: float | None = None
    while sent < most or rest:
        data = rest or ping
        try:
            taken = sock.send(data)
        except BlockingIOError:
            now = time.monotonic()
            blocked_since = blocked_since or now
            if now - blocked_since > 0.5:
                break
            await asyncio.sleep(0.01)
            continue
        blocked_since = None
        rest = data[taken:]
        if not rest:
            sent += 1
    return sent


def established(port: int, peer: tuple[str, int]) -> bool:
    """Whether the server's end (local port ``port``) of the connection from ``peer``
    is still ESTABLISHED in the kernel's TCP table (``/proc/net/tcp``, IPv4: what
    ``ss -tn`` shows)."""
    local = f":{port:04X}"
    remote = socket.inet_aton(peer[0])[::-1].hex().upper() + f":{peer[1]:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(local) and fields[2] == remote:
            return fields[3] == "01"
    return False
