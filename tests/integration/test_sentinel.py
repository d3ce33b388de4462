"""``redis+sentinel://`` finds the master through a real Sentinel (the run's
``sentinel_url``; the backend contract suite also runs on it)."""

from __future__ import annotations

import pytest

from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.core.exceptions import ConfigurationError

pytestmark = pytest.mark.multiprocess

TIMEOUTS = Timeouts(idle=60_000, absolute=120_000, refresh=1_000, tombstone=60_000)


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
