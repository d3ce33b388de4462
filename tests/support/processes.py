"""A server process for the tests: started on a free port, probed until ready, its
output in a log file, stopped with its whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .redis_server import free_port

__all__ = ["ManagedProcess", "run_module"]


class ManagedProcess:
    """Run ``command`` (set by subclasses) until :meth:`stop`.

    ``ready_path`` is requested until it answers 200; ``name`` labels errors and logs.
    """

    ready_path = "/"
    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        descriptor, log = tempfile.mkstemp(prefix=f"sessionwatch-{self.name}-", suffix=".log")
        os.close(descriptor)  # the child gets its own handle in start()
        self.log = Path(log)
        self.command: list[str] = []
        self.env: dict[str, str] = dict(os.environ)
        self.cwd: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/_sessionwatch/ws"

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a readiness probe, as for redis-server
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def rss_bytes(self) -> int:
        """The main process's resident memory."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise LookupError("no VmRSS")

    def children(self) -> list[int]:
        """Python processes whose parent is the main process (Linux /proc)."""
        assert self.process is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_text(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            if ppid == self.process.pid and "python" in cmdline:
                found.append(int(stat.parent.name))
        return found

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def run_module(module: str, *args: str, timeout: float = 140) -> subprocess.CompletedProcess[str]:
    """``python -m module args…`` from the repository root, its output captured; the
    assertion on failure shows the end of both streams."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done
