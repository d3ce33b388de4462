"""The service on a real 6-node Redis Cluster while primaries fail.

``sessionwatch serve`` (2 workers) on its own cluster. A primary is killed mid-traffic
(SIGKILL: its replica takes over after ``cluster-node-timeout``), then a replica of
another primary takes over by ``CLUSTER FAILOVER``. Throughout, a revoked session's
token and a superseded tab's token are tried again and again: neither may ever pass
(401/409, or 503 while the slot has no primary). After each failover the tab whose
shard channel moved to the new primary is told of the next claim, and ``/readyz``
recovers. Figures (outage as seen by ``/readyz``, statuses) are printed: run with ``-s``.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

import pytest
from redis.crc import key_slot

from integration.test_service_process import next_of, ready_socket, sign_in
from sessionwatch.core.tokens import user_tag
from support.push_processes import HttpBrowser
from support.redis_cluster import ClusterNode, RedisCluster
from support.redis_server import required
from support.service_process import PROTECTED, VERIFY_TAB, ServiceProcess

pytestmark = pytest.mark.multiprocess

WAIT = 30.0  # seconds; a failover takes ~3 s here (node timeout 1.5 s + election)
TRAFFIC_LIMIT = 2000  # requests per traffic loop, whatever the time


def user_on(cluster: RedisCluster, node: ClusterNode, taken: set[str]) -> str:
    """A user name whose slot (its sessions, index and channels) ``node`` serves."""
    slots = cluster.slot_map()
    for i in range(10_000):
        name = f"user{i}"
        if name not in taken and slots[key_slot(f"{{{user_tag(name)}}}".encode())] is node:
            taken.add(name)
            return name
    raise LookupError("no user name lands on that node")


async def ready_within(service: ServiceProcess, browser: HttpBrowser, seconds: float) -> float:
    """Poll ``/readyz`` (as an orchestrator would) until 200; returns the seconds taken."""
    started = time.monotonic()
    async with asyncio.timeout(seconds):
        while (await browser.request("GET", service.url + "/readyz"))[0] != 200:  # noqa: ASYNC110 (polling is what is measured)
            await asyncio.sleep(0.1)
    return time.monotonic() - started


class Tab:
    """One signed-in browser with one claimed tab and its live socket."""

    def __init__(self, service: ServiceProcess, user: str) -> None:
        self.service = service
        self.user = user
        self.browser = HttpBrowser(origin=service.url)
        self.claimed: dict[str, Any] = {}
        self.ws: Any = None

    async def open(self) -> Tab:
        await sign_in(self.browser, self.service, self.user)
        self.claimed = await self.browser.claim(self.service)
        self.ws = await ready_socket(self.browser, self.service, self.claimed["tab"])
        return self

    async def settled(self, token: str) -> int:
        """The protected route's answer once the slot has a primary again: right after a
        failover a command may still reach the demoted node (503, fail closed) until
        the client has re-read the slot map."""
        async with asyncio.timeout(WAIT):
            while (status := await self.transfer(token)) == 503:  # noqa: ASYNC110 (retrying a request)
                await asyncio.sleep(0.1)
        return status

    async def transfer(self, token: str) -> int:
        """A protected request as the proxy asks about it (forward-auth); 204 passes."""
        status, _ = await self.browser.request(
            "GET", self.service.url + VERIFY_TAB, None, {"X-SessionWatch-Tab": token, **PROTECTED}
        )
        return status


class StaleTraffic:
    """Tries dead tokens in a loop; any pass is a breach."""

    def __init__(self) -> None:
        self.dead: list[tuple[Tab, str]] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.breaches: list[tuple[str, int]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for _ in range(TRAFFIC_LIMIT):
            if self._stop.is_set():
                return
            for tab, token in list(self.dead):
                status = await tab.transfer(token)
                self.statuses[status] += 1
                if status not in (401, 409, 503):
                    self.breaches.append((token, status))
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, WAIT)


async def supersede_and_tell(tab: Tab, traffic: StaleTraffic) -> None:
    """A new claim from another tab of the same browser: the old tab's socket must be
    told (its channel's primary changed since it subscribed), its token must fail."""
    old = tab.claimed["tab"]
    newest = await tab.browser.claim(tab.service)
    traffic.dead.append((tab, old))
    told = await next_of(tab.ws, "superseded", WAIT)
    assert told["gen"] == newest["gen"]
    assert await tab.settled(newest["tab"]) == 204
    assert await tab.settled(old) == 409


async def test_primary_killed_and_manual_failover_mid_traffic() -> None:
    with (
        required(RedisCluster) as cluster,
        ServiceProcess(cluster.url, workers=2, key_prefix=f"fo:{uuid.uuid4().hex[:8]}:") as service,
    ):
        probe = HttpBrowser(origin=service.url)
        victim, other = cluster.primaries()[:2]
        taken: set[str] = set()
        killed_tab = await Tab(service, user_on(cluster, victim, taken)).open()
        moved_tab = await Tab(service, user_on(cluster, other, taken)).open()

        # A second session of the first user, revoked: its token is dead from now on.
        revoked = await Tab(service, killed_tab.user).open()
        status, body = await killed_tab.browser.request(
            "DELETE",
            f"{service.url}/_sessionwatch/sessions/{revoked.claimed['session']}",
            headers={"X-SessionWatch-Tab": killed_tab.claimed["tab"]},
        )
        assert (status, body) == (200, {"revoked": 1})
        assert (await next_of(revoked.ws, "revoked"))["type"] == "revoked"
        traffic = StaleTraffic()
        traffic.dead.append((revoked, revoked.claimed["tab"]))
        traffic.start()

        # 1. SIGKILL the primary of the first user's slot, mid-traffic — once its replica
        # holds what was written (asynchronous replication: a primary killed earlier
        # loses what its replica lacks, the documented not-guaranteed case; right after
        # the cluster's creation the replica has not even finished its first sync).
        await asyncio.to_thread(cluster.wait_replicated, victim, WAIT)
        victim.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.wait_ok, WAIT)
        promoted = time.monotonic() - killed_at
        recovered = await ready_within(service, probe, WAIT) + promoted
        assert cluster.node_for_key(f"{{{user_tag(killed_tab.user)}}}") is not victim
        await supersede_and_tell(killed_tab, traffic)

        # 2. CLUSTER FAILOVER on a replica of the second user's primary.
        replica = cluster.replicas_of(other)[0]
        await asyncio.to_thread(cluster.failover, replica, WAIT)
        assert cluster.node_for_key(f"{{{user_tag(moved_tab.user)}}}") is replica
        manual = await ready_within(service, probe, WAIT)
        await supersede_and_tell(moved_tab, traffic)

        await asyncio.sleep(0.5)  # a little more stale traffic on the new primaries
        await traffic.stop()
        for tab in (killed_tab, moved_tab, revoked):
            await tab.ws.close()
        print(
            f"\ncluster failover: replica promoted {promoted:.2f} s after the kill, "
            f"/readyz 200 again after {recovered:.2f} s; manual failover /readyz "
            f"{manual:.2f} s; stale-token statuses {dict(traffic.statuses)}"
        )
        assert traffic.breaches == []
        assert traffic.statuses[401] > 0  # the revoked token was tried throughout
