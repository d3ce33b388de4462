"""Sharded pub/sub on a Redis Cluster: the hub's subscription for ``redis+cluster://``.

A shard channel lives on the primary that owns its slot (``SSUBSCRIBE`` elsewhere is
answered ``MOVED``), so this keeps one pub/sub connection per primary that owns a
subscribed channel, each read by its own task into one queue. The channel names the
hub uses (``base.session_channel``/``user_channel``) are mapped to their hash-tagged
shard channels on the way in and back on the way out.

Following the cluster: a lost connection (a primary killed), an error reply (``MOVED``
after a slot moved) or an ``sunsubscribe`` the server pushed by itself (Redis drops the
shard subscribers of a slot a node no longer owns: a failover or a migration) each mark
the subscription broken. The iterator then re-reads the slot map, resubscribes every
channel on its current owner, waits until each is confirmed, and yields one
``ChannelMessage(resync=True)``: the hub re-checks its sockets, as after a reconnect on
one Redis, so a tab whose channel moved learns what it missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import ChannelMessage
from .confirmations import Confirmations
from .tasks import stop_task

__all__ = ["ClusterSubscription"]

logger = logging.getLogger("sessionwatch.backends.redis_cluster")

_T = TypeVar("_T")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_QUEUE_SIZE = 4096  # messages read ahead of the hub; then the readers wait (TCP backpressure)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a task left behind: its failure is not reported twice


async def _own_task(work: Awaitable[_T]) -> _T:
    """Await redis-py's ``work`` in a task of its own, so that a cancellation of the
    caller is always raised: redis-py's cluster code can swallow one
    (``NodesManager.initialize()`` cancelled at some points returns normally), which left
    the hub's reader running, and ``Hub.stop`` waiting for it forever."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait([task])
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise
    return task.result()


class _Broken(Exception):
    """The subscription no longer matches the cluster: rebuild it."""


class _Link:
    """The pub/sub connection to one primary."""

    def __init__(self, name: str, client: aioredis.Redis) -> None:
        self.name = name
        self.client = client
        self.pubsub: Any = client.pubsub()
        self.reader: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        reader = self.reader
        if reader is not None:
            # stop_task, never ``await reader`` under suppress(CancelledError): that
            # also swallowed the cancellation of the task closing us (the hub's reader
            # rebuilding when the hub stopped), which then ran on and waited forever.
            await stop_task(reader)  # a failed reader was already reported
        with contextlib.suppress(Exception):
            await _own_task(self.pubsub.aclose())
        with contextlib.suppress(Exception):
            await _own_task(self.client.aclose())


class ClusterSubscription:
    """One process's shard subscriptions across the primaries of a cluster.

    Same contract as :class:`~.subscription.RedisSubscription`: :meth:`subscribe` returns once
    the owner confirmed (or after ``confirm_timeout``, the rebuild then subscribes and
    yields a resync); iteration never ends until :meth:`aclose`.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        physical: Callable[[str], str],
        node_options: dict[str, Any],
        *,
        max_backoff: float = 5.0,
    ) -> None:
        self._cluster = cluster
        self._physical = physical
        self._node_options = {
            **node_options,
            "retry": Retry(NoBackoff(), 0),  # a lost link is a rebuild + resync, not hidden
            "health_check_interval": 15,
        }
        self._max_backoff = max_backoff
        self._channels: dict[str, str] = {}  # logical → shard channel
        self._logical: dict[str, str] = {}  # shard channel → logical
        self._owner: dict[str, str] = {}  # shard channel → node it is subscribed on
        self._links: dict[str, _Link] = {}
        self._leaving: collections.Counter[str] = collections.Counter()  # our sunsubscribes
        self._queue: asyncio.Queue[ChannelMessage | None] = asyncio.Queue(_QUEUE_SIZE)
        self._confirmations = Confirmations()
        self._broken: str | None = None
        self._sending = asyncio.Lock()
        self._closed = False
        self.confirm_timeout = 5.0
        self.connected = False
        self.reconnects = 0

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    def nodes(self) -> dict[str, int]:
        """Subscribed channels per primary (for tests and stats)."""
        return collections.Counter(self._owner.values())

    # -- subscribe / unsubscribe ---------------------------------------------------------

    async def subscribe(self, *channels: str) -> None:
        new = [c for c in channels if c not in self._channels]
        if not new:
            return
        shard = []
        for channel in new:
            physical = self._physical(channel)
            self._channels[channel] = physical
            self._logical[physical] = channel
            shard.append(physical)
        waiters = self._confirmations.expect(shard)
        try:
            if self.connected:
                await self._send(shard)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result
            # when a cancellation and the confirmation arrive together (the cancel lost).
            async with asyncio.timeout(self.confirm_timeout):
                await asyncio.gather(*waiters)
        except (TimeoutError, *_UNREACHABLE, RedisError, RedisClusterException) as exc:
            if self.connected:  # else the rebuild under way subscribes them
                self._break(f"subscribe failed: {exc!r}")  # rebuild, resubscribe, resync
        finally:
            self._confirmations.forget(shard, waiters)

    async def unsubscribe(self, *channels: str) -> None:
        gone = [self._channels.pop(c) for c in channels if c in self._channels]
        by_link: dict[str, list[str]] = {}
        for physical in gone:
            self._logical.pop(physical, None)
            owner = self._owner.pop(physical, None)
            if owner is not None:
                by_link.setdefault(owner, []).append(physical)
        if not self.connected:
            return
        for owner, physicals in by_link.items():
            link = self._links.get(owner)
            if link is None:
                continue
            for group in _by_slot(physicals):
                self._leaving.update(group)
                try:
                    await link.pubsub.sunsubscribe(*group)
                except (*_UNREACHABLE, RedisError) as exc:
                    self._break(f"sunsubscribe failed: {exc!r}")
                    return

    async def _send(self, physicals: Iterable[str]) -> None:
        """``SSUBSCRIBE`` on each channel's current owner, one command per slot. One
        call at a time: two first commands on a new pub/sub would open two connections
        (redis-py sets its connection on the first), orphaning one's subscriptions."""
        async with self._sending:
            await self._send_now(physicals)

    async def _send_now(self, physicals: Iterable[str]) -> None:
        if self._closed:  # closed while a rebuild was under way: open nothing more
            raise _Broken("closed")
        by_node: dict[str, list[str]] = {}
        nodes = {}
        for physical in physicals:
            node = self._cluster.get_node_from_key(physical)
            if node is None:  # pragma: no cover - only with replica=True
                raise RedisClusterException(f"no node serves {physical!r}")
            nodes[node.name] = node
            by_node.setdefault(node.name, []).append(physical)
        for name, group in by_node.items():
            link = self._links.get(name)
            fresh = link is None
            if link is None:
                node = nodes[name]
                client = aioredis.Redis(host=node.host, port=int(node.port), **self._node_options)
                link = self._links[name] = _Link(name, client)
            for same_slot in _by_slot(group):
                for physical in same_slot:
                    self._owner[physical] = name
                await _own_task(link.pubsub.ssubscribe(*same_slot))
            if fresh:
                link.reader = asyncio.create_task(
                    self._read(link), name=f"sessionwatch-ssub-{name}"
                )

    # -- reading ------------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        try:
            while True:
                message = await link.pubsub.get_message(timeout=1.0)  # runs health checks
                if message is None:
                    continue
                kind, channel = message["type"], message.get("channel")
                if kind == "smessage":
                    logical = self._logical.get(channel)
                    if logical is not None:
                        await self._queue.put(
                            ChannelMessage(channel=logical, payload=message["data"])
                        )
                elif kind == "ssubscribe":
                    self._confirmations.confirm(channel)
                elif kind == "sunsubscribe":
                    if self._leaving[channel] > 0:
                        self._leaving[channel] -= 1
                        if not self._leaving[channel]:
                            del self._leaving[channel]
                    elif self._owner.get(channel) == link.name:
                        # Pushed by the server: this node no longer owns the slot.
                        self._break(f"{link.name} dropped shard channel {channel} (slot moved)")
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # lost connection, MOVED, anything: rebuild
            self._break(f"{link.name}: {exc!r}")

    def _break(self, why: str) -> None:
        if self._broken is None and not self._closed:
            self._broken = why
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # wake the iterator

    async def _teardown(self) -> None:
        links, self._links = list(self._links.values()), {}
        self._owner.clear()
        self._leaving.clear()
        for link in links:
            await link.aclose()

    async def _open(self) -> None:
        """Fresh slot map, every channel subscribed on its owner and confirmed."""
        await self._teardown()
        self._broken = None
        await _own_task(self._cluster.nodes_manager.initialize())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        while True:
            wanted = set(self._logical)
            missing = wanted - set(self._owner)  # includes subscribe() calls meanwhile
            if not missing:
                break
            waiters = self._confirmations.expect(missing)
            await self._send(missing)
            try:
                async with asyncio.timeout_at(deadline):  # not wait_for: see subscribe
                    await asyncio.gather(*waiters)
            except TimeoutError:
                raise RedisTimeoutError(
                    f"{len(missing)} shard subscription(s) not confirmed"
                ) from None
            if self._broken is not None:
                raise _Broken(self._broken)
        self.connected = True

    async def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        attempt = 0  # failures since the last good connection
        while not self._closed:
            try:
                if not self.connected:
                    await self._open()
                    if attempt:
                        self.reconnects += 1
                        logger.warning(
                            "shard pub/sub rebuilt; %d channel(s) on %d node(s)",
                            len(self._owner),
                            len(self._links),
                        )
                        attempt = 0
                        yield ChannelMessage(channel="", payload="", resync=True)
                if self._broken is not None:
                    raise _Broken(self._broken)
                message = await self._queue.get()
                if self._broken is not None:
                    raise _Broken(self._broken)
                if message is not None:
                    yield message
            except (_Broken, *_UNREACHABLE, RedisError, RedisClusterException) as exc:
                if self._closed:
                    return
                self.connected = False
                delay = min(self._max_backoff, 0.05 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                attempt += 1
                logger.warning("shard pub/sub broken (%s); rebuilding in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def aclose(self) -> None:
        self._closed = True
        self.connected = False
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)  # an iteration waiting for a message ends
        await self._teardown()


def _by_slot(channels: Iterable[str]) -> list[list[str]]:
    """Channels grouped by hash slot (one ``SSUBSCRIBE`` may not cross slots)."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())
