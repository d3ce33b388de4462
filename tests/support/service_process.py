"""The real service (``sessionwatch serve`` or the Procfile's command) and the demo
(``sessionwatch demo``) as subprocesses."""

from __future__ import annotations

import json
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from .attacks import raw_request
from .processes import ManagedProcess

__all__ = ["PROTECTED", "VERIFY_TAB", "DemoProcess", "ServiceProcess", "procfile_command"]

# A protected request as a proxy asks the service about it: ``/verify`` with nginx's
# headers for a GET (no origin rule, only the session and the tab decide); 204 passes.
VERIFY_TAB = "/_sessionwatch/verify?require=tab"
PROTECTED = {"X-Original-Method": "GET", "X-Original-URI": "/api/transfer"}

ROOT = Path(__file__).resolve().parents[2]


def procfile_command() -> str:
    """The ``web:`` command of the Procfile."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:") :].strip()
    raise LookupError("Procfile has no web: line")


class ServiceProcess(ManagedProcess):
    """The production service on a free port, its session API on (``api_key``).

    Args:
        redis_url: the backend.
        workers: worker processes.
        env: extra environment (``SESSIONWATCH_*`` settings, …).
        procfile: run the Procfile's command through a shell instead of the CLI.
        key_prefix: a prefix of its own on the shared test Redis.
        args: more flags for ``sessionwatch serve`` (``--server hypercorn``, …).

    ``server`` is the ASGI server it runs (from ``--server``; uvicorn by default).
    Users sign in through the session API (:meth:`sign_in`), as an upstream app does.
    """

    ready_path = "/readyz"
    name = "service"

    def __init__(
        self,
        redis_url: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        procfile: bool = False,
        key_prefix: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.workers = workers
        flags = args or []
        self.server = flags[flags.index("--server") + 1] if "--server" in flags else "uvicorn"
        self.api_key = secrets.token_urlsafe(32)
        self.env.update(
            {
                "SECRET_KEY": "e2e-secret-key-0123456789abcdef-0123456789",
                "SESSIONWATCH_API_KEYS": self.api_key,
                "REDIS_URL": redis_url,
                "PORT": str(self.port),
                "WEB_CONCURRENCY": str(workers),
                "LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
                # the CLI of this interpreter's environment, whatever PATH says
                "PATH": str(Path(sys.executable).parent) + ":" + self.env.get("PATH", ""),
            }
        )
        if key_prefix:
            self.env["SESSIONWATCH_KEY_PREFIX"] = key_prefix
        self.env.update(env or {})
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if procfile:
            self.command = ["bash", "-c", "exec " + procfile_command()]
        else:
            self.command = [
                *(sys.executable, "-m", "sessionwatch", "serve"),
                *("--port", str(self.port), "--workers", str(workers), "--backend", redis_url),
                *(args or []),
            ]

    async def api(
        self, path: str, body: dict[str, Any], *, source: str | None = None
    ) -> tuple[int, Any]:
        """``POST {url_prefix}/api/v1/{path}`` as an upstream app (server to server),
        from ``source`` (a loopback address; 127.0.0.1 by default)."""
        answer = await raw_request(
            self.port,
            "POST",
            "/_sessionwatch/api/v1/" + path,
            [("Authorization", f"Bearer {self.api_key}"), ("Content-Type", "application/json")],
            json.dumps(body).encode(),
            source=source,
        )
        return answer.status, answer.json()

    async def sign_in(self, cookies: dict[str, str], user: str, **fields: Any) -> tuple[int, Any]:
        """Sign the browser with cookie jar ``cookies`` in as ``user`` through the session
        API, as an upstream app after checking a password: the browser's cookie goes in
        the body, the answer's cookie into the jar. Returns the API's status and body."""
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items()) or None
        status, body = await self.api("login", {"user": user, "cookie": cookie, **fields})
        if status == 200:
            cookies[body["cookie"]["name"]] = body["cookie"]["value"]
        return status, body

    def worker_rss_mb(self) -> float:
        """The resident memory of the process serving requests, in MB: the largest
        child (a worker; hypercorn also starts a small resource tracker), else the
        main process (uvicorn serves one worker in it)."""
        pids = self.children() or [self.process.pid]  # type: ignore[union-attr]
        return max(_rss_mb(pid) for pid in pids)

    def __repr__(self) -> str:
        return f"ServiceProcess({shlex.join(self.command)!r}, port={self.port})"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise LookupError("no VmRSS")


class DemoProcess(ServiceProcess):
    """``sessionwatch demo`` on a free port: its sign-in form (any name, password
    ``demo``), pages and policy form; ``workers`` and ``backend`` as given."""

    name = "demo"

    def __init__(self, redis_url: str = "memory://", *, workers: int = 1, **options: Any) -> None:
        super().__init__(redis_url, workers=workers, **options)
        self.command = [
            *(sys.executable, "-m", "sessionwatch", "demo"),
            *("--port", str(self.port), "--workers", str(workers), "--backend", redis_url),
        ]
