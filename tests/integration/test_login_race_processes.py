"""The session limit under a login race: 20 browsers of one user sign in at once through
two server processes, with ``sessions_per_user=1``, on the 6-node Redis Cluster (one
Redis runs the same scripts in one step; the cluster adds the cross-slot login).

Each browser first holds an anonymous session (so on the cluster every login is the
cross-slot kind: the anonymous session's slot, then the user's). Exactly one session
may survive, whatever the interleaving.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from integration.test_live_push_processes import serving
from support.push_processes import HttpBrowser
from support.redis_cluster import RedisCluster

pytestmark = pytest.mark.multiprocess

BROWSERS = 20


@pytest.mark.parametrize(
    "on_limit", ["evict_oldest", pytest.param("deny", marks=pytest.mark.cluster_extended)]
)
async def test_twenty_simultaneous_logins_leave_exactly_one_session(
    on_limit: str, key_prefix: str, redis_cluster: RedisCluster
) -> None:
    url = redis_cluster.url
    policy = {"sessions_per_user": 1, "on_limit": on_limit}
    with serving(url, key_prefix, policy=policy) as processes:
        browsers = [HttpBrowser() for _ in range(BROWSERS)]
        for i, browser in enumerate(browsers):
            await browser.claim(processes[i % 2])  # an anonymous session first

        async def sign_in(i: int) -> tuple[int, Any]:
            return await browsers[i].request(
                "POST", processes[i % 2].url + "/login", {"user": "race"}
            )

        answers = await asyncio.wait_for(asyncio.gather(*(sign_in(i) for i in range(BROWSERS))), 60)
        statuses = sorted(status for status, _ in answers)
        live = []
        for i, browser in enumerate(browsers):
            status, body = await browser.request(
                "GET", processes[i % 2].url + "/_sessionwatch/state"
            )
            if status == 200 and body.get("user") == "race":
                live.append(i)
        if on_limit == "deny":
            assert statuses == [200] + [403] * (BROWSERS - 1)
            refused = [body for status, body in answers if status == 403]
            assert {body["error"] for body in refused} == {"session_limit_reached"}
        else:
            assert statuses == [200] * BROWSERS
            evicted = sum(len(body["evicted"]) for _, body in answers)
            assert evicted == BROWSERS - 1
        assert len(live) == 1, live
