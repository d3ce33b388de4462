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

Each link is made by redis-py's pool (TLS, ACL users) and taken over (``takeover.py``),
as the single-node reader does (``subscription.py``): hiredis parses what arrives and a
message goes to the hub's listener (``base.Listenable``) in the read that brought it,
without a reader task, a ``get_message`` call or a queue per message (issue 28: the
claim → push latency was ~1.5-2 times one Redis'). A silent link is pinged after
``health_interval`` seconds; no answer within ``reply_timeout`` breaks it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import hiredis
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
from .multiplex import pack
from .takeover import ReplyProtocol, give_back, take_over

__all__ = ["ClusterSubscription"]

logger = logging.getLogger("sessionwatch.backends.redis_cluster")

_T = TypeVar("_T")
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_HEALTH_INTERVAL = 15.0  # seconds of silence on a link, then a PING
_REPLY_TIMEOUT = 5.0  # seconds the PING's answer may take, then the link is lost


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


class _Feed(ReplyProtocol):
    """What one primary pushes on its shard pub/sub connection."""

    def __init__(self, owner: ClusterSubscription, link: _Link) -> None:
        super().__init__()
        self._owner = owner
        self._link = link

    def replied(self, reply: Any) -> bool:
        if self._link.transport is None:  # closed by us: nothing it says counts
            return False
        if reply == "PONG":  # RESP3's answer to a health check's PING (RESP2 sends a list)
            return True
        if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
            # MOVED (the slot moved before our SSUBSCRIBE), anything else: rebuild
            self._owner.broken(f"{self._link.name}: {reply!r}")
            return False
        kind = reply[0]
        if kind == "smessage":
            self._owner.received(reply[1], reply[2])
        elif kind == "ssubscribe":
            self._owner.confirmed(reply[1])
        elif kind == "sunsubscribe":
            return self._owner.dropped(self._link, reply[1])
        # the "pong" of a health check needs nothing
        return True

    def read(self) -> None:
        self._link.heard()

    def failed(self, exc: BaseException) -> None:
        if self._link.transport is not None:  # (closing it ourselves is no failure)
            self._owner.broken(f"{self._link.name}: {exc!r}")


class _Link:
    """The pub/sub connection to one primary, taken over from a client of that node."""

    def __init__(self, name: str, client: aioredis.Redis) -> None:
        self.name = name
        self.client = client
        self.connection: Any = None
        self.transport: asyncio.Transport | None = None
        self._heard_at = 0.0
        self._pinged_at: float | None = None
        self._health: asyncio.TimerHandle | None = None
        self.closed = False

    async def open(self, owner: ClusterSubscription) -> None:
        pool = self.client.connection_pool
        connection, transport = await take_over(pool, _Feed(owner, self))
        if self.closed:  # closed while it connected (a cancelled opening): not kept
            transport.abort()
            await give_back(pool, connection)
            raise _Broken("closed while connecting")
        self.connection, self.transport = connection, transport
        self.heard()
        self._health = asyncio.get_running_loop().call_later(1.0, self._check, owner)

    def send(self, *command: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(pack(*command))

    def heard(self) -> None:
        self._heard_at = asyncio.get_running_loop().time()
        self._pinged_at = None

    def _check(self, owner: ClusterSubscription) -> None:
        """Ping a silent link; a ping unanswered in time is a lost link."""
        now = asyncio.get_running_loop().time()
        if self._pinged_at is not None:
            if now - self._pinged_at > owner.reply_timeout:
                owner.broken(f"{self.name} did not answer a pub/sub health check")
                return
        elif now - self._heard_at > owner.health_interval:
            self._pinged_at = now
            self.send("PING")
        self._health = asyncio.get_running_loop().call_later(1.0, self._check, owner)

    async def aclose(self) -> None:
        self.closed = True
        if self._health is not None:
            self._health.cancel()
            self._health = None
        transport, self.transport = self.transport, None
        connection, self.connection = self.connection, None
        if transport is not None:
            transport.abort()
        if connection is not None:
            with contextlib.suppress(Exception):
                await _own_task(give_back(self.client.connection_pool, connection))
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
        # Messages for the iterator (when no listener takes them), and None: a wake-up.
        self._queue: asyncio.Queue[ChannelMessage | None] = asyncio.Queue()
        self._listener: Callable[[ChannelMessage], None] | None = None
        self._confirmations = Confirmations()
        self._broken: str | None = None
        self._sending = asyncio.Lock()
        self._closed = False
        self.confirm_timeout = 5.0
        self.health_interval = _HEALTH_INTERVAL
        self.reply_timeout = _REPLY_TIMEOUT
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
                self.broken(f"subscribe failed: {exc!r}")  # rebuild, resubscribe, resync
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
                link.send("SUNSUBSCRIBE", *group)

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
            if link is None:
                node = nodes[name]
                client = aioredis.Redis(host=node.host, port=int(node.port), **self._node_options)
                link = _Link(name, client)
                try:
                    await _own_task(link.open(self))
                except BaseException:
                    await link.aclose()
                    raise
                self._links[name] = link
            for same_slot in _by_slot(group):
                for physical in same_slot:
                    self._owner[physical] = name
                link.send("SSUBSCRIBE", *same_slot)

    # -- what the links' protocols call ---------------------------------------------------

    def received(self, channel: str, payload: str) -> None:
        logical = self._logical.get(channel)
        if logical is None:
            return  # unsubscribed meanwhile
        message = ChannelMessage(channel=logical, payload=payload)
        listener = self._listener
        if listener is None:
            self._queue.put_nowait(message)
            return
        try:
            listener(message)
        except Exception:  # the reader must go on whatever one message does
            logger.exception("pub/sub listener failed on a message of %s", logical)

    def listen(self, listener: Callable[[ChannelMessage], None]) -> None:
        """Hand every message to ``listener`` as it is read (``base.Listenable``); the
        iterator then yields only resync markers. Messages already queued go first."""
        queued = []
        while not self._queue.empty():
            queued.append(self._queue.get_nowait())
        for message in queued:
            if message is None:
                self._queue.put_nowait(None)
            else:
                listener(message)
        self._listener = listener

    def confirmed(self, channel: str) -> None:
        self._confirmations.confirm(channel)

    def dropped(self, link: _Link, channel: str) -> bool:
        """An ``sunsubscribe``: ours, or pushed by the server (the node no longer owns
        the slot: rebuild). Returns whether the link reads on."""
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
            if not self._leaving[channel]:
                del self._leaving[channel]
        elif self._owner.get(channel) == link.name:
            self.broken(f"{link.name} dropped shard channel {channel} (slot moved)")
            return False
        return True

    def broken(self, why: str) -> None:
        if self._broken is None and not self._closed:
            self._broken = why
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
        self._queue.put_nowait(None)  # an iteration waiting for a message ends
        await self._teardown()


def _by_slot(channels: Iterable[str]) -> list[list[str]]:
    """Channels grouped by hash slot (one ``SSUBSCRIBE`` may not cross slots)."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())
