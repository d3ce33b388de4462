"""``sessionwatch serve``: run the production service under a production ASGI server;
``sessionwatch demo``: run the demo app (anyone signs in as anyone) on loopback;
``sessionwatch sessions list|revoke``: the admin tools (:mod:`.admin_cli`).
``sessionwatch audit tail|export``: read the audit trail (:mod:`.audit_cli`).

``serve`` takes its configuration from the environment (``SECRET_KEY``, ``PORT``,
``REDIS_URL``, ``SESSIONWATCH_*`` settings and policy); flags override it. Bad values end
the command with one line that names the key (exit 2), before any worker starts; so
does a missing or short ``SECRET_KEY``.

``demo`` signs with a key of its own (fresh each run, or ``DEMO_SECRET_KEY``; never
``SECRET_KEY``), uses ``memory://`` unless ``--backend`` says otherwise (never
``REDIS_URL``), and listens on a loopback address only unless
``--i-know-this-is-a-demo``.

uvicorn and hypercorn run with the limits of an exposed service
(:mod:`sessionwatch.service.servers`): WebSocket frames bounded by ``max_frame`` before
they are buffered, no permessage-deflate, no ``Server`` header, header and body read
deadlines, a cap on each client address's connections, and forwarded headers believed
only from the proxies named by ``--forwarded-allow-ips``. granian (optional,
``sessionwatch[granian]``) bounds neither frames nor connections per address, so it
runs only with ``--frames-bounded-by-proxy``; see
:mod:`sessionwatch.service.granian_server`.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import ipaddress
import logging
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Literal

from ..backends import backend_from_url
from ..core.config import parse_address, settings_from_env
from ..core.exceptions import BackendUnavailable, ConfigurationError
from ..core.policy import policy_from_env
from . import first_start
from .admin_cli import add_sessions_command, run_sessions
from .audit_cli import add_audit_parser, run_audit
from .granian_server import check_granian, granian_server, require_frame_bounding_proxy
from .listen_check import check_address_free
from .proxies import parse_proxies
from .requirements import installed_version

__all__ = ["main", "serve"]

logger = logging.getLogger(__name__)

APP_FACTORY = "sessionwatch.service.app:create_service_app"
HYPERCORN_APP_FACTORY = "sessionwatch.service.app:create_hypercorn_app"
DEMO_FACTORY = "sessionwatch.demo.app:create_demo_app"
DEMO_SECRET_ENV = "DEMO_SECRET_KEY"  # noqa: S105 (the name of a variable)
DEMO_ADMIN_ENV = "DEMO_ADMIN_PASSWORD"
DEMO_EXPOSE_FLAG = "--i-know-this-is-a-demo"
# What `sessionwatch` needs beyond the base install (the extension alone).
SERVICE_MODULES = ("uvicorn", "prometheus_client")
# uvicorn's websockets-sansio implementation (used below) arrived in 0.35; with 0.34 a
# worker fails on the first socket with KeyError. pyproject.toml declares the same floor.
UVICORN_FLOOR = (0, 35)
# Seconds a new uvicorn worker may take to start (SIGHUP restarts; docs/deployment.md).
WORKER_START_TIMEOUT = 30
ServerName = Literal["uvicorn", "hypercorn", "granian"]


def _port(value: str) -> int:
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {port}")
    return port


def _workers(value: str) -> int:
    try:
        workers = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 1 <= workers <= 64:
        raise argparse.ArgumentTypeError(f"workers must be between 1 and 64, got {workers}")
    return workers


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds, got {value}")
    return seconds


def _proxies(value: str) -> str:
    """Checked here so that a typo fails at start-up instead of silently trusting nobody
    (or everybody)."""
    try:
        parse_proxies(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return ",".join(item.strip() for item in value.split(",") if item.strip())


def _address(value: str) -> tuple[str, int]:
    found = parse_address(value)
    if found is None:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return found


def _default_port() -> int:
    raw = os.environ.get("PORT", "8000")
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"PORT: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    # Imported here: servers imports uvicorn, which a base install lacks (see main).
    from .servers import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT

    parser = argparse.ArgumentParser(
        prog="sessionwatch",
        description="sessionwatch serve runs the production service; sessionwatch demo runs "
        "the demo app (anyone signs in as anyone) on loopback; sessionwatch sessions lists "
        "and revokes users' sessions on the service's backend.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_cmd = commands.add_parser(
        "demo", help="run the demo app: anyone signs in as anyone (loopback only)"
    )
    demo_cmd.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    demo_cmd.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    demo_cmd.add_argument("--workers", type=_workers, default=1, help="worker processes")
    demo_cmd.add_argument("--backend", default="memory://", help="backend URL (default memory://)")
    demo_cmd.add_argument(
        DEMO_EXPOSE_FLAG,
        dest="expose",
        action="store_true",
        help="allow a --host that is not loopback (the demo has a universal password)",
    )
    serve_cmd = commands.add_parser(
        "serve", help="run the production service (forward-auth, session API, live push)"
    )
    serve_cmd.add_argument(
        "--host", default=os.environ.get("HOST", "127.0.0.1"), help="interface (default 127.0.0.1)"
    )
    serve_cmd.add_argument("--port", type=_port, default=None, help="port (default $PORT or 8000)")
    serve_cmd.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="worker processes (default $WEB_CONCURRENCY or 1)",
    )
    serve_cmd.add_argument(
        "--backend", default=None, help="backend URL (default $REDIS_URL, else memory://)"
    )
    serve_cmd.add_argument(
        "--server",
        choices=("uvicorn", "hypercorn", "granian"),
        default="uvicorn",
        help="ASGI server (default uvicorn; granian needs sessionwatch[granian])",
    )
    serve_cmd.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    serve_cmd.add_argument(
        "--metrics-token",
        default=None,
        help="require 'Authorization: Bearer <token>' for /metrics "
        "(prefer $SESSIONWATCH_SERVICE_METRICS_TOKEN: a flag shows in ps)",
    )
    serve_cmd.add_argument(
        "--readyz-detail",
        action="store_true",
        help="show the backend's error text in /readyz answers (internal hosts and ports)",
    )
    serve_cmd.add_argument(
        "--forwarded-allow-ips",
        type=_proxies,
        default=None,
        help="proxies whose X-Forwarded-Proto/-For are trusted (IPs or networks, "
        "comma-separated; default $FORWARDED_ALLOW_IPS, else none)",
    )
    serve_cmd.add_argument(
        "--header-timeout",
        type=_seconds,
        default=None,
        help=f"seconds a client has to send a request's headers (default {DEFAULT_HEADER_TIMEOUT:g})",
    )
    serve_cmd.add_argument(
        "--body-timeout",
        type=_seconds,
        default=None,
        help="seconds a client has to send a request's body after its headers "
        f"(uvicorn; default {DEFAULT_BODY_TIMEOUT:g})",
    )
    serve_cmd.add_argument(
        "--frames-bounded-by-proxy",
        action="store_true",
        help="run --server granian, which cannot bound WebSocket frames itself, because "
        "a proxy in front of it does (docs/deployment.md)",
    )
    serve_cmd.add_argument(
        "--api-bind",
        type=_address,
        default=None,
        metavar="HOST:PORT",
        help="also listen here, and answer the session API only here "
        "(default $SESSIONWATCH_API_ADDRESS; unset: the API answers on --host/--port)",
    )
    add_sessions_command(commands)
    add_audit_parser(commands)
    return parser


def _check_uvicorn() -> None:
    """Refuse an installed uvicorn older than :data:`UVICORN_FLOOR`."""
    version, numbers = installed_version(
        "uvicorn", parts=2, install="pip install 'sessionwatch[service]'"
    )
    if numbers < UVICORN_FLOOR:
        floor = ".".join(map(str, UVICORN_FLOOR))
        raise ConfigurationError(
            f"uvicorn {version} is too old: the service needs uvicorn {floor} or newer "
            f"(websockets-sansio); pip install 'uvicorn[standard]>={floor}'"
        )


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    backend: str | None,
    server: ServerName = "uvicorn",
    metrics: bool = True,
    metrics_token: str | None = None,
    readyz_detail: bool = False,
    forwarded_allow_ips: str | None = None,
    header_timeout: float | None = None,
    body_timeout: float | None = None,
    api_bind: tuple[str, int] | None = None,
    frames_bounded_by_proxy: bool = False,
    factory: str = APP_FACTORY,
    label: str = "sessionwatch service",
    choose_port_with: str = "--port (or PORT)",
) -> None:
    """Validate the configuration, prepare the environment the workers read, run
    ``factory`` (the production service unless the demo command says otherwise)."""
    from .servers import (
        BODY_TIMEOUT_ENV,
        DEFAULT_BODY_TIMEOUT,
        DEFAULT_HEADER_TIMEOUT,
        HEADER_TIMEOUT_ENV,
    )

    if header_timeout is None:
        header_timeout = DEFAULT_HEADER_TIMEOUT
    if body_timeout is None:
        body_timeout = DEFAULT_BODY_TIMEOUT
    if backend:
        os.environ["SESSIONWATCH_BACKEND"] = backend
    if api_bind is not None:
        os.environ["SESSIONWATCH_API_ADDRESS"] = _join(api_bind)
    settings = settings_from_env()  # raises ConfigurationError naming the key
    policy_from_env()  # the same for the policy's keys
    api_address = parse_address(settings.api_address) if settings.api_address else None
    if api_address is not None and api_address[1] == port:
        raise ConfigurationError("SESSIONWATCH_API_ADDRESS: must not be the service's own port")
    try:
        backend_from_url(settings.backend)  # parse only; workers connect
    except ConfigurationError as exc:
        # Named as the user gave it: the flag (exported above for the workers), the
        # variable, or REDIS_URL.
        if backend:
            source = "--backend"
        elif os.environ.get("SESSIONWATCH_BACKEND"):
            source = "SESSIONWATCH_BACKEND"
        else:
            source = "REDIS_URL"
        raise ConfigurationError(f"{source}: {exc}") from None
    if settings.backend.startswith("memory:") and workers > 1:
        raise ConfigurationError(
            "the memory:// backend lives in one process and cannot serve "
            f"{workers} workers; use --workers 1 or a Redis URL (--backend / REDIS_URL)"
        )
    if server == "uvicorn":
        _check_uvicorn()
    elif server == "granian":
        if api_address is not None:
            raise ConfigurationError(
                "SESSIONWATCH_API_ADDRESS: granian listens on one address only; "
                "use --server uvicorn or hypercorn for a separate session API address"
            )
        check_granian()
        require_frame_bounding_proxy(frames_bounded_by_proxy)
    check_address_free(host, port, choose_with=choose_port_with)
    if api_address is not None:
        check_address_free(*api_address, choose_with="--api-bind (or SESSIONWATCH_API_ADDRESS)")
    first_start.require_backend(settings.backend)  # workers never refuse (issue 23)
    os.environ["SESSIONWATCH_SERVICE_METRICS"] = "1" if metrics else "0"
    if metrics_token is not None:
        if len(metrics_token) < 16:
            raise ConfigurationError("--metrics-token: must be at least 16 characters long")
        os.environ["SESSIONWATCH_SERVICE_METRICS_TOKEN"] = metrics_token
    os.environ["SESSIONWATCH_SERVICE_READYZ_DETAIL"] = "1" if readyz_detail else "0"
    os.environ["SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips or ""
    os.environ[HEADER_TIMEOUT_ENV] = repr(header_timeout)
    os.environ[BODY_TIMEOUT_ENV] = repr(body_timeout)
    if metrics and workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sessionwatch-metrics-")
    print(
        f"{label} on http://{host}:{port} ({workers} worker(s), {server}, backend {settings.backend.split('@')[-1]})"
        + (f"; session API only on http://{_join(api_address)}" if api_address else ""),
        file=sys.stderr,
    )
    if server == "hypercorn":
        from hypercorn.config import Config

        from .hypercorn_server import run_hypercorn

        config = Config()
        config.application_path = (
            HYPERCORN_APP_FACTORY if factory == APP_FACTORY else factory
        ) + "()"
        # Both addresses get the same limits (one Config, one protocol stack).
        config.bind = [_join((host, port))] + ([_join(api_address)] if api_address else [])
        config.workers = workers
        config.accesslog = None
        config.include_server_header = False
        # Bounded as it arrives: a frame over max_frame closes 1009 before it is buffered.
        config.websocket_max_message_size = settings.max_frame
        # Hypercorn's idle timer runs until a request is complete: it is the header timeout.
        config.keep_alive_timeout = min(config.keep_alive_timeout, header_timeout)
        exit_code = run_hypercorn(config)  # restarts a dead worker (hypercorn's run stops)
        if exit_code:
            raise SystemExit(exit_code)
        return
    if server == "granian":
        granian_server(
            factory,
            host=host,
            port=port,
            workers=workers,
            header_timeout=header_timeout,
            log_level=os.environ.get("LOG_LEVEL", "info"),
        ).serve()
        return
    import uvicorn

    options = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http="sessionwatch.service.servers:BoundedHttpProtocol",
        # uvicorn's websockets-sansio protocol, holding ~8 KB less per idle socket
        # (docs/performance.md, finding 4).
        ws="sessionwatch.service.servers:LeanWebSocketProtocol",
        # Refused when the frame header arrives, before the payload is buffered (the
        # default 16 MiB let one client cost a worker ~15 MiB per socket).
        ws_max_size=settings.max_frame,
        ws_per_message_deflate=False,
        # No protocol pings: the tabs' own heartbeat (ping every heartbeat_interval,
        # closed 4014 when silent) already finds dead peers, and uvicorn's would double
        # an idle tab's cost (a timer and a frame each way every 20 s per socket).
        ws_ping_interval=None,
        ws_ping_timeout=None,
        proxy_headers=False,  # the service app applies --forwarded-allow-ips itself
        server_header=False,
        access_log=False,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
    )
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # SIGHUP starts each new worker and stops an old one once it is ready; uvicorn's
        # 5 s for that aborted restarts on a loaded machine and kept the old workers
        # (tests/integration/test_sighup_restart.py). Also how long a worker may take
        # to answer the supervisor's liveness ping.
        options["timeout_worker_healthcheck"] = WORKER_START_TIMEOUT
    _supervisor_sees_a_worker_die()
    if api_address is None:
        uvicorn.run(factory, **options)  # type: ignore[arg-type]
        return
    _run_uvicorn_on_two_addresses(uvicorn.Config(factory, **options), api_address)  # type: ignore[arg-type]


def _supervisor_sees_a_worker_die() -> None:
    """uvicorn's supervisor pings each worker over a pipe and waits up to
    ``timeout_worker_healthcheck`` (30 s here) for the answer; it kept the worker's end
    of the pipe open too, so a worker that died while its answer was awaited showed no
    end of file and was replaced only when the wait ran out (a 30 s gap seen in the
    outage test and the overlap soak; ``test_worker_restart_outage.py``). The end is
    the worker's alone once it has started: closed in the supervisor, a death is an end
    of file at once. Idempotent; an uvicorn without that pipe is left as it is."""
    from uvicorn.supervisors import multiprocess

    worker = multiprocess.Process
    if getattr(worker, "_sessionwatch_end_closed", False):
        return
    start = worker.start

    def start_and_close_the_workers_end(self: Any) -> None:
        start(self)
        workers_end = getattr(self, "child_conn", None)
        if workers_end is not None:
            workers_end.close()  # the started worker holds its own copy

    worker.start = start_and_close_the_workers_end  # type: ignore[method-assign]
    worker._sessionwatch_end_closed = True  # type: ignore[attr-defined]


def _join(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _run_uvicorn_on_two_addresses(config: Any, api_address: tuple[str, int]) -> None:
    """uvicorn.run() for one address, extended to the API's second one."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    family = socket.AF_INET6 if ":" in api_address[0] else socket.AF_INET
    api_socket = socket.socket(family, socket.SOCK_STREAM)
    api_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        api_socket.bind(api_address)
    except OSError as exc:
        raise ConfigurationError(
            f"SESSIONWATCH_API_ADDRESS: cannot bind {_join(api_address)}: {exc}"
        ) from None
    api_socket.set_inheritable(True)
    sockets = [config.bind_socket(), api_socket]
    if config.workers > 1:
        if "target" in inspect.signature(Multiprocess.__init__).parameters:  # older uvicorn
            Multiprocess(config, target=uvicorn.Server(config).run, sockets=sockets).run()  # type: ignore[call-arg]
        else:
            Multiprocess(config, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


def _forwarded_allow_ips(flag: str | None) -> str | None:
    if flag is not None:
        return flag
    raw = os.environ.get("FORWARDED_ALLOW_IPS", "").strip()
    if not raw:
        return None
    try:
        return _proxies(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"FORWARDED_ALLOW_IPS: {exc}") from None


def _seconds_from_env(key: str, default: float) -> float:
    raw = os.environ.get(key)
    if raw is None:
        return default
    try:
        return _seconds(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"{key}: {exc}") from None


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo(*, host: str, port: int, workers: int, backend: str, expose: bool) -> None:
    """Run the demo app (:mod:`sessionwatch.demo`) on ``host``: loopback unless
    ``expose``, a key of its own, ``backend`` (never ``REDIS_URL``)."""
    if not _loopback(host):
        if not expose:
            raise ConfigurationError(
                f"--host {host}: the demo lets anyone sign in as anyone (password demo), so it "
                f"listens on loopback only; add {DEMO_EXPOSE_FLAG} to serve it on {host} anyway"
            )
        print(
            f"\n*** WARNING: the demo listens on {host}: anyone who reaches it signs in as "
            "anyone with the password 'demo'. Never expose it to a network you do not own. ***\n",
            file=sys.stderr,
        )
    os.environ.pop("REDIS_URL", None)
    key = os.environ.get(DEMO_SECRET_ENV) or secrets.token_urlsafe(32)
    os.environ[DEMO_SECRET_ENV] = key  # one key for every worker, this run only
    admin_password = os.environ.get(DEMO_ADMIN_ENV) or secrets.token_urlsafe(12)
    os.environ[DEMO_ADMIN_ENV] = admin_password  # the admin page's, every worker's
    serve(
        host=host,
        port=port,
        workers=workers,
        backend=backend,
        metrics=False,
        factory=DEMO_FACTORY,
        # printed once the configuration is checked, before any worker starts
        label="sessionwatch demo (password 'demo' for any user name; admin page /admin, "
        f"password {admin_password}, ${DEMO_ADMIN_ENV} to choose it)",
        choose_port_with="--port",
    )


def missing_service_modules() -> list[str]:
    """The modules of the ``service`` extra that are not installed."""
    return [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sessionwatch`` and ``python -m sessionwatch``."""
    missing = missing_service_modules()
    if missing:
        print(
            f"sessionwatch: the command needs the service extra ({', '.join(missing)} not "
            "installed): pip install 'sessionwatch[service]'",
            file=sys.stderr,
        )
        return 2
    args = build_parser().parse_args(argv)
    try:
        if args.command == "sessions":
            return run_sessions(args)
        if args.command == "audit":
            return run_audit(args)
        if args.command == "demo":
            demo(
                host=args.host,
                port=args.port,
                workers=args.workers,
                backend=args.backend,
                expose=args.expose,
            )
            return 0
        from .app import check_secret_keys
        from .servers import (
            BODY_TIMEOUT_ENV,
            DEFAULT_BODY_TIMEOUT,
            DEFAULT_HEADER_TIMEOUT,
            HEADER_TIMEOUT_ENV,
        )

        check_secret_keys(os.environ)  # before any worker: one line, not a traceback each
        workers = args.workers
        if workers is None:
            raw = os.environ.get("WEB_CONCURRENCY", "1")
            try:
                workers = _workers(raw)
            except argparse.ArgumentTypeError as exc:
                raise ConfigurationError(f"WEB_CONCURRENCY: {exc}") from None
        serve(
            host=args.host,
            port=args.port or _default_port(),
            workers=workers,
            backend=args.backend,
            server=args.server,
            metrics=not args.no_metrics,
            metrics_token=args.metrics_token
            or os.environ.get("SESSIONWATCH_SERVICE_METRICS_TOKEN")
            or None,
            readyz_detail=args.readyz_detail,
            forwarded_allow_ips=_forwarded_allow_ips(args.forwarded_allow_ips),
            header_timeout=args.header_timeout
            or _seconds_from_env(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT),
            body_timeout=args.body_timeout
            or _seconds_from_env(BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT),
            api_bind=args.api_bind,
            frames_bounded_by_proxy=args.frames_bounded_by_proxy,
        )
    except ConfigurationError as exc:
        print(f"sessionwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"sessionwatch: cannot start: {exc}", file=sys.stderr)
        return 3
    return 0
