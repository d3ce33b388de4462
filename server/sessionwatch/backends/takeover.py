"""Connections that redis-py makes and our own protocols read.

redis-py's connection pool does everything a connection needs before its first command
(TCP or TLS, ``AUTH``/ACL users, ``SELECT``, the client name, Sentinel's primary
discovery, ``_CheckedPool``'s stale check). The hot paths — scripts (``multiplex.py``)
and the pub/sub reader (``subscription.py``) — then take the transport over: an
``asyncio.Protocol`` of ours receives the bytes and feeds them to hiredis' reader, with
no stream reader, no per-command pool checkout and no per-reply Python parsing in
between. The connection never goes back to the pool in use; :func:`give_back` closes it
and returns it, and the pool reconnects it before anyone uses it again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["ReplyProtocol", "give_back", "take_over"]


class ReplyProtocol(asyncio.Protocol):
    """What a taken-over connection receives, parsed by hiredis' reader (UTF-8, as the
    backend's ``decode_responses=True``; error replies arrive as ``hiredis.ReplyError``
    values) and handed to :meth:`replied` one reply at a time, then :meth:`read` once per
    read. :meth:`failed` hears a broken stream or the end of the connection."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(encoding="utf-8")

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.failed(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                break
            if not self.replied(reply):
                return
        self.read()

    def connection_lost(self, exc: Exception | None) -> None:
        self.failed(RedisConnectionError(f"Connection closed by server ({exc or 'EOF'})"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def replied(self, reply: Any) -> bool:
        """Take one reply; ``False`` stops reading (the connection failed)."""
        raise NotImplementedError

    def read(self) -> None:
        """Every complete reply of one read was handed on."""

    def failed(self, exc: RedisConnectionError) -> None:
        raise NotImplementedError


async def take_over(pool: Any, protocol: asyncio.Protocol) -> tuple[Any, asyncio.Transport]:
    """A connected, authenticated connection from ``pool`` whose bytes now go to
    ``protocol``; returns redis-py's connection object (for :func:`give_back`) and the
    transport to write to."""
    connection = await pool.get_connection()
    try:
        # redis-py (8.x) keeps the stream pair in ``_reader``/``_writer``; the
        # writer's transport is the socket, or the TLS layer over it. A reply left unread
        # would be attributed to our first command: refuse such a connection.
        transport = connection._writer.transport
        reader = connection._reader
        if reader is not None and reader._buffer:
            raise ConnectionError("a pooled Redis connection holds unread bytes")
        transport.set_protocol(protocol)
    except BaseException:
        await give_back(pool, connection)
        raise
    return connection, transport


async def give_back(pool: Any, connection: Any) -> None:
    """Close ``connection`` and return it to ``pool`` (which reconnects it on next use)."""
    try:
        await connection.disconnect(nowait=True)
    finally:
        await pool.release(connection)
