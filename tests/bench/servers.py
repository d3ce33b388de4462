"""Server processes under test: start, wait until every worker serves, measure, stop.

Every server runs in its own process group on a free loopback port with logs in a
temporary directory. Worker processes are found through files each worker creates at
start-up: the Prometheus multi-process files of the sessionwatch service (metrics are
on in its production configuration) or a ``ready-<pid>`` file written by the benchmark's
own apps. Only processes started here are ever signalled.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from tests.support.redis_server import free_port

__all__ = [
    "PEERS",
    "REPO",
    "SECRET",
    "Server",
    "overhead_server",
    "peer_server",
    "peer_versions",
    "sessionwatch_server",
    "socketio_server",
]

REPO = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123456789abcdef"
# The session API key of the service under test: the benchmark signs users in through
# the session API, as an upstream app does (the service has no sign-in of its own).
API_KEY = "benchmark-session-api-key-0123456789abcdef"
_PID_IN_NAME = re.compile(r"(\d+)(?:\.db)?$")


@dataclass
class Server:
    """One server (a supervisor process and its workers)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workers: int
    health_path: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="swbench-")))

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def ready_dir(self) -> Path:
        return self.directory / "ready"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def start(self, timeout: float = 60.0) -> None:
        if self.ready_dir.exists():
            shutil.rmtree(self.ready_dir)
        self.ready_dir.mkdir(parents=True)
        argv = [a.replace("{port}", str(self.port)) for a in self.argv]
        env = {
            **os.environ,
            **self.env,
            "PROMETHEUS_MULTIPROC_DIR": str(self.ready_dir),
            "BENCH_READY_DIR": str(self.ready_dir),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_ready(timeout)

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            family = {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return []
        found = set()
        for entry in os.listdir(self.ready_dir):
            match = _PID_IN_NAME.search(entry)
            if match and int(match.group(1)) in family:
                found.add(int(match.group(1)))
        return sorted(found)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.host}:{self.port}{self.health_path}", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            if len(self.worker_pids()) >= self.workers and self._healthy():
                time.sleep(0.5)  # the last worker may still be finishing its start-up hooks
                return
            time.sleep(0.1)
        tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready on port {self.port}:\n{tail}")

    def rss(self) -> int:
        """Resident memory of the worker processes, in bytes."""
        total = 0
        for pid in self.worker_pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def fds(self) -> dict[int, int]:
        """Open file descriptors per worker (sockets included)."""
        out = {}
        for pid in self.worker_pids():
            try:
                out[pid] = psutil.Process(pid).num_fds()
            except psutil.NoSuchProcess:
                pass
        return out

    def cpu_seconds(self) -> float:
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """The workers' CPU seconds so far: in user mode (the interpreter, the event loop,
        parsers) and in the kernel (system calls: epoll, reads, writes on loopback)."""
        user = system = 0.0
        for pid in self.worker_pids():
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            user += times.user
            system += times.system
        return user, system

    def stop(self, timeout: float = 20.0) -> float:
        """SIGTERM (graceful), SIGKILL to the group after ``timeout``; returns seconds."""
        started = time.monotonic()
        process, self.process = self.process, None
        if process is None:
            return 0.0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # leftover workers of this group only
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.wait(5)
        return time.monotonic() - started

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def sessionwatch_server(
    redis_url: str,
    *,
    workers: int = 2,
    server: str = "uvicorn",
    deflate: bool = False,
    factory: str | None = None,
    ws: str | None = None,
) -> Server:
    """The service in its production configuration (``sessionwatch serve``). uvicorn
    with permessage-deflate on, another app ``factory`` (``module:function``, to
    measure a candidate change of the service without editing it) or another WebSocket
    implementation ``ws`` (uvicorn's ``--ws``: ``websockets-sansio``, its own protocol
    the service's is derived from, ``wsproto`` or ``websockets``) is started directly
    with otherwise the CLI's options."""
    env = {
        "SECRET_KEY": SECRET,
        "SESSIONWATCH_API_KEYS": API_KEY,
        "LOG_LEVEL": "warning",
        "SESSIONWATCH_BACKEND": redis_url,
        **ONE_ADDRESS_LOAD,
    }
    if server == "uvicorn" and (deflate or factory or ws):
        argv = _uvicorn_app(
            factory or "sessionwatch.service.app:create_service_app",
            workers,
            deflate,
            ws or SERVICE_WS,
        )
        env["SESSIONWATCH_SERVICE_METRICS"] = "1"
    else:
        argv = [
            sys.executable, "-m", "sessionwatch", "serve", "--host", "127.0.0.1",
            "--port", "{port}", "--workers", str(workers), "--backend", redis_url,
            "--server", server,
        ]  # fmt: skip
        if server == "granian":  # the benchmark's client is the proxy that bounds frames
            argv.append("--frames-bounded-by-proxy")
    label = f"sessionwatch/{server}{'+deflate' if deflate else ''}/{workers}w"
    if factory:
        label += f" ({factory})"
    if ws:
        label += f" (--ws {ws})"
    return Server(label, argv, env, workers, "/readyz")


# Every simulated tab comes from the load generator's one address: the per-address abuse
# limits (docs/security.md) would refuse them, so the benchmarks lift them.
ONE_ADDRESS_LOAD = {
    "SESSIONWATCH_MAX_SOCKETS_PER_ADDRESS": "1000000",
    "SESSIONWATCH_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "SESSIONWATCH_MAX_NEW_SESSIONS_PER_SECOND": "1000000",
    "SESSIONWATCH_MAX_HELLOS_PER_SECOND": "1000000",
    # The fan-out signs one user in 101 times at once through the session API, and
    # keeps the 101 sessions (at the ceiling of 100 the oldest was evicted: 99 of its
    # 100 tabs connected and were told).
    "SESSIONWATCH_MAX_LOGINS_PER_USER_PER_SECOND": "1000000",
    "SESSIONWATCH_MAX_LOGINS_PER_ADDRESS_PER_SECOND": "1000000",
    "SESSIONWATCH_MAX_SESSIONS_PER_USER": "1000",
}


# The service's WebSocket protocol (as the CLI sets it); the comparison apps run on
# uvicorn's own.
SERVICE_WS = "sessionwatch.service.servers:LeanWebSocketProtocol"


def _uvicorn_app(
    factory: str, workers: int, deflate: bool = False, ws: str = "websockets-sansio"
) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--host", "127.0.0.1",
        "--port", "{port}", "--workers", str(workers), "--ws", ws,
        "--ws-per-message-deflate", "true" if deflate else "false", "--no-proxy-headers",
        "--no-access-log", "--log-level", "warning",
        # As the CLI: no protocol pings (0 disables them); both apps have a heartbeat.
        "--ws-ping-interval", "0",
    ]  # fmt: skip


def socketio_server(redis_url: str, *, workers: int = 2, deflate: bool = False) -> Server:
    """The python-socketio + AsyncRedisManager comparison (same uvicorn options)."""
    env = {"SECRET_KEY": SECRET, "BENCH_REDIS_URL": redis_url}
    argv = _uvicorn_app("tests.bench.socketio_app:create_app", workers, deflate)
    return Server(
        f"python-socketio/uvicorn{'+deflate' if deflate else ''}/{workers}w",
        argv,
        env,
        workers,
        "/healthz",
    )


def overhead_server(redis_url: str, app: str, *, workers: int) -> Server:
    """``app``: ``plain`` (Quart, its cookie session) or ``watch`` (sessionwatch)."""
    env = {"SECRET_KEY": SECRET, "SESSIONWATCH_BACKEND": redis_url, **ONE_ADDRESS_LOAD}
    factory = f"tests.bench.apps:create_{app}_app"
    return Server(f"{app}/{workers}w", _uvicorn_app(factory, workers), env, workers, "/healthz")


# The peers of sessionwatch in the takeover and memory scenarios, in the report's order
# (docs/performance.md, "Peers"): python-socketio, Node Socket.IO, Django Channels and
# the floor (a bare WebSocket forwarding a Redis PUBLISH).
PEERS = ("sio", "node", "channels", "floor")
NODE_PEER = REPO / "tests" / "bench" / "peers" / "socketio-node"


def peer_server(kind: str, redis_url: str, *, workers: int = 2) -> Server:
    """The server of one peer (``PEERS``), 2 worker processes like the service."""
    if kind == "sio":
        return socketio_server(redis_url, workers=workers)
    env = {"SECRET_KEY": SECRET, "BENCH_REDIS_URL": redis_url}
    if kind == "node":
        ensure_node_peer()
        env["BENCH_WORKERS"] = str(workers)
        argv = ["node", str(NODE_PEER / "server.js"), "{port}"]
        return Server(f"socket.io-node/cluster/{workers}w", argv, env, workers, "/healthz")
    if kind == "channels":
        argv = _uvicorn_app("tests.bench.peers.channels_app:create_app", workers)
        return Server(f"django-channels/uvicorn/{workers}w", argv, env, workers, "/healthz")
    if kind == "floor":
        argv = _uvicorn_app("tests.bench.peers.floor_app:create_app", workers)
        return Server(f"floor/uvicorn/{workers}w", argv, env, workers, "/healthz")
    raise ValueError(f"unknown peer {kind!r}")


def ensure_node_peer() -> None:
    """``npm ci`` in the Node peer's folder when its lock file changed since the last
    install (only the benchmark needs it, so the test suite's setup does not pay)."""
    lock = NODE_PEER / "package-lock.json"
    stamp = NODE_PEER / "node_modules" / ".sessionwatch-lock"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError(
            "the Node Socket.IO peer needs node and npm (apt-get install nodejs npm)"
        )
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_PEER,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(digest)


def peer_versions() -> dict[str, str | None]:
    """The peers' versions: the Node packages installed from the lock file and the
    Python ones installed in this environment."""
    import json
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("socket.io", "@socket.io/redis-adapter", "redis"):
        manifest = NODE_PEER / "node_modules" / name / "package.json"
        key = "node-redis" if name == "redis" else name
        out[key] = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    try:
        out["node"] = (
            subprocess.run(
                ["node", "--version"], capture_output=True, text=True, timeout=5, check=False
            ).stdout.strip()
            or None
        )
    except OSError:
        out["node"] = None
    for name in ("django", "channels", "channels_redis"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
