"""The Redis backend (``redis://``, ``rediss://``, ``redis+sentinel://``).

Each transition is one Lua script from ``lua/`` (with ``_prelude.lua`` prepended),
loaded once and called by SHA: one round trip, atomic, publishing its event in the same
step. Every key and channel name comes from :mod:`.keys` (records are hashes, the
per-user index a sorted set pruned lazily inside the scripts: no keyspace notifications,
which are lossy); a script receives the names it touches in ``KEYS``. This class serves
standalone Redis and Sentinel; :mod:`.redis_cluster` extends it to a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.events import Device
from ..core.exceptions import (
    BackendUnavailable,
    ConfigurationError,
    PendingLoginRefused,
    SessionLimitReached,
)
from ..core.limits import RateCheck
from ..core.paging import MAX_PAGE_SIZE, PageCursor, page_size
from ..core.policy import bounded_limit
from ..core.remember import MAX_FAMILIES_PER_USER
from ..core.trail import AuditSettings
from .base import (
    EXPIRY_GRACE_MS,
    LIST_SCAN_FACTOR,
    MAX_LINKED,
    PENDING_REFUSALS,
    Claim,
    EndReason,
    Lookup,
    PendingLogin,
    Restore,
    RestoreStep,
    SessionPage,
    SessionRecord,
    Timeouts,
)
from .deadline import ScriptDeadline
from .durable_ends import DurableEnds, end_and_wait, online_replicas
from .keys import KeyNames, Topology, key_names
from .multiplex import Multiplexer, NotSent, ScriptRunner
from .redis_trail import RedisTrail
from .subscription import RedisSubscription
from .user_scan import UserPage, decode_cursor, encode_cursor, scan_position, scan_users

__all__ = ["RedisBackend", "RedisSubscription"]

logger = logging.getLogger(__name__)

_MAX_CONNECTIONS = 64  # per process; commands are short scripts
_POOL_TIMEOUT = 5.0  # seconds a command waits for a pooled connection, then 503
_SOCKET_TIMEOUT = 5.0  # seconds a reply may take, then 503
# Seconds a script may take to start after it was sent (deadline.py); the second left
# to the socket timeout covers the script's run and its reply's way back.
SCRIPT_BUDGET = _SOCKET_TIMEOUT - 1.0
_SCRIPTS = (
    "create",
    "load",
    "save",
    "claim",
    "login",
    "end",
    "end_user",
    "list",
    "presence",
    "pend",
    "complete",
    "reauth",
    "remember_start",
    "remember",
)
# A script run with another's body after its own: complete.lua's checks, then login.lua.
_FOLLOWED_BY: Final = {"complete": "login"}
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_NOT_SENT_RETRIES = 2  # a command that never reached Redis is sent again, this often
_DEMOTED = "The previous master is now a slave"  # redis-py's words for a READONLY refusal
_T = TypeVar("_T")


class _CheckedPool:
    """A pool that never hands out a dead connection.

    After ``CLIENT KILL``, a restart or a failover every idle pooled connection has
    been closed by the server; a command written on one fails although Redis is
    healthy again (the 503 bursts of issue 13). redis-py's own check is switched off
    in some versions (with maintenance notifications "auto"), so this one does it:
    a connection whose stream is at EOF or holds unread bytes is reconnected before
    use, and a failure to connect is raised as :class:`.multiplex.NotSent` (safe to retry).
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except _UNREACHABLE as exc:
            raise NotSent(str(exc)) from exc
        try:
            if connection.is_connected and await _stale(connection):
                await connection.disconnect()
            await connection.connect()
        except _UNREACHABLE as exc:
            await self.release(connection)  # type: ignore[attr-defined]
            raise NotSent(str(exc)) from exc
        except BaseException:
            await self.release(connection)  # type: ignore[attr-defined]
            raise
        return connection


async def _stale(connection: Any) -> bool:
    # ``can_read`` (redis-py 8) replaced ``can_read_destructive`` (deprecated there).
    check = getattr(connection, "can_read", None) or connection.can_read_destructive
    try:
        return bool(await check())
    except _UNREACHABLE:
        return True


class _CheckedBlockingPool(_CheckedPool, aioredis.BlockingConnectionPool):
    pass


class _CheckedSentinelPool(_CheckedPool, SentinelConnectionPool):
    pass


def _refused_credentials(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it: the pool wraps a failed connect) is Redis
    refusing the URL's user or password, which no retry can fix."""
    while exc is not None:
        if isinstance(exc, AuthenticationError):
            return True
        exc = exc.__cause__
    return False


def _never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` proves the command did not run: not written at all, or
    refused by a demoted primary (READONLY, which redis-py reports as a lost
    connection)."""
    return isinstance(exc, NotSent) or (
        isinstance(exc, RedisConnectionError) and str(exc) == _DEMOTED
    )


def _evicted(reply: list[Any]) -> bool:
    """Whether a ``login.lua`` reply ended other sessions (at the session limit)."""
    return reply[0] == "ok" and len(reply) > 1


def _restore_ended(reply: list[Any]) -> bool:
    """Whether a ``remember.lua`` reply ended sessions (a reuse, or evictions)."""
    return reply[0] == "reuse" or (reply[0] == "rotated" and len(reply) > 1)


def _read_script(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


@functools.cache
def _script_source(name: str) -> str:
    """Script ``name`` behind the prelude, with ``_names.lua`` (the names a script learns
    while running) at the prelude's ``--@names`` marker."""
    prelude = _read_script("_prelude").replace("--@names\n", _read_script("_names"), 1)
    if name == "remember":  # a restore signs in as login.lua does: its body, as a function
        prelude += "\nlocal function login_step()\n" + _read_script("login") + "\nend\n"
    source = prelude + "\n" + _read_script(name)
    follower = _FOLLOWED_BY.get(name)
    return source if follower is None else source + "\n" + _read_script(follower)


def _client_from_url(url: str, **options: Any) -> tuple[aioredis.Redis, list[aioredis.Redis]]:
    """A client for ``redis://``, ``rediss://`` or ``redis+sentinel://h:p,h:p/service``,
    and the Sentinel clients behind it (to close with it)."""
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        # A burst (a reconnect storm) waits for a free connection instead of failing
        # with "Too many connections", redis-py's default pool behaviour.
        pool = _CheckedBlockingPool.from_url(
            url, max_connections=_MAX_CONNECTIONS, timeout=_POOL_TIMEOUT, **options
        )
        return aioredis.Redis.from_pool(pool), []
    if parts.scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ConfigurationError(f"not a Redis URL: scheme {parts.scheme!r}")
    hosts = []
    for item in parts.netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"sentinel URL needs host:port pairs, got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    service = parts.path.strip("/").split("/")[0]
    if not service:
        raise ConfigurationError("sentinel URL needs the service name as its path")
    query = parse_qs(parts.query)
    db = int(query.get("db", ["0"])[0])
    password = unquote(parts.password) if parts.password else None
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # untyped in older redis-py
        hosts,
        sentinel_kwargs={"password": password} if password else None,
        ssl=parts.scheme.startswith("rediss"),
        **options,
    )
    client: aioredis.Redis = sentinel.master_for(
        service, db=db, password=password, connection_pool_class=_CheckedSentinelPool
    )
    return client, list(sentinel.sentinels)


def _presence_argv(
    keys: Sequence[str], sockets: Sequence[tuple[str, str]], until: int | None
) -> list[Any]:
    """``presence.lua``'s own arguments: until, then (live-sockets set, socket id) pairs."""
    pairs = [
        value for key, (_, socket) in zip(keys, sockets, strict=True) for value in (key, socket)
    ]
    return ["" if until is None else until, *pairs]


def _field_pairs(record: SessionRecord) -> list[str]:
    """``field, value, field, value, …`` for a script's ARGV."""
    return [item for pair in record.to_fields().items() for item in pair]


class RedisBackend(RedisTrail):
    """Sessions in Redis, shared by every process and host.

    Args:
        url: the Redis URL.
        key_prefix: prefix of every key and channel.
        client: an existing ``redis.asyncio.Redis`` to use instead of ``url``.
        durable_ends: replicas an end waits for: a count, ``0`` or ``"auto"``
            (:mod:`.durable_ends`).
        durable_ends_timeout: seconds an end waits for them, then 503.
        audit: how the audit trail is kept (:class:`~sessionwatch.core.trail.AuditSettings`;
            ``None``: on, with the defaults).
    """

    _TOPOLOGY: Topology = "plain"  # the shape of its key names (see .keys)
    _SCRIPTS: tuple[str, ...] = _SCRIPTS

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = "sw:",
        client: aioredis.Redis | None = None,
        durable_ends: int | Literal["auto"] = "auto",
        durable_ends_timeout: float = 1.0,
        audit: AuditSettings | None = None,
    ) -> None:
        self.url = url
        self.audit = audit or AuditSettings()
        self.key_prefix = key_prefix
        self.names: KeyNames = key_names(key_prefix, self._TOPOLOGY)
        self._sentinels: list[aioredis.Redis] = []
        if client is None:
            client, self._sentinels = _client_from_url(
                url,
                decode_responses=True,
                socket_connect_timeout=2,
                socket_timeout=_SOCKET_TIMEOUT,
                health_check_interval=15,
                # Never resend on a timeout: a script may have run (backend.call
                # retries only what provably did not).
                retry=Retry(NoBackoff(), 0),
            )
        self._redis = client
        self._scripts = {
            name: self._redis.register_script(_script_source(name)) for name in self._SCRIPTS
        }
        # Runs without the prelude (no names, no deadline: a late one only counts).
        self._rate_script = self._redis.register_script(_read_script("rate"))
        self._link_script = self._redis.register_script(_read_script("link"))
        # Scripts, the hot path, go through one pipelined connection (multiplex.py);
        # everything else through the pool.
        self._multiplexer = self._script_runner()
        self.deadline = ScriptDeadline(SCRIPT_BUDGET, self._redis.time)
        self.durable_ends = DurableEnds(
            durable_ends, durable_ends_timeout, self._connected_replicas
        )

    def _script_runner(self) -> ScriptRunner:
        """What runs the scripts (a Cluster has one multiplexer per primary)."""
        return Multiplexer(self._redis.connection_pool, timeout=_SOCKET_TIMEOUT)

    @property
    def client(self) -> aioredis.Redis:
        """The underlying client (for health checks and tests)."""
        return self._redis

    async def connect(self) -> None:
        await self.call(self._load_scripts)

    async def _load_scripts(self) -> None:
        for script in self._scripts.values():
            await self._redis.script_load(script.script)

    async def disconnect(self) -> None:
        await self._multiplexer.aclose()
        await self._redis.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()

    async def ping(self) -> None:
        await self.call(self._redis.ping)

    async def call(self, function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Await ``function(*args)`` on the client; any Redis failure raises
        :class:`BackendUnavailable` (fail closed). A command that provably never ran
        (no connection could be made for it, or a demoted primary refused it) is sent
        again, at most ``_NOT_SENT_RETRIES`` times; one that may have run never is.
        A cancellation never ends in a normal return (redis-py 8 can swallow one that
        arrives while it opens a connection; the caller's loop would then run on and a
        shutdown wait forever)."""
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            for _ in range(_NOT_SENT_RETRIES):
                try:
                    result = await function(*args)
                    break
                except RedisConnectionError as exc:
                    if not _never_sent(exc) or _refused_credentials(exc):
                        raise
                    logger.info("Redis command not sent (%s); sending it again", exc)
            else:
                result = await function(*args)
        except _UNREACHABLE as exc:
            self.deadline.forget()  # the next server may have another clock
            self.durable_ends.forget()  # and other replicas
            if _refused_credentials(exc):
                raise BackendUnavailable(
                    "Redis refused the credentials: check the user and password in the "
                    f"backend URL ({exc})"
                ) from exc
            raise BackendUnavailable(f"Redis unreachable: {exc}") from exc
        except RedisError as exc:
            # READONLY replica after a failover, OOM, script errors, a script that
            # started after its deadline (LATE): fail closed.
            self.deadline.forget()
            self.durable_ends.forget()
            raise BackendUnavailable(f"Redis error: {exc}") from exc
        if task is not None and task.cancelling() > cancels:
            raise asyncio.CancelledError
        return result

    async def _run(
        self,
        name: str,
        keys: list[str],
        timeouts: Timeouts | None,
        now: int,
        *args: Any,
        actor: str = "user",
    ) -> Any:
        """Run script ``name`` on ``keys`` (the names it touches, in the order its header
        gives) with the prelude's arguments, its deadline, its audit context (``actor``:
        who its records name as the cause), then ``args`` (ARGV[7]... once the prelude
        took the deadline and the audit context out). ``timeouts`` is ``None`` for a
        script that uses none of them (presence)."""
        argv = await self._arguments(keys, timeouts, now, args, actor)
        return await self.call(self._eval, name, keys, argv)

    async def _run_end(
        self,
        name: str,
        keys: list[str],
        timeouts: Timeouts,
        now: int,
        *args: Any,
        ended: Callable[[Any], bool] | None = None,
        actor: str = "user",
    ) -> Any:
        """:meth:`_run` for a script that ends sessions (with ``ended``: when
        ``ended(reply)``): answered once the replicas ``durable_ends`` asks for have it, else
        :class:`EndNotDurable` (a 503)."""
        replicas = await self.call(self.durable_ends.required)
        if not replicas:
            return await self._run(name, keys, timeouts, now, *args, actor=actor)
        argv = await self._arguments(keys, timeouts, now, args, actor)
        reply, acknowledged = await self.call(self._end_and_wait, name, keys, argv, replicas, ended)
        self.durable_ends.check(acknowledged, replicas)
        return reply

    async def _end_and_wait(
        self,
        name: str,
        keys: list[str],
        argv: list[Any],
        replicas: int,
        ended: Callable[[Any], bool] | None,
    ) -> tuple[Any, int | None]:
        """Script ``name`` then ``WAIT``, on one connection of the primary of ``keys``."""
        async with self._primary_connection(keys[0]) as connection:
            return await self._end_on(connection, name, keys, argv, replicas, ended)

    async def _end_on(
        self,
        connection: Any,
        name: str,
        keys: list[str],
        argv: list[Any],
        replicas: int,
        ended: Callable[[Any], bool] | None,
        *,
        asking: bool = False,
    ) -> tuple[Any, int | None]:
        """Script ``name``, its fence and ``WAIT`` on ``connection``
        (:func:`~.durable_ends.end_and_wait`)."""
        return await end_and_wait(
            connection,
            self._script_of(name),
            keys,
            argv,
            fence=self.names.fence(keys[0]),
            replicas=replicas,
            timeout_ms=self.durable_ends.timeout_ms,
            ended=ended,
            asking=asking,
        )

    def _script_of(self, name: str) -> tuple[str, str]:
        """The source and SHA of script ``name``, as registered."""
        script = self._scripts[name]
        return str(script.script), script.sha

    @contextlib.asynccontextmanager
    async def _primary_connection(self, key: str) -> AsyncIterator[Any]:
        """A pooled connection of the primary (which holds every key here)."""
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            yield connection
        finally:
            await pool.release(connection)

    async def _connected_replicas(self) -> int:
        return online_replicas(await self._redis.info("replication"))

    async def _arguments(
        self,
        keys: list[str],
        timeouts: Timeouts | None,
        now: int,
        args: Sequence[Any],
        actor: str = "user",
    ) -> list[Any]:
        limits = (
            (timeouts.idle, timeouts.refresh, timeouts.tombstone, EXPIRY_GRACE_MS)
            if timeouts is not None
            else (0, 0, 0, 0)
        )
        deadline = self.deadline.current()
        if deadline is None:
            deadline = await self.call(self._deadline_of, keys)
        audit = self.audit.script_context(self._audit_stream(keys), actor) if timeouts else ""
        return [self.names.script_names(), now, *limits, deadline, audit, *args]

    def _audit_stream(self, keys: list[str]) -> str:
        """The stream a script on ``keys`` appends its records to (one Redis: one)."""
        return self.names.audit()

    async def _eval(self, name: str, keys: list[str], argv: list[Any]) -> Any:
        return await self._multiplexer.evalsha(_script_source(name), keys, argv)

    async def _deadline_of(self, keys: list[str]) -> int:
        """The deadline of a script on ``keys``, in the clock of the Redis that runs it."""
        return await self.deadline.next()

    @staticmethod
    def _gone(reply: list[Any]) -> Lookup:
        reason = reply[1] or None
        return Lookup(None, reason)

    def _record(self, public_id: str, flat: list[str]) -> SessionRecord:
        return SessionRecord.from_fields(public_id, dict(zip(flat[::2], flat[1::2], strict=True)))

    # -- operations --------------------------------------------------------------

    async def create(self, record: SessionRecord, *, timeouts: Timeouts, now: int) -> None:
        fields = _field_pairs(record)
        await self._run(
            "create", self.names.session_keys(record.id), timeouts, now, record.id, *fields
        )

    async def load(
        self, public_id: str, *, timeouts: Timeouts, now: int, touch: bool = True
    ) -> Lookup:
        reply = await self._run(
            "load", self.names.session_keys(public_id), timeouts, now, public_id, int(touch), 0
        )
        if reply[0] != "ok":
            return self._gone(reply)
        return Lookup(self._record(public_id, reply[2:]), extended=bool(reply[1]))

    async def extend(self, public_id: str, *, timeouts: Timeouts, now: int) -> Lookup:
        reply = await self._run(
            "load", self.names.session_keys(public_id), timeouts, now, public_id, 1, 1
        )
        if reply[0] != "ok":
            return self._gone(reply)
        return Lookup(self._record(public_id, reply[2:]), extended=True)

    async def save_data(self, public_id: str, data: str, *, timeouts: Timeouts, now: int) -> bool:
        return bool(
            await self._run(
                "save", self.names.session_keys(public_id), timeouts, now, public_id, data
            )
        )

    async def claim(
        self, public_id: str, by: Device, *, exclusive: bool, timeouts: Timeouts, now: int
    ) -> Claim | Lookup:
        by_json = json.dumps(by.to_json(), separators=(",", ":"))
        reply = await self._run(
            "claim",
            self.names.session_keys(public_id),
            timeouts,
            now,
            public_id,
            int(exclusive),
            by_json,
        )
        if reply[0] != "ok":
            return self._gone(reply)
        record = self._record(public_id, reply[2:])
        return Claim(record.gen, record.tab_key, record.expires_at(timeouts.idle), record)

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
        if not record.user:
            raise ValueError("login needs a user id")
        limit, deny = bounded_limit(limit, deny, ceiling)  # the script applies both
        fields = _field_pairs(record)
        keys = self.names.session_keys(record.id) + self.names.user_keys(record.user)
        if old_id:
            keys += self.names.session_keys(old_id)
        reply = await self._run_end(
            "login",
            keys,
            timeouts,
            now,
            old_id or "",
            record.id,
            record.user,
            -1 if limit is None else limit,
            int(deny),
            *fields,
            ended=_evicted,  # a sign-in grants access: only its evictions wait
            actor=actor,
        )
        if reply[0] == "denied":
            raise SessionLimitReached(record.user, limit or 0)
        return list(reply[1:])

    async def put_pending(self, pending: PendingLogin, *, now: int) -> None:
        await self._run(
            "pend",
            [self.names.pending(pending.id)],
            None,
            now,
            pending.user,
            pending.bound,
            pending.expires_at,
            max(1, pending.expires_at - now + EXPIRY_GRACE_MS),
        )

    async def get_pending(self, pending_id: str, *, now: int) -> PendingLogin | None:
        fields = await self.call(self._redis.hgetall, self.names.pending(pending_id))
        if not fields or int(fields["exp"]) + EXPIRY_GRACE_MS <= now:
            return None
        return PendingLogin(
            pending_id,
            str(fields["uid"]),
            str(fields["sid"]),
            int(fields["exp"]),
            fields.get("used") == "1",
        )

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
        """See :meth:`Backend.complete_login`. ``rotate``: ``old_id``'s names are in
        this script's slot, so it retires it (the cluster backend retires one of
        another slot afterwards)."""
        if not record.user:
            raise ValueError("login needs a user id")
        limit, _ = bounded_limit(limit, True, ceiling)
        keys = self.names.session_keys(record.id) + self.names.user_keys(record.user)
        if old_id and rotate:
            keys += self.names.session_keys(old_id)
        reply = await self._run_end(
            "complete",
            [*keys, self.names.pending(pending.id)],
            timeouts,
            now,
            old_id or "",
            len(evict),
            *evict,
            old_id if old_id and rotate else "",
            record.id,
            record.user,
            -1 if limit is None else limit,
            1,
            *_field_pairs(record),
            ended=_evicted,
        )
        if reply[0] == "refused":
            raise PendingLoginRefused(PENDING_REFUSALS[reply[1]])
        if reply[0] == "denied":
            raise SessionLimitReached(record.user, limit or 0)
        return list(reply[1:])

    async def reauthenticated(self, public_id: str, *, timeouts: Timeouts, now: int) -> bool:
        return bool(
            await self._run("reauth", self.names.session_keys(public_id), timeouts, now, public_id)
        )

    async def remember_start(
        self,
        record: SessionRecord,
        family: str,
        hashed: str,
        *,
        lifetime: int,
        timeouts: Timeouts,
        now: int,
    ) -> bool:
        if not record.user:
            raise ValueError("remember-me needs a signed-in session")
        keys = self.names.session_keys(record.id) + self.names.remember_keys(family, record.user)
        reply = await self._run(
            "remember_start",
            keys,
            timeouts,
            now,
            record.id,
            record.user,
            family,
            hashed,
            lifetime,
            MAX_FAMILIES_PER_USER,
        )
        return bool(reply)

    async def remember_owner(self, family: str) -> tuple[str, str] | None:
        found = await self.call(self._redis.hmget, self.names.family(family), ["uid", "sid"])
        return (str(found[0]), str(found[1] or "")) if found and found[0] else None

    async def remember_restore(self, step: RestoreStep, *, timeouts: Timeouts, now: int) -> Restore:
        record, user = step.record, step.record.user
        if not user:
            raise ValueError("a restore needs the family's user id")
        limit, deny = bounded_limit(step.limit, step.deny, step.ceiling)  # the script applies both
        keys = self.names.session_keys(record.id) + self.names.user_keys(user)
        keys += self.names.session_keys(step.old_id or record.id)
        keys += self.names.remember_keys(step.family, user)
        reply = await self._run_end(
            "remember",
            keys,
            timeouts,
            now,
            step.family,
            step.gen,
            step.token_hash,
            step.successor_hash,
            step.grace,
            step.old_id,
            record.id,
            user,
            -1 if limit is None else limit,
            int(deny),
            *_field_pairs(record),
            ended=_restore_ended,
        )
        outcome = reply[0]
        if outcome == "rotated":
            return Restore("rotated", user, tuple(reply[1:]))
        if outcome == "reuse":
            return Restore("reuse", user, ended=reply[1] or None)
        return Restore(outcome, user)

    async def end(
        self,
        public_id: str,
        reason: EndReason,
        *,
        timeouts: Timeouts,
        now: int,
        user: str | None = None,
        detail: str | None = None,
        actor: str = "user",
    ) -> bool:
        reply = await self._run_end(
            "end",
            self.names.session_keys(public_id),
            timeouts,
            now,
            public_id,
            reason,
            user or "",
            detail or "revoked",
            actor=actor,
        )
        return bool(reply)

    async def end_user(
        self,
        user: str,
        *,
        except_id: str | None,
        detail: str,
        timeouts: Timeouts,
        now: int,
        actor: str = "app",
    ) -> int:
        return int(
            await self._run_end(
                "end_user",
                self.names.user_keys(user),
                timeouts,
                now,
                user,
                except_id or "",
                detail,
                actor=actor,
            )
        )

    async def list_sessions(
        self,
        user: str,
        *,
        timeouts: Timeouts,
        now: int,
        after: PageCursor | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> SessionPage:
        limit = page_size(limit)  # 1 to MAX_PAGE_SIZE
        reply = await self._run(
            "list",
            self.names.user_keys(user),
            timeouts,
            now,
            user,
            "" if after is None else after.created,
            "" if after is None else after.public_id,
            limit,
            limit * LIST_SCAN_FACTOR,
        )
        records = [self._record(entry[0], entry[1:]) for entry in reply[2:]]
        following = PageCursor(int(reply[0]), reply[1]) if reply[0] else None
        return SessionPage(records, following)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> UserPage:
        position = scan_position(decode_cursor(cursor)) if cursor is not None else 0
        users, position = await self.call(
            functools.partial(
                scan_users,
                self._redis.scan,
                pattern=self.names.index_pattern(),
                limit=limit,
                user_of=self.names.user_of_index,
            ),
            position,
        )
        return UserPage(users, encode_cursor(str(position)) if position else None)

    async def set_presence(
        self, sockets: Sequence[tuple[str, str]], *, until: int | None, now: int
    ) -> None:
        if not sockets:
            return
        keys = [self.names.presence(public_id) for public_id, _ in sockets]
        await self._run("presence", keys, None, now, *_presence_argv(keys, sockets, until))

    async def count_presence(self, public_ids: list[str], *, now: int) -> dict[str, int]:
        if not public_ids:
            return {}

        async def count() -> list[int]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for public_id in public_ids:
                    pipe.zcount(self.names.presence(public_id), f"({now}", "+inf")
                return await pipe.execute()

        counts = await self.call(count)
        return dict(zip(public_ids, (int(c) for c in counts), strict=True))

    def epoch_keys(self) -> list[str]:
        """The keys :meth:`epoch` reads (for tests and tools: deleting one is losing
        the stored state)."""
        return [self.names.epoch()]

    async def epoch(self) -> str:
        async def read_or_create() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.names.epoch(), secrets.token_hex(8), nx=True)
                pipe.get(self.names.epoch())
                return await pipe.execute()

        _, current = await self.call(read_or_create)
        return str(current)

    async def take_rates(self, checks: Sequence[RateCheck], *, now: int) -> int:
        if not checks:
            return 0
        keys = self.names.rates(checks)
        argv = [str(now)]
        for rule, _ in checks:
            argv += [f"{rule.interval_ms:.3f}", f"{rule.capacity_ms:.3f}"]
        source = self._rate_script.script
        return int(await self.call(self._multiplexer.evalsha, source, keys, argv))

    async def publish(self, channel: str, payload: str) -> None:
        await self.call(self._redis.publish, channel, payload)

    # -- provider links and seen logout tokens (docs/sso.md) -------------------------
    # One key each, so the same calls serve a Cluster (each key in a slot of its own).

    async def link(self, links: Sequence[str], public_id: str, *, until: int, now: int) -> None:
        for link in links:
            argv = [str(now), str(until), public_id, str(MAX_LINKED)]
            await self.call(self._link_script, [self.names.provider_link(link)], argv)

    async def linked(self, link: str, *, now: int) -> list[str]:
        key = self.names.provider_link(link)
        members = await self.call(self._redis.zrangebyscore, key, f"({now}", "+inf")
        return [str(member) for member in members]

    async def first_use(self, token: str, *, until: int, now: int) -> bool:
        key = self.names.seen_token(token)
        ttl = max(1, until - now)
        return bool(await self.call(functools.partial(self._redis.set, nx=True, px=ttl), key, "1"))

    async def forget_use(self, token: str) -> None:
        await self.call(self._redis.delete, self.names.seen_token(token))

    def subscription(self) -> RedisSubscription:
        return RedisSubscription(self._redis.connection_pool)
