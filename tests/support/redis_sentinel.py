"""A real Sentinel monitoring a private ``redis-server``, for ``redis+sentinel://``."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from support.redis_server import RedisServer, free_port


@contextlib.contextmanager
def sentinel_url(service: str = "primary") -> Iterator[str]:
    """``redis+sentinel://127.0.0.1:port/service`` of a Sentinel (on a free loopback
    port) that monitors a private Redis; both are stopped on exit."""
    with RedisServer() as master:
        port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="sessionwatch-sentinel-"))
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
        )
        process = subprocess.Popen(
            [master.binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                probe = subprocess.run(
                    ["redis-cli", "-p", str(port), "sentinel", "get-master-addr-by-name", service],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if str(master.port) in probe.stdout:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("sentinel did not come up")
            yield f"redis+sentinel://127.0.0.1:{port}/{service}?db=0"
        finally:
            process.terminate()
            process.wait(timeout=10)
            shutil.rmtree(directory, ignore_errors=True)
