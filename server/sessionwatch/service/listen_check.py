"""Whether the address the service will listen on is free, asked before any worker
starts: the servers' own refusal ("[Errno 98] ... address already in use", exit 3 after
the workers started) names no way out; this one names the flag that picks another port.
"""

from __future__ import annotations

import errno
import socket

from ..core.exceptions import ConfigurationError

__all__ = ["check_address_free"]


def check_address_free(host: str, port: int, *, choose_with: str) -> None:
    """Raise :class:`ConfigurationError` naming ``choose_with`` (e.g. ``--port (or PORT)``)
    when another program listens on ``host:port``. Other bind failures (an unknown host,
    an address not on this machine) are left to the server, which reports them itself.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As the servers bind: a connection of an earlier run in TIME_WAIT is no conflict.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    continue
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                raise ConfigurationError(
                    f"{shown} is already in use by another program: "
                    f"choose another port with {choose_with}"
                ) from None
