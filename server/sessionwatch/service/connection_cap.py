"""The per-address cap on a process's connections, shared by the servers of
``sessionwatch serve`` (:mod:`sessionwatch.service.servers`).

The hub counts WebSockets per client address, but a client that never upgrades — a
body trickled a byte at a time, or connections that sit idle — held connections
without limit (1,300 from one address, +23 MB). uvicorn (its HTTP protocol) and
hypercorn (its TCP server) count every connection of a peer address here, upgraded or
not, against ``max_connections_per_address`` (512: a tab's socket and its page loads,
for the ``max_sockets_per_address`` of 256 tabs); the one beyond is answered 429
``too_many_connections`` and closed before anything is read. A client that has
already sent its request may see the reset of that close before the answer.

Connections from a proxy named by ``--forwarded-allow-ips`` are not counted: they carry
many clients, whom the proxy bounds (the hub still counts their WebSockets by
``X-Forwarded-For``). ``--forwarded-allow-ips '*'`` trusts every peer, so nothing is
counted.
"""

from __future__ import annotations

import ipaddress
import json
import os
from functools import cache

from ..core.codes import Code
from ..core.config import settings_from_env
from ..core.limits import AddressCounts, address_key
from ..web.responses import error_fields
from .proxies import parse_proxies

__all__ = ["TOO_MANY_CONNECTIONS", "ConnectionCap", "connection_cap", "http_error"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConnectionCap:
    """The open connections of each peer address of one process, at most ``limit``.

    Args:
        limit: connections per address (``max_connections_per_address``).
        proxies: peers that are not counted (:func:`parse_proxies`; ``None``: every
            peer is a trusted proxy, nothing is counted).
    """

    __slots__ = ("counts", "proxies")

    def __init__(self, limit: int, proxies: tuple[Network, ...] | None = ()) -> None:
        self.counts = AddressCounts(limit)
        self.proxies = proxies

    def key(self, client: tuple[str, int] | None) -> str | None:
        """What a connection from ``client`` counts as; ``None``: not counted (no IP
        address, a Unix socket, a trusted proxy)."""
        if client is None or self.proxies is None:
            return None
        if self.proxies:
            try:
                peer = ipaddress.ip_address(client[0])
            except ValueError:
                return None
            if any(peer in network for network in self.proxies):
                return None
        return address_key(client[0])


@cache
def connection_cap() -> ConnectionCap:
    """This process's cap, from the environment the CLI prepares for its workers."""
    proxies = os.environ.get("SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS", "").strip()
    return ConnectionCap(
        settings_from_env().max_connections_per_address,
        parse_proxies(proxies) if proxies else (),
    )


def http_error(status: bytes, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error answer that closes the connection."""
    body = json.dumps(error_fields(code, message)).encode()
    head = [
        b"HTTP/1.1 " + status,
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"cache-control: no-store",
        b"connection: close",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


TOO_MANY_CONNECTIONS = http_error(
    b"429 Too Many Requests",
    Code.TOO_MANY_CONNECTIONS,
    "Too many open connections from your address. Try again shortly.",
)
