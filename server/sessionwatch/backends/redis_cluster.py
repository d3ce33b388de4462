"""The Redis Cluster backend (``redis+cluster://h:p,h:p/``, ``rediss+cluster://``).

The same scripts as :mod:`.redis`, with the cluster's names
(:class:`~.keys.ClusterKeyNames`): every key and channel of a call carries one hash tag,
so each script is one slot-local atomic step routed by its ``KEYS``. The tag of a session is its public id's tag — its
user's (:func:`~sessionwatch.core.tokens.user_tag`, minted into the id at login), or for an
anonymous session the id itself — so a user's sessions, index and channels share a slot
and the session limit stays one atomic script.
The names are listed in :mod:`.keys`.

Scripts run on one pipelined connection per primary (:mod:`.cluster_multiplex`: routed
by redis-py's slot map, ``MOVED`` and ``ASK`` followed with the call's first deadline, the
one-Redis multiplexer's failure semantics); other commands go through redis-py's cluster
client. A durable end (a script, its fence and ``WAIT`` on one node connection:
:mod:`.durable_ends`) follows ``MOVED``, ``ASK`` and ``TRYAGAIN`` itself
(:meth:`RedisClusterBackend._end_and_wait`). The presence refresh is one call per primary, and one script: a heartbeat's
batch of sockets of many users (many slots) would be one script per slot, each paying
the prelude, so the script declares the first key of its primary's batch and touches the
others undeclared (Redis allows a script without a shebang line keys of other slots its
node serves); a batch that meets a stale slot map is sent again one script per slot
(:meth:`RedisClusterBackend.set_presence`; docs/performance.md, issue 28).

Events travel by sharded pub/sub (``SPUBLISH`` inside the scripts, ``SSUBSCRIBE`` in
:class:`~.cluster_pubsub.ClusterSubscription`), so a message reaches only the shard that
owns its slot. The one step that crosses slots is a login whose old session lives in
another slot (anonymous, or another user's): the login script runs on the user's slot,
then ``rotate.lua`` retires the old session (nothing of its claim is carried over: the new
session has a new tab key and the caller's generation, as login.lua stores it on one
Redis, so a claim that raced the login cannot make an old tab token pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Literal, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import (
    AskError,
    MovedError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from ..core.codes import Code
from ..core.exceptions import BackendUnavailable, ConfigurationError, PendingLoginRefused
from ..core.limits import RateCheck
from ..core.paging import MAX_PAGE_SIZE
from ..core.tokens import slot_tag, user_tag
from ..core.trail import AuditSettings
from .base import PendingLogin, SessionRecord, Timeouts
from .cluster_multiplex import MAX_REDIRECTS, ClusterMultiplexer, Redirected
from .cluster_pubsub import ClusterSubscription
from .durable_ends import online_replicas
from .keys import ClusterKeyNames, Topology
from .multiplex import ScriptError
from .redis import (
    _SCRIPTS,
    _SOCKET_TIMEOUT,
    _UNREACHABLE,
    RedisBackend,
    _CheckedBlockingPool,
    _presence_argv,
    _script_source,
)
from .redis_trail import run_trail_script
from .tls_options import tls_options
from .user_scan import UserPage, decode_cursor, encode_cursor, scan_position, scan_users

__all__ = ["RedisClusterBackend", "cluster_from_url"]

_SCHEMES = ("redis+cluster", "rediss+cluster")
_MAX_CONNECTIONS = 64  # per node; also the calls in flight per process (see call())
_POOL_TIMEOUT = 5.0  # seconds a call waits for its turn, then 503 (as on one Redis)
# Connections of a primary's script multiplexer: one in use, and those retired after a
# timeout that still read their callers' replies (multiplex.py).
_SCRIPT_CONNECTIONS = 8
_SLOTS = 16384
# Seconds between two tries of a durable end Redis answered TRYAGAIN (a slot being
# migrated): a one-slot migration by redis-cli takes milliseconds to a second.
_TRY_AGAIN_PAUSE = 0.05


def cluster_from_url(url: str, **options: Any) -> tuple[RedisCluster, dict[str, Any]]:
    """A cluster client for ``redis+cluster://[user:password@]h:p,h:p/`` (TLS:
    ``rediss+cluster://…/?ssl_ca_certs=…``, see :mod:`.tls_options`), and the connection
    options a single node's client needs (for the pub/sub connections)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(f"not a Redis Cluster URL: scheme {parts.scheme!r}")
    nodes = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"cluster URL needs host:port start-up nodes, got {item!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ConfigurationError("a Redis Cluster has only database 0; drop the URL's path")
    node_options: dict[str, Any] = dict(options)
    if parts.username:
        node_options["username"] = unquote(parts.username)
    if parts.password:
        node_options["password"] = unquote(parts.password)
    if parts.scheme == "rediss+cluster":
        node_options["ssl"] = True
    node_options.update(tls_options(parts.query, tls=parts.scheme == "rediss+cluster"))
    client = RedisCluster(startup_nodes=nodes, max_connections=_MAX_CONNECTIONS, **node_options)
    return client, node_options


def _credentials_of(client: RedisCluster) -> dict[str, Any]:
    """The credentials and TLS options of an app's own cluster client, for the
    connections this backend opens itself (scripts, pub/sub): without them a client
    built with a password or TLS had every script and subscription refused."""
    given = client.get_connection_kwargs()
    accepted = inspect.signature(aioredis.Redis.__init__).parameters
    options = {
        name: value
        for name, value in given.items()
        if value is not None
        and name in accepted
        and (name in ("username", "password", "credential_provider") or name.startswith("ssl_"))
    }
    connection_class = given.get("connection_class")
    if isinstance(connection_class, type) and issubclass(connection_class, SSLConnection):
        options["ssl"] = True
    return options


def _in_users_slot(record: SessionRecord) -> None:
    """Refuse (changing nothing) a signed-in record whose id lacks its user's tag: its
    index and channel would land in another slot."""
    if record.user and slot_tag(record.id) != user_tag(record.user):
        raise ValueError(
            "on a Redis Cluster a user's session id must carry the user's tag: "
            "tokens.new_session_id(tokens.user_tag(user))"
        )


class RedisClusterBackend(RedisBackend):
    """Sessions on a Redis Cluster; the same contract as :class:`RedisBackend`.

    Args:
        url: ``redis+cluster://h:p,h:p/`` (any reachable nodes; the rest is discovered).
        key_prefix: prefix of every key and channel (no braces).
        client: an existing ``redis.asyncio.cluster.RedisCluster`` to use instead.
        durable_ends, durable_ends_timeout: as for :class:`RedisBackend`; an end waits
            for the replicas of the primary that owns its slot.
    """

    _TOPOLOGY: Topology = "cluster"
    _multiplexer: ClusterMultiplexer
    _SCRIPTS = (*_SCRIPTS, "rotate")
    # Seconds between a trail reader's idle reads (engine/hooks.py): a read of every
    # shard costs each primary ~10-90 ms of Redis time (docs/audit.md).
    audit_poll = 1.0

    def __init__(
        self,
        url: str = "redis+cluster://127.0.0.1:7000/",
        *,
        key_prefix: str = "sw:",
        client: RedisCluster | None = None,
        durable_ends: int | Literal["auto"] = "auto",
        durable_ends_timeout: float = 1.0,
        audit: AuditSettings | None = None,
    ) -> None:
        self.names: ClusterKeyNames = ClusterKeyNames(key_prefix)  # refuses a brace first
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        }
        if client is None:
            client, options = cluster_from_url(url, **options)
        else:
            options.update(_credentials_of(client))
        self._cluster = client
        self._node_options = options
        # redis-py's cluster pool fails at once ("Too many connections") when a node's
        # pool is exhausted; a burst waits for a turn instead, as BlockingConnectionPool
        # makes it on one Redis.
        self._turns = asyncio.Semaphore(_MAX_CONNECTIONS)
        self._shard_slots = {self.names.audit(slot): slot for slot in range(_SLOTS)}
        super().__init__(
            url,
            key_prefix=key_prefix,
            client=cast(aioredis.Redis, client),
            durable_ends=durable_ends,
            durable_ends_timeout=durable_ends_timeout,
            audit=audit,
        )
        # The scripts take no pooled connection: no turn to wait for.
        self._unpooled = frozenset((self._eval, self._multiplexer.evalsha, self._presence))

    def _script_runner(self) -> ClusterMultiplexer:
        return ClusterMultiplexer(self._cluster, self._script_pool, timeout=_SOCKET_TIMEOUT)

    def _script_pool(self, host: str, port: int) -> Any:
        """The connection pool of a primary's script multiplexer: the node options of
        the URL (credentials, TLS), connections checked before use as on one Redis."""
        pool = aioredis.Redis(host=host, port=port, **self._node_options).connection_pool
        return _CheckedBlockingPool(
            connection_class=pool.connection_class,
            max_connections=_SCRIPT_CONNECTIONS,
            timeout=_POOL_TIMEOUT,
            **pool.connection_kwargs,
        )

    async def call(self, function: Any, *args: Any) -> Any:
        pooled = function not in self._unpooled
        if pooled:
            try:
                async with asyncio.timeout(_POOL_TIMEOUT):
                    await self._turns.acquire()
            except TimeoutError:
                raise BackendUnavailable("Redis Cluster busy: no connection free in time") from None
        try:
            return await super().call(function, *args)
        except RedisClusterException as exc:  # no node answers, slots not covered
            self.deadline.forget()
            raise BackendUnavailable(f"Redis Cluster error: {exc}") from exc
        finally:
            if pooled:
                self._turns.release()

    async def _eval(
        self, name: str, keys: list[str], argv: list[Any], *, follow: bool = True
    ) -> Any:
        return await self._multiplexer.evalsha(_script_source(name), keys, argv, follow=follow)

    async def _end_and_wait(
        self,
        name: str,
        keys: list[str],
        argv: list[Any],
        replicas: int,
        ended: Callable[[Any], bool] | None,
    ) -> tuple[Any, int | None]:
        """Script ``name``, its fence and ``WAIT`` on one connection of the primary of
        ``keys``' slot, following the slot as the script multiplexer does
        (:mod:`.cluster_multiplex`): ``MOVED`` (the script did not run) patches the slot
        map and runs the three again on the new owner; ``ASK`` (a migration, the keys
        gone from the source) runs them on the importing node, ``ASKING`` before the
        script and before the fence; ``TRYAGAIN`` (a multi-key script on a slot being
        migrated: an importing node runs one only when it holds every key, and a
        session's scripts declare its channel, a key that never exists) is tried again
        from the slot map every ``_TRY_AGAIN_PAUSE`` until the slot has moved. At most
        ``MAX_REDIRECTS`` redirects in a row, and none followed or tried again after the
        call's deadline (``_SOCKET_TIMEOUT`` after its first send, the multiplexer's):
        then 503, the script having run nowhere. The script's arguments keep their
        first deadline in Redis' clock, so a send that starts too late is refused.
        Only a confirmed ``WAIT`` answers; a fence refused after the script ran is a
        503 (:class:`~.durable_ends.FenceFailed`), never sent again."""
        runner = self._multiplexer
        loop = asyncio.get_running_loop()
        node, deadline = await runner.start(keys[0])
        asking, redirects = False, 0
        while True:
            try:
                async with self._node_connection(node) as connection:
                    return await self._end_on(
                        connection, name, keys, argv, replicas, ended, asking=asking
                    )
            except TryAgainError:
                if loop.time() + _TRY_AGAIN_PAUSE >= deadline:
                    raise
                await asyncio.sleep(_TRY_AGAIN_PAUSE)
                node, asking, redirects = runner.node_of(keys[0]), False, 0
            except AskError as redirect:  # MovedError is one too
                await runner.learn(redirect, node)
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RedisClusterException(
                        f"Redis Cluster: more than {MAX_REDIRECTS} redirects"
                    ) from redirect
                if loop.time() >= deadline:
                    raise
                node, asking = runner.redirected_to(redirect, keys[0])

    @contextlib.asynccontextmanager
    async def _node_connection(self, node: ClusterNode) -> AsyncIterator[Any]:
        """A connection of ``node`` (redis-py's pool of it), for a script and its
        ``WAIT`` (the cluster client would not keep the two together). A node that
        cannot be reached (a failover) has the layout learnt now, as the cluster client
        does on its own commands, so a call sent again finds the promoted replica."""
        connection = node.acquire_connection()
        try:
            yield connection
        except _UNREACHABLE:
            with contextlib.suppress(RedisError, *_UNREACHABLE):
                await self._cluster.nodes_manager.initialize()
            raise
        finally:
            node.release(connection)

    # -- the trail's shards: one per slot (redis_trail.py) ---------------------------

    def audit_shards(self) -> list[str]:
        return list(self._shard_slots)

    def _record_id(self, shard: str, entry_id: str) -> str:
        return f"{entry_id}@{self._shard_slots[shard]}"

    def _shard_of(self, record_id: str) -> tuple[str, str]:
        entry_id, _, slot = record_id.partition("@")
        return self.names.audit(int(slot)), entry_id

    async def _per_node(
        self, shards: Sequence[str], argv: Callable[[Sequence[str]], list[Any]]
    ) -> list[tuple[str, Any]]:
        """One ``lua/trail.lua`` call per primary, on the shards of the slots it serves
        (a slot that moved meanwhile: the layout is learnt again and the call fails)."""
        manager = self._cluster.nodes_manager
        by_node: dict[str, tuple[Any, list[str]]] = {}
        for shard in shards:
            node = manager.get_node_from_slot(self._shard_slots[shard])
            by_node.setdefault(node.name, (node, []))[1].append(shard)

        async def one(node: Any, mine: list[str]) -> list[tuple[str, Any]]:
            try:
                reply = await run_trail_script(node.execute_command, mine, argv(mine))
            except (MovedError, AskError, ResponseError):
                with contextlib.suppress(RedisError, *_UNREACHABLE):
                    await manager.initialize()
                raise
            return [(mine[int(i) - 1], entries) for i, entries in reply]

        async def every() -> list[tuple[str, Any]]:
            replies = await asyncio.gather(*(one(*pair) for pair in by_node.values()))
            return [item for reply in replies for item in reply]

        found: list[tuple[str, Any]] = await self.call(every)
        return found

    def _audit_stream(self, keys: list[str]) -> str:
        """The trail's shard of the slot of ``keys`` (a script may write only there)."""
        return self.names.audit(self._cluster.keyslot(keys[0]))

    async def _connected_replicas(self) -> int:
        """The fewest online replicas of any primary (auto waits only when every slot's
        primary has one: an end must not fail for want of a replica it never had)."""
        replies = await self._cluster.info("replication", target_nodes=RedisCluster.PRIMARIES)
        per_node = (
            replies.values() if isinstance(replies, dict) and "role" not in replies else [replies]
        )
        return min((online_replicas(info) for info in per_node), default=0)

    def epoch_keys(self) -> list[str]:
        """One epoch key per primary, each in a slot that primary serves: a primary
        that lost its state (restarted without persistence) changes the epoch, as a
        ``FLUSHALL`` of one Redis does. After a failover the promoted replica serves the
        same slots and holds the same keys; a reshard may pick other keys, which reads
        as a lost state once (a harmless re-check of every local tab)."""
        primaries = {node.name for node in self._cluster.get_primaries()}
        if not primaries:
            raise BackendUnavailable("Redis Cluster: no primary known")
        manager = self._cluster.nodes_manager
        chosen: dict[str, str] = {}
        for number in range(4 * _SLOTS):
            key = self.names.epoch(str(number))
            node = manager.get_node_from_slot(self._cluster.keyslot(key))
            if node.name in primaries and node.name not in chosen:
                chosen[node.name] = key
                if len(chosen) == len(primaries):
                    break
        return sorted(chosen.values())

    async def epoch(self) -> str:
        keys = self.epoch_keys()

        async def read_or_create() -> list[Any]:
            pipe = self._cluster.pipeline()
            for key in keys:
                pipe.set(key, secrets.token_hex(8), nx=True)
                pipe.get(key)
            return await pipe.execute()

        replies = await self.call(read_or_create)
        return ",".join(str(value) for value in replies[1::2])

    async def login(
        self,
        old_id: str | None,
        record: SessionRecord,
        *,
        limit: int | None,
        deny: bool,
        timeouts: Timeouts,
        now: int,
        ceiling: int | None = None,
        actor: str = "user",
    ) -> list[str]:
        _in_users_slot(record)
        # One slot (a signed-in user signing in again): one script, as on one Redis;
        # an old session of another slot is retired afterwards.
        same_slot = old_id is None or slot_tag(old_id) == slot_tag(record.id)
        evicted = await super().login(
            old_id if same_slot else None,
            record,
            limit=limit,
            deny=deny,
            timeouts=timeouts,
            now=now,
            ceiling=ceiling,
            actor=actor,
        )
        if old_id is not None and not same_slot:
            await self._run("rotate", self.names.session_keys(old_id), timeouts, now, old_id)
        return evicted

    async def complete_login(
        self,
        pending: PendingLogin,
        old_id: str | None,
        record: SessionRecord,
        *,
        evict: Sequence[str],
        limit: int | None,
        timeouts: Timeouts,
        now: int,
        ceiling: int | None = None,
        rotate: bool = True,
    ) -> list[str]:
        # As login: the completion runs in the user's slot (the pending key, the new
        # session and the index share its tag); an old session of another slot is
        # retired afterwards.
        _in_users_slot(record)
        if slot_tag(pending.id) != slot_tag(record.id):  # another user's pending sign-in
            raise PendingLoginRefused(Code.PENDING_LOGIN_FOREIGN)
        same_slot = old_id is None or slot_tag(old_id) == slot_tag(record.id)
        evicted = await super().complete_login(
            pending,
            old_id,
            record,
            evict=evict,
            limit=limit,
            timeouts=timeouts,
            now=now,
            ceiling=ceiling,
            rotate=same_slot,
        )
        if old_id is not None and not same_slot:
            await self._run("rotate", self.names.session_keys(old_id), timeouts, now, old_id)
        return evicted

    async def end(
        self,
        public_id: str,
        reason: Any,
        *,
        timeouts: Timeouts,
        now: int,
        user: str | None = None,
        detail: str | None = None,
        actor: str = "user",
    ) -> bool:
        if not self.names.valid(public_id):  # an id from a URL: no such session
            return False
        return await super().end(
            public_id, reason, timeouts=timeouts, now=now, user=user, detail=detail, actor=actor
        )

    async def set_presence(
        self, sockets: Sequence[tuple[str, str]], *, until: int | None, now: int
    ) -> None:
        """One ``presence.lua`` call per primary (not per slot: a batch of 32 sockets of
        different users was 32 scripts, 64 % of the cluster's Redis CPU), all sent in one
        write per primary by its multiplexer. The call declares its first key only
        (``lua/presence.lua``); when the slot map was stale (a ``MOVED``, a key of a
        slot the node no longer serves) its sockets are sent again, one script per slot,
        each following ``MOVED``/``ASK``. Setting a socket's score twice changes
        nothing, so unlike other scripts these may run again after a failure."""
        if sockets:
            await self.call(self._presence, sockets, until, now)

    async def _presence(
        self, sockets: Sequence[tuple[str, str]], until: int | None, now: int
    ) -> None:
        by_node: dict[str, list[tuple[str, str]]] = {}
        for socket in sockets:
            node = self._multiplexer.node_of(self.names.presence(socket[0]))
            by_node.setdefault(node.name, []).append(socket)
        await asyncio.gather(*(self._presence_of_node(g, until, now) for g in by_node.values()))

    async def _presence_of_node(
        self, sockets: list[tuple[str, str]], until: int | None, now: int
    ) -> None:
        keys = [self.names.presence(public_id) for public_id, _ in sockets]
        argv = await self._arguments(keys, None, now, _presence_argv(keys, sockets, until))
        try:
            await self._eval("presence", keys[:1], argv, follow=False)
        except ScriptError as exc:
            if not isinstance(exc, Redirected) and "non local key" not in str(exc):
                raise
            self._multiplexer.refresh()
            parent = super().set_presence
            by_slot: dict[int, list[tuple[str, str]]] = {}
            for key, socket in zip(keys, sockets, strict=True):
                by_slot.setdefault(self._cluster.keyslot(key), []).append(socket)
            await asyncio.gather(*(parent(g, until=until, now=now) for g in by_slot.values()))

    async def take_rates(self, checks: Sequence[RateCheck], *, now: int) -> int:
        # One script per slot (an address's key and a user's live in different slots).
        by_slot: dict[int, list[RateCheck]] = {}
        for check, key in zip(checks, self.names.rates(checks), strict=True):
            by_slot.setdefault(self._cluster.keyslot(key), []).append(check)
        parent = super().take_rates
        waits = await asyncio.gather(*(parent(group, now=now) for group in by_slot.values()))
        return max(waits, default=0)

    async def count_presence(self, public_ids: list[str], *, now: int) -> dict[str, int]:
        if not public_ids:
            return {}

        async def count() -> list[int]:
            pipe = self._cluster.pipeline()
            for public_id in public_ids:
                pipe.zcount(self.names.presence(public_id), f"({now}", "+inf")
            return cast(list[int], await pipe.execute())

        counts = await self.call(count)
        return dict(zip(public_ids, (int(c) for c in counts), strict=True))

    async def list_users(
        self, *, cursor: str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> UserPage:
        """Each primary's indexes in turn, in node name order; the cursor names the node
        and its own ``SCAN`` cursor. A node gone since the last page (a failover) is
        followed by the next name, from its start: users of the failed node's slots may
        then be missed by this listing (the promoted replica holds them)."""
        primaries = sorted(self._cluster.get_primaries(), key=lambda node: node.name)
        if not primaries:
            raise BackendUnavailable("Redis Cluster: no primary known")
        name, position = primaries[0].name, 0
        if cursor is not None:
            name, _, at = decode_cursor(cursor).rpartition(" ")
            position = scan_position(at)
        remaining = [node for node in primaries if node.name >= name]
        if not remaining:
            return UserPage([])
        node = remaining[0]
        if node.name != name:
            position = 0

        async def scan(at: int, **options: Any) -> tuple[int, list[str]]:
            # redis-py answers ({node name: cursor}, keys) even for one target node.
            cursors, keys = cast(
                tuple[dict[str, int], list[str]],
                await self._cluster.scan(at, target_nodes=node, **options),
            )
            return int(cursors[node.name]), keys

        users, position = await self.call(
            functools.partial(
                scan_users,
                scan,
                pattern=self.names.index_pattern(),
                limit=limit,
                user_of=self.names.user_of_index,
            ),
            position,
        )
        if position == 0:  # this node is done: the next one from its start
            following = primaries[primaries.index(node) + 1 :]
            return UserPage(users, encode_cursor(f"{following[0].name} 0") if following else None)
        return UserPage(users, encode_cursor(f"{node.name} {position}"))

    async def publish(self, channel: str, payload: str) -> None:
        await self.call(self._cluster.spublish, self.names.physical(channel), payload)

    async def ping(self) -> None:
        await self.call(self._cluster.ping)  # every primary

    def subscription(self) -> ClusterSubscription:  # type: ignore[override]
        return ClusterSubscription(self._cluster, self.names.physical, self._node_options)
