"""``redis+sentinel://`` finds the master through a real Sentinel."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.core.exceptions import ConfigurationError
from support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.multiprocess

TIMEOUTS = Timeouts(idle=60_000, absolute=120_000, refresh=1_000, tombstone=60_000)


@pytest.fixture(name="sentinel_url")
def _sentinel_url() -> Iterator[str]:
    with RedisServer() as master:
        port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="sessionwatch-sentinel-"))
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor primary 127.0.0.1 {master.port} 1\n"
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
                    [
                        "redis-cli",
                        "-p",
                        str(port),
                        "sentinel",
                        "get-master-addr-by-name",
                        "primary",
                    ],
                    capture_output=True,
                    text=True,
                )
                if str(master.port) in probe.stdout:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("sentinel did not come up")
            yield f"redis+sentinel://127.0.0.1:{port}/primary?db=0"
        finally:
            process.terminate()
            process.wait(timeout=10)


async def test_sentinel_url_reaches_the_master(sentinel_url: str) -> None:
    backend = backend_from_url(sentinel_url, key_prefix="sentinel-test:")
    await backend.connect()
    try:
        record = SessionRecord(
            id="p" * 22,
            user=None,
            created=1,
            seen=1,
            absolute_expiry=100_000,
            gen=0,
            tab_key="k" * 32,
            device={},
        )
        await backend.create(record, timeouts=TIMEOUTS, now=1)
        found = await backend.load(record.id, timeouts=TIMEOUTS, now=2, touch=False)
        assert found.record == record
    finally:
        await backend.disconnect()


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel:///primary",
        "redis+sentinel://127.0.0.1/primary",
        "redis+sentinel://127.0.0.1:26379/",
    ],
)
def test_malformed_sentinel_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        backend_from_url(url)
