"""granian (a Rust HTTP server) for ``sessionwatch serve --server granian``.

Configured like the uvicorn server of the CLI where granian has the setting:

- the service app factory in every worker, one process per ``--workers``;
- HTTP/1.1 only (as uvicorn), with granian's own header-read timeout set to
  ``--header-timeout``;
- no access log; no protocol pings (granian sends none on HTTP/1.1 WebSockets);
- forwarded headers: granian reads none of them, and the service app applies
  ``--forwarded-allow-ips`` itself (:func:`sessionwatch.service.app.trust_proxies`), so
  the semantics are those of the other two servers;
- a worker that dies is started again (``respawn_failed_workers``; granian's default
  stops every worker instead); the same worker dying again within 5.5 s of its
  restart is a crash loop, and granian exits;
- **one listening socket for every worker, listening from granian's start to its
  shut-down** (:class:`_OneSocket`), as under uvicorn and hypercorn. granian (2.8.0 and
  later) gives each worker on Linux a socket of its own (``SO_REUSEPORT``), bound only
  once the worker has started (after its ASGI lifespan start-up, which waits up to
  1 s for Redis when Redis is down): whenever no worker was serving (the only serving
  one killed while another was still starting, or every worker restarting) the port
  refused connections, and a worker's death reset the connections queued on its
  socket. With the one socket, a connection waits in the backlog for the next worker
  (issue 23; ``tests/integration/test_worker_restart_outage.py``);
- SIGTERM: granian stops accepting, runs the ASGI lifespan shut-down (the hub closes its
  sockets) and waits for its workers.

Where it differs (the CLI offers it; uvicorn stays the default, see docs/deployment.md):

- **About 6x the memory of an idle tab** (148 KB against uvicorn's 24 at 1,000 tabs):
  granian's WebSocket library allocates a 128 KiB read buffer per connection up front
  (tungstenite's default), and granian offers no setting for it.

- **No frame bound before buffering.** granian (2.8.9 included) gives its WebSocket
  library (tungstenite) no configuration and has no setting of its own for it, so a
  frame of up to 16 MiB (a message of up to 64 MiB) is read whole before the service
  refuses it with 1009 (``max_frame`` is checked on the message the app receives): 8
  sockets x 15 MiB frames, 2 rounds, took a worker from 59 to 207 MB, 91 MB kept
  (granian 2.8.9). uvicorn and hypercorn refuse it as it arrives. The CLI therefore
  runs granian only when the operator says a proxy in front of it bounds frames
  (``--frames-bounded-by-proxy``, :func:`require_frame_bounding_proxy`); nginx, Caddy
  and Traefik do not (they pass an upgraded connection's bytes through).
- **No body deadline or per-address connection cap of the service's own**: granian's
  ``header_read_timeout`` and its idle handling close a trickled body (~4 s measured),
  but ``--body-timeout`` and the per-address count of connections are uvicorn's
  (:mod:`sessionwatch.service.servers`); the proxy bounds connections per client.
- **A** ``server: granian`` **header** on every answer (granian has no switch for it).
- **No second address**: ``--api-bind`` is refused (granian binds one socket).
- **No permessage-deflate**: granian never negotiates it, which is what the service wants.

``backpressure`` is raised from granian's default (1,024 per worker) because granian
counts it in open connections, and every idle tab holds one: at the default a worker
would stop accepting at its 1,025th tab. The hub's own socket limits apply instead.
"""

from __future__ import annotations

import logging
import socket
from importlib import metadata
from typing import Any

from ..core.exceptions import ConfigurationError
from .requirements import installed_version

__all__ = [
    "BACKPRESSURE",
    "GRANIAN_FLOOR",
    "check_granian",
    "granian_server",
    "require_frame_bounding_proxy",
]

# 2.7.0 added the ASGI denial response (a refused handshake's 503/403 with a body); the
# WebSocket teardown fixes of 2.7.1-2.7.8 (disconnect after a server close, cleanup on
# shut-down, disconnect before accept) and the fix of their ASGI WebSocket performance
# regression came with 2.8.1. tests/integration/test_granian_service.py passes with 2.8.1
# (and with 2.8.9). pyproject.toml's ``granian`` extra declares the same floor.
GRANIAN_FLOOR = (2, 8, 1)
# Connections a worker accepts at once (granian's backpressure counts connections):
# higher than any worker's sockets; the hub's max_sockets_* limits are the real bound.
BACKPRESSURE = 65_536
# uvicorn's default listen backlog (granian's is 1,024), for the same burst of reconnects.
BACKLOG = 2048


def check_granian() -> None:
    """Refuse a missing granian, or one older than :data:`GRANIAN_FLOOR`.

    Raises:
        ConfigurationError: with the command that installs a suitable version.
    """
    floor = ".".join(map(str, GRANIAN_FLOOR))
    version, numbers = installed_version(
        "granian", parts=3, install="pip install 'sessionwatch[granian]'"
    )
    if numbers < GRANIAN_FLOOR:
        raise ConfigurationError(
            f"granian {version} is too old: the service needs granian {floor} or newer; "
            f"pip install 'granian>={floor},<3'"
        )


def require_frame_bounding_proxy(acknowledged: bool) -> None:
    """Refuse granian unless the operator said that a proxy in front of it bounds
    WebSocket frames (granian buffers a whole frame, up to 16 MiB, before the service
    can refuse it).

    Raises:
        ConfigurationError: without the acknowledgement, naming the flag and the
            alternatives.
    """
    if not acknowledged:
        raise ConfigurationError(
            "--server granian cannot bound WebSocket frames before buffering them (a "
            "client can make a worker hold up to 16 MiB per socket): run it only behind "
            "a proxy that bounds frames and say so with --frames-bounded-by-proxy, or "
            "use --server uvicorn (docs/deployment.md)"
        )


def granian_server(
    target: str,
    *,
    host: str,
    port: int,
    workers: int,
    header_timeout: float,
    log_level: str,
) -> Any:
    """A granian server for the app factory ``target`` (``module:function``), not yet
    serving (call ``.serve()``; it returns when the server has shut down).

    Raises:
        ConfigurationError: granian is missing or too old (:func:`check_granian`).
    """
    check_granian()
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    level = log_level.lower()
    return _one_socket(Granian)(
        target,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with the lifespan: Quart's before/after_serving run
        factory=True,
        workers=workers,
        http=HTTPModes.http1,
        # header_read_timeout is in milliseconds; keep-alive stays on (as uvicorn).
        http1_settings=HTTP1Settings(header_read_timeout=max(1, round(header_timeout * 1000))),
        websockets=True,
        backlog=BACKLOG,
        backpressure=BACKPRESSURE,
        # A worker that died (killed, out of memory) is started again instead of
        # granian stopping the whole server; twice within 5.5 s still stops it.
        respawn_failed_workers=True,
        log_access=False,
        log_level=LogLevels(level) if level in LogLevels.__members__ else LogLevels.info,
    )


logger = logging.getLogger(__name__)


def _one_socket(server_class: Any) -> Any:
    """``server_class`` (granian's server) with one listening socket that the
    supervisor binds, listens on and keeps until its shut-down, and that every worker
    inherits: granian's own way on other systems and for a Unix socket, used here for
    TCP on Linux too (module docstring). granian's internals it relies on (2.8.0 to
    2.8.9): ``_init_shared_socket`` leaves ``_ssp`` (the address) for the workers to bind
    or ``_shd`` (a bound socket they share, ``_sso`` its Python handle that the
    supervisor keeps); anything else is left as granian made it, with a warning."""

    class _OneSocket(server_class):  # type: ignore[misc]
        def _init_shared_socket(self) -> None:
            super()._init_shared_socket()
            address = getattr(self, "_ssp", None)
            if self.bind_uds or getattr(self, "_shd", None) is not None:
                return  # already one socket for every worker
            if address is None or not hasattr(self, "_sso"):
                logger.warning(
                    "granian %s: unknown socket set-up, each worker listens on a socket "
                    "of its own (connections are refused while no worker serves)",
                    metadata.version("granian"),
                )
                return
            shared = address.build()  # bound (SO_REUSEPORT, as granian's own)
            listening = socket.socket(fileno=shared.get_fd())
            listening.set_inheritable(True)
            listening.listen(self.backlog)  # accepting now: queued until a worker takes them
            self._shd, self._sfd, self._ssp, self._sso = shared, shared.get_fd(), None, listening

    return _OneSocket
