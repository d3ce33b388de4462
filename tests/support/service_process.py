"""The real service (``sessionwatch serve`` or the Procfile's command) as a subprocess."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .redis_server import free_port

__all__ = ["ServiceProcess", "procfile_command"]

ROOT = Path(__file__).resolve().parents[2]


def procfile_command() -> str:
    """The ``web:`` command of the Procfile."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:") :].strip()
    raise LookupError("Procfile has no web: line")


class ServiceProcess:
    """Run the service on a free port until :meth:`stop`; its output goes to a log file.

    Args:
        redis_url: the backend.
        workers: worker processes.
        env: extra environment (``SESSIONWATCH_*`` settings, …).
        procfile: run the Procfile's command through a shell instead of the CLI.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        procfile: bool = False,
        key_prefix: str | None = None,
    ) -> None:
        self.port = free_port()
        self.workers = workers
        self.log = tempfile.NamedTemporaryFile(
            prefix="sessionwatch-service-", suffix=".log", delete=False
        )
        self.env = {
            **os.environ,
            "SECRET_KEY": "e2e-secret-key-0123456789abcdef",
            "REDIS_URL": redis_url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
        if key_prefix:
            self.env["SESSIONWATCH_KEY_PREFIX"] = key_prefix
        self.env.update(env or {})
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        if procfile:
            self.command = ["bash", "-c", "exec " + procfile_command()]
        else:
            self.command = [
                sys.executable,
                "-m",
                "sessionwatch",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--backend",
                redis_url,
            ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is None:
            return
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        self.process = None

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        Path(self.log.name).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"ServiceProcess({shlex.join(self.command)!r}, port={self.port})"
