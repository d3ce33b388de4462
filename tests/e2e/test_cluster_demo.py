"""The demo (``sessionwatch demo``) on the 6-node Redis Cluster, 2 workers, in real Chromium: the same banner
flows as on one Redis (test_banner.py), now through sharded pub/sub."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e import test_banner as banner
from support.redis_cluster import RedisCluster
from support.service_process import DemoProcess as ServiceProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="cluster_service")
def _cluster_service(redis_cluster: RedisCluster) -> Iterator[ServiceProcess]:
    with ServiceProcess(
        redis_cluster.url, workers=2, key_prefix=f"e2e:{uuid.uuid4().hex[:8]}:"
    ) as service:
        yield service


async def test_cluster_two_tabs_newest_wins_and_use_here_flips(
    browser: Any, cluster_service: ServiceProcess, tmp_path: Path
) -> None:
    await banner.test_two_tabs_newest_wins_and_use_here_flips(browser, cluster_service, tmp_path)


@pytest.mark.cluster_extended
async def test_cluster_new_sign_in_alert_and_revoke_from_the_sessions_list(
    browser: Any, cluster_service: ServiceProcess, tmp_path: Path
) -> None:
    await banner.test_new_sign_in_alert_and_revoke_from_the_sessions_list(
        browser, cluster_service, tmp_path
    )
