"""Start and stop the proxy demo's processes: ``sessionwatch serve``, the Flask and
Express upstreams and nginx (or Caddy), all on loopback, the proxy's configuration in a
temp dir."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Literal

from .caddy import caddy_config, caddy_environment, find_caddy
from .nginx import nginx_config

__all__ = ["EXPRESS_DIR", "PROXIES", "DemoError", "Proxy", "ProxyDemo", "free_port"]

Proxy = Literal["nginx", "caddy"]
PROXIES: tuple[Proxy, ...] = ("nginx", "caddy")

# The Express app lives with the JavaScript (client_js/examples/express), so that its
# node_modules stay out of the Python package; it exists in a checkout only.
EXPRESS_DIR = Path(__file__).resolve().parents[4] / "client_js" / "examples" / "express"


class DemoError(RuntimeError):
    """A part of the demo could not start; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise DemoError("nginx is not installed (Debian: apt-get install nginx-light)")
    return found


def express_ready() -> bool:
    """Whether the Express app and its npm dependencies are installed."""
    return (EXPRESS_DIR / "node_modules" / "express").is_dir() and shutil.which("node") is not None


class ProxyDemo:
    """The whole demo; a context manager.

    Args:
        backend: ``memory://`` (default; one worker) or a Redis URL.
        workers: ``sessionwatch serve`` workers.
        port: nginx's port for the Flask app (0: a free one).
        express_port: nginx's port for the Express app (0: a free one; ``None``: no
            Express app).
        plain: also serve each upstream through nginx *without* forward-auth, on a free
            port (``plain_urls``; for the benchmark).
        nginx_workers: nginx worker processes.
        env: extra environment of ``sessionwatch serve`` (``SESSIONWATCH_*``).
        proxy: ``nginx`` (``auth_request``) or ``caddy`` (``forward_auth``; the service
            runs with ``SESSIONWATCH_FORWARD_AUTH=caddy``).
    """

    def __init__(
        self,
        *,
        backend: str = "memory://",
        workers: int = 1,
        port: int = 0,
        express_port: int | None = 0,
        plain: bool = False,
        nginx_workers: int = 1,
        env: dict[str, str] | None = None,
        proxy: Proxy = "nginx",
    ) -> None:
        self.backend = backend
        self.workers = workers
        self.api_key = secrets.token_urlsafe(32)
        self.directory = Path(tempfile.mkdtemp(prefix="sessionwatch-proxy-demo-"))
        self.directory.chmod(0o755)  # nginx's workers (nobody when run as root) use it
        self.sessionwatch_port = free_port()
        self.upstream_ports = {"flask": free_port()}
        self.site_ports = {"flask": port or free_port()}
        if express_port is not None:
            self.upstream_ports["express"] = free_port()
            self.site_ports["express"] = express_port or free_port()
        self.plain_ports = {name: free_port() for name in self.upstream_ports} if plain else {}
        self.nginx_workers = nginx_workers
        self.proxy = proxy
        self.env = {"SESSIONWATCH_FORWARD_AUTH": proxy, **(env or {})}
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    @property
    def sessionwatch_url(self) -> str:
        return f"http://127.0.0.1:{self.sessionwatch_port}"

    @property
    def urls(self) -> dict[str, str]:
        """Each upstream's address through nginx with forward-auth."""
        return {name: f"http://127.0.0.1:{port}" for name, port in self.site_ports.items()}

    @property
    def plain_urls(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self.plain_ports.items()}

    def log(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None
    ) -> None:
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(  # noqa: S603 (our own commands)
                command,
                env={**os.environ, **env},
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((name, process))

    def _wait_ready(self, name: str, url: str, timeout: float = 30.0) -> None:
        process = dict(self.processes)[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DemoError(f"{name} exited with {process.returncode}; see {self.log(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 (loopback)
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)  # a readiness probe of a starting process
        raise DemoError(f"{name} was not ready within {timeout:.0f} s; see {self.log(name)}")

    def _spawn_nginx(self, nginx: str) -> None:
        config = nginx_config(
            self.directory,
            sessionwatch_port=self.sessionwatch_port,
            upstreams=self.upstream_ports,
            protected=self.site_ports,
            plain=self.plain_ports,
            workers=self.nginx_workers,
        )
        self._spawn(
            "nginx",
            [
                nginx,
                "-c",
                str(config),
                "-p",
                str(self.directory),
                "-e",
                str(self.log("nginx-error")),
            ],
            {},
        )

    def _spawn_caddy(self, caddy: str) -> None:
        config = caddy_config(
            self.directory,
            sessionwatch_port=self.sessionwatch_port,
            upstreams=self.upstream_ports,
            protected=self.site_ports,
            plain=self.plain_ports,
        )
        self._spawn(
            "caddy",
            [caddy, "run", "--config", str(config), "--adapter", "caddyfile"],
            caddy_environment(self.directory),
        )

    def start(self) -> ProxyDemo:
        """Start every part and wait until the proxy serves each site."""
        proxy_binary = find_caddy() if self.proxy == "caddy" else find_nginx()
        if proxy_binary is None:
            raise DemoError("caddy is not installed (Debian: apt-get install caddy)")
        if "express" in self.upstream_ports and not express_ready():
            raise DemoError(
                f"the Express app is not installed: (cd {EXPRESS_DIR} && npm ci), "
                "or run without it (--no-express)"
            )
        try:
            self._spawn(
                "sessionwatch",
                [
                    sys.executable,
                    "-m",
                    "sessionwatch",
                    "serve",
                    "--port",
                    str(self.sessionwatch_port),
                    "--workers",
                    str(self.workers),
                    "--backend",
                    self.backend,
                    "--no-metrics",
                ],
                {
                    # A key of this run's own: a demo never signs with the
                    # environment's (perhaps production) SECRET_KEY.
                    "SECRET_KEY": secrets.token_urlsafe(32),
                    "SESSIONWATCH_API_KEYS": self.api_key,
                    "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
                    **self.env,
                },
            )
            upstream_env = {
                "SESSIONWATCH_URL": self.sessionwatch_url,
                "SESSIONWATCH_API_KEY": self.api_key,
            }
            if self.env.get("SESSIONWATCH_OIDC_ISSUER"):  # the service signs in (docs/sso.md)
                upstream_env["SESSIONWATCH_SSO_LOGIN"] = "/_sessionwatch/oidc/login"
            self._spawn(
                "flask",
                [
                    sys.executable,
                    "-m",
                    "sessionwatch.demo.proxy.flask_app",
                    str(self.upstream_ports["flask"]),
                ],
                upstream_env,
            )
            if "express" in self.upstream_ports:
                self._spawn(
                    "express",
                    ["node", "app.js"],
                    {**upstream_env, "PORT": str(self.upstream_ports["express"])},
                    cwd=EXPRESS_DIR,
                )
            if self.proxy == "caddy":
                self._spawn_caddy(proxy_binary)
            else:
                self._spawn_nginx(proxy_binary)
            self._wait_ready("sessionwatch", self.sessionwatch_url + "/readyz")
            for name, port in self.upstream_ports.items():
                self._wait_ready(name, f"http://127.0.0.1:{port}/healthz")
            for name in self.site_ports:
                self._wait_ready(self.proxy, self.urls[name] + "/healthz")
        except BaseException:
            self.stop(keep_logs=True)  # the error names a log in the directory
            raise
        return self

    def stop(self, *, keep_logs: bool = False) -> None:
        """Stop every process (its whole group), newest first; then remove the run's
        directory (nginx's config, temp files and the logs) unless ``keep_logs``."""
        for _, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        if not keep_logs:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> ProxyDemo:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(keep_logs=error is not None)
