"""The real service (``sessionwatch serve`` or the Procfile's command) as a subprocess."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .processes import ManagedProcess

__all__ = ["ServiceProcess", "procfile_command"]

ROOT = Path(__file__).resolve().parents[2]


def procfile_command() -> str:
    """The ``web:`` command of the Procfile."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:") :].strip()
    raise LookupError("Procfile has no web: line")


class ServiceProcess(ManagedProcess):
    """The demo service on a free port.

    Args:
        redis_url: the backend.
        workers: worker processes.
        env: extra environment (``SESSIONWATCH_*`` settings, …).
        procfile: run the Procfile's command through a shell instead of the CLI.
        key_prefix: a prefix of its own on the shared test Redis.
        args: more flags for ``sessionwatch serve`` (``--server hypercorn``, …).

    ``server`` is the ASGI server it runs (from ``--server``; uvicorn by default).
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
        self.env.update(
            {
                "SECRET_KEY": "e2e-secret-key-0123456789abcdef",
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
