"""Keep-alive HTTP/1.1 connections to a multi-worker service, each known to be held by
one worker process: a test can then send the same number of requests through every
worker (the kernel alone decides which worker accepts a new connection)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import psutil

from .processes import ManagedProcess

__all__ = ["KeepAlive", "connections_per_worker"]

_TIMEOUT = 15.0


@dataclass
class KeepAlive:
    """One open connection; :meth:`request` sends on it and reads one answer."""

    port: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker: int = 0  # the pid that accepted it
    local_port: int = field(init=False)

    def __post_init__(self) -> None:
        self.local_port = int(self.writer.get_extra_info("sockname")[1])

    async def request(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b""
    ) -> tuple[int, Any]:
        """One request on this connection; returns the status and the JSON body
        (``None`` when there is none)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), _TIMEOUT)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = await asyncio.wait_for(self.reader.readexactly(length), _TIMEOUT)
        return status, json.loads(data) if data else None

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def _holder(workers: list[int], server_port: int, client_port: int) -> int | None:
    for pid in workers:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == server_port and conn.raddr:
                if conn.raddr.port == client_port:
                    return pid
    return None


async def connections_per_worker(
    process: ManagedProcess, workers: int, per_worker: int, *, attempts: int = 200
) -> dict[int, list[KeepAlive]]:
    """``per_worker`` open connections held by each of the ``workers`` worker processes
    of ``process`` (opened until each holds that many, at most ``attempts``; the extra
    ones are closed). Children that accept nothing (a resource tracker) are left out.

    Raises AssertionError when the kernel gave a worker too few connections."""
    children = process.children()
    held: dict[int, list[KeepAlive]] = {pid: [] for pid in children}
    spare: list[KeepAlive] = []

    def ready() -> list[int]:
        return [pid for pid, conns in held.items() if len(conns) >= per_worker]

    try:
        for _ in range(attempts):
            if len(ready()) >= workers:
                break
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", process.port), _TIMEOUT
            )
            conn = KeepAlive(process.port, reader, writer)
            status, _ = await conn.request("GET", "/healthz", [])  # accepted by now
            assert status == 200, status
            pid = _holder(children, process.port, conn.local_port)
            assert pid is not None, "no worker holds the connection"
            conn.worker = pid
            (held[pid] if len(held[pid]) < per_worker else spare).append(conn)
        counts = {pid: len(conns) for pid, conns in held.items()}
        assert len(ready()) >= workers, counts
    except BaseException:
        for conn in [c for conns in held.values() for c in conns]:
            await conn.aclose()
        raise
    finally:
        for conn in spare:
            await conn.aclose()
    chosen = ready()[:workers]
    for conn in [c for pid, conns in held.items() if pid not in chosen for c in conns]:
        await conn.aclose()
    return {pid: held[pid] for pid in chosen}
