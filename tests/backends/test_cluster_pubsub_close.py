"""The Cluster's shard pub/sub never swallows the cancellation of its reader.

A cluster-backed app stopped right after it started could hang forever in
``Hub.stop`` (seen in 1-3 of 94 doors-agree cluster cases, one run in two): the hub's
reader was cancelled while the subscription opened and its cancellation was lost, so
it went on to wait for a message that never came, and ``Hub.stop`` waited for it. Two
ways it was lost: redis-py's ``NodesManager.initialize()`` returns normally when
cancelled at some points (5 of 80 cancellation points in one run), and a shard link's
close awaited its reader task under ``suppress(CancelledError)``.
"""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from sessionwatch.backends.base import Subscription
from sessionwatch.backends.cluster_pubsub import _Link
from sessionwatch.backends.redis_cluster import RedisClusterBackend
from support.redis_server import free_port

WAIT = 5.0


async def test_a_link_closed_by_a_cancelled_task_leaves_it_cancelled() -> None:
    """(A link has no reader task since issue 28: its protocol reads. Its close waits
    for the connection's return to the pool, which a cancellation must still end.)"""
    client = aioredis.Redis(host="127.0.0.1", port=free_port())  # never connects
    link = _Link("node", client)
    closing = asyncio.Event()
    release = asyncio.Event()

    class _SlowConnection:  # a connection that takes a moment to close
        async def disconnect(self, nowait: bool = False) -> None:
            closing.set()
            await release.wait()

    link.connection = _SlowConnection()
    closer = asyncio.create_task(link.aclose())  # the hub's reader, rebuilding
    await asyncio.wait_for(closing.wait(), WAIT)
    closer.cancel()  # Hub.stop cancels it meanwhile
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(closer, WAIT)
    assert closer.cancelled()
    await client.aclose()


async def _iterate(subscription: Subscription) -> None:
    async for _ in subscription:
        pass


async def test_an_iteration_cancelled_while_it_opens_ends_cancelled(
    redis_cluster: object, key_prefix: str
) -> None:
    """The hub's reader cancelled at every point of the subscription's opening (the
    slot map read, the first waits) ends cancelled, never running on."""
    backend = RedisClusterBackend(redis_cluster.url, key_prefix=key_prefix)  # type: ignore[attr-defined]
    await asyncio.wait_for(backend.connect(), WAIT * 6)
    lost = []
    try:
        for point in range(60):
            subscription = backend.subscription()
            reader = asyncio.create_task(_iterate(subscription))
            for _ in range(point):  # let the opening reach this point (a loop turn each)
                await asyncio.sleep(0)
            requested = reader.cancel()
            await asyncio.wait([reader], timeout=WAIT)
            if not reader.done() or (requested and not reader.cancelled()):
                lost.append(point)
                reader.cancel()
            await asyncio.wait_for(subscription.aclose(), WAIT)
            await asyncio.wait([reader], timeout=WAIT)
    finally:
        await asyncio.wait_for(backend.disconnect(), WAIT * 6)
    assert lost == []


async def test_a_health_check_answered_pong_keeps_the_shard_links(
    redis_cluster: object, key_prefix: str
) -> None:
    """On a RESP3 connection (redis-py 8's) Redis answers a subscribed client's PING with
    a plain PONG: the links took it for a broken stream and were rebuilt (every local
    tab resynced) after each 15 s of silence."""
    backend = RedisClusterBackend(redis_cluster.url, key_prefix=key_prefix)  # type: ignore[attr-defined]
    await asyncio.wait_for(backend.connect(), WAIT * 6)
    subscription = backend.subscription()
    subscription.health_interval = 0.2  # type: ignore[attr-defined]
    reader = asyncio.create_task(_iterate(subscription))
    try:
        await asyncio.wait_for(subscription.subscribe(f"{key_prefix}quiet"), WAIT)
        await asyncio.sleep(3.5)  # a look each second: a PING from the second look on
        assert subscription.reconnects == 0  # type: ignore[attr-defined]
        assert not reader.done()
    finally:
        reader.cancel()
        await asyncio.wait_for(subscription.aclose(), WAIT)
        await asyncio.wait([reader], timeout=WAIT)
        await asyncio.wait_for(backend.disconnect(), WAIT * 6)
