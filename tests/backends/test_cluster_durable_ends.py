"""Durable ends on a Redis Cluster whose slots move (backends/redis_cluster.py,
``RedisClusterBackend._end_and_wait``): an end (script, fence, ``WAIT`` on one node
connection) follows ``MOVED`` to the slot's new owner, ``ASK`` to the importing node
(``ASKING`` before each keyed command) and waits out ``TRYAGAIN`` within the call's
deadline; a redirect that keeps pointing away is a 503, never a hang.

Before, the end went to the slot's primary in the backend's slot map and failed on any
redirect (the layout learnt again, the caller answered 503) though the cluster was
healthy. Every slot moved here is moved back before the test ends (the cluster is the
run's shared one)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import MovedError, TryAgainError

from backends.test_durable_ends import NOW, TIMEOUTS, is_live, signed_in
from sessionwatch.backends import redis_cluster as cluster_module
from sessionwatch.backends.redis_cluster import RedisClusterBackend
from sessionwatch.core.exceptions import BackendUnavailable
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.redis_cluster import ClusterNode, RedisCluster

BOUND = 15  # seconds any one step may take


@pytest.fixture(name="backend")
async def _backend(redis_cluster: RedisCluster) -> AsyncIterator[RedisClusterBackend]:
    backend = RedisClusterBackend(
        redis_cluster.url,
        key_prefix=f"movedend{uuid.uuid4().hex[:8]}:",
        durable_ends=1,
        durable_ends_timeout=1.0,
    )
    await backend.connect()
    for node in redis_cluster.primaries():  # past the first sync: they acknowledge
        await asyncio.to_thread(redis_cluster.wait_replicated, node)
    try:
        yield backend
    finally:
        await backend.disconnect()


@contextlib.asynccontextmanager
async def moving(
    redis_cluster: RedisCluster, key: str
) -> AsyncIterator[tuple[int, ClusterNode, ClusterNode]]:
    """``key``'s slot, its owner and another primary to move it to (yielded);
    afterwards the slot is its owner's again, with its keys (a migration left open is
    finished first)."""
    slot = key_slot(key.encode())
    owner = redis_cluster.slot_map()[slot]
    target = next(other for other in redis_cluster.primaries() if other.port != owner.port)
    try:
        yield slot, owner, target
    finally:
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, owner)


def keys_in_slot(node: ClusterNode, slot: int) -> list[str]:
    return node.cli("cluster", "getkeysinslot", str(slot), "1000").split()


def move_keys(slot: int, source: ClusterNode, target: ClusterNode) -> None:
    """MIGRATE every key of ``slot`` from ``source`` to ``target`` (a migration begun:
    the slot stays MIGRATING/IMPORTING)."""
    keys = keys_in_slot(source, slot)
    if keys:
        source.cli("migrate", "127.0.0.1", str(target.port), "", "0", "5000", "keys", *keys)
    assert not keys_in_slot(source, slot)


async def stats(node: ClusterNode) -> dict[str, int]:
    """The node's ``ASKING`` and ``WAIT`` calls and ``TRYAGAIN`` replies so far."""
    client = aioredis.Redis(port=node.port, decode_responses=True)
    try:
        commands = await client.info("commandstats")
        errors = await client.info("errorstats")
    finally:
        await client.aclose()
    return {
        "asking": int(commands.get("cmdstat_asking", {}).get("calls", 0)),
        "wait": int(commands.get("cmdstat_wait", {}).get("calls", 0)),
        "tryagain": int(errors.get("errorstat_TRYAGAIN", {}).get("count", 0)),
    }


async def test_an_end_on_a_slot_that_moved_runs_on_its_new_owner_and_is_confirmed(
    backend: RedisClusterBackend, redis_cluster: RedisCluster
) -> None:
    """The slot fully moved (IMPORTING/MIGRATING, its keys MIGRATEd, SETSLOT NODE on
    every primary) while the backend's slot map still names the old owner: the
    revocation is answered ``MOVED``, run again on the new owner with its fence and
    ``WAIT`` there. Before: 503 (``MovedError``) though the cluster was healthy."""
    record = await signed_in(backend, "moved-end")
    key = backend.names.session(record.id)
    async with moving(redis_cluster, key) as (slot, source, target):
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)
        stale = backend._cluster.nodes_manager.get_node_from_slot(slot)
        assert int(stale.port) == source.port  # the backend has not heard of it
        before = await stats(target)
        ended = await asyncio.wait_for(
            backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
        )
        assert ended is True
        assert (await stats(target))["wait"] == before["wait"] + 1  # WAIT ran there
        assert key not in keys_in_slot(target, slot)  # ended on the new owner
        assert backend.names.tombstone(record.id) in keys_in_slot(target, slot)
        assert not await is_live(backend, record)
        await asyncio.to_thread(redis_cluster.wait_replicated, target)


async def test_an_end_during_a_migration_is_asked_and_runs_once_the_slot_has_moved(
    backend: RedisClusterBackend, redis_cluster: RedisCluster
) -> None:
    """Mid-migration (MIGRATING on the source, IMPORTING on the target, the session's
    keys already on the target): the source answers ``ASK``; ``ASKING`` + the end on
    the target is answered ``TRYAGAIN`` by Redis (the script declares the session's
    channel, a key that never exists, and an importing node runs a multi-key command
    only when it holds every key). Neither ran it: the end waits out ``TRYAGAIN`` and
    runs on the target once the migration has ended (0.5 s later), its ``WAIT``
    confirmed there. Before: 503 (``AskError``) at once."""
    record = await signed_in(backend, "asked-end")
    key = backend.names.session(record.id)
    async with moving(redis_cluster, key) as (slot, source, target):
        await asyncio.to_thread(redis_cluster.begin_migration, slot, target)
        await asyncio.to_thread(move_keys, slot, source, target)
        before = await stats(target)

        async def finish_later() -> None:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)

        started = time.monotonic()
        ended, _ = await asyncio.wait_for(
            asyncio.gather(
                backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1),
                finish_later(),
            ),
            BOUND,
        )
        assert ended is True
        assert time.monotonic() - started >= 0.5  # it waited for the migration
        after = await stats(target)
        assert after["asking"] > before["asking"]  # the ASK was followed
        assert after["tryagain"] > before["tryagain"]  # and refused until the move
        assert after["wait"] > before["wait"]
        assert backend.names.tombstone(record.id) in keys_in_slot(target, slot)
        assert not await is_live(backend, record)


PROBE = "return redis.call('SET', KEYS[1], 'probe-{}')"


@pytest.mark.parametrize("waits_after", [False, True], ids=["one-write", "wait-when-ended"])
async def test_an_end_asked_to_the_importing_node_runs_there_with_its_fence_and_wait(
    backend: RedisClusterBackend, redis_cluster: RedisCluster, waits_after: bool
) -> None:
    """The ``ASK`` path itself, with a one-key end script (a session's scripts declare
    its channel, so an importing node answers them ``TRYAGAIN``): the source answers
    ``ASK``; on the importing node the script is unknown (``SCRIPT LOAD``, then
    ``ASKING`` + ``EVALSHA``), its key and the fence (a key of the same slot the
    importing node does not hold: without ``ASKING`` it answers ``MOVED``) are written
    there, and the ``WAIT`` on that connection counts its replica. Before: 503
    (``AskError``)."""
    source_text = PROBE.format(uuid.uuid4().hex)  # a script no node has loaded
    backend._scripts["probe"] = backend._cluster.register_script(source_text)
    key = backend.names.session(public_id(new_session_id(user_tag("probe"))))
    fence = backend.names.fence(key)
    async with moving(redis_cluster, key) as (slot, source, target):
        assert key_slot(fence.encode()) == slot
        await asyncio.to_thread(redis_cluster.begin_migration, slot, target)
        await asyncio.to_thread(move_keys, slot, source, target)
        before = await stats(target)
        reply = await asyncio.wait_for(
            backend._run_end(
                "probe",
                [key],
                TIMEOUTS,
                NOW,
                ended=(lambda reply: True) if waits_after else None,
            ),
            BOUND,
        )
        assert reply == "OK"
        assert {key, fence} <= set(keys_in_slot(target, slot))
        assert key not in keys_in_slot(source, slot)
        after = await stats(target)
        # One write: the first (NOSCRIPT) carried a fence and WAIT too, read and dropped.
        assert after["wait"] == before["wait"] + (1 if waits_after else 2)
        assert after["asking"] >= before["asking"] + 2  # the script's and the fence's


class _Redirecting:
    """A node connection that answers every command in ``refused`` (by default the
    keyed ones: the script never runs) with ``answer()``, ``WAIT`` with 1 and anything
    else ``OK``."""

    def __init__(self, answer: Any, refused: tuple[str, ...] = ("EVALSHA", "SET")) -> None:
        self.answer = answer
        self.refused = refused
        self.writes: list[list[tuple[Any, ...]]] = []
        self._unread: list[tuple[Any, ...]] = []

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return list(commands)

    async def send_packed_command(self, commands: list[tuple[Any, ...]]) -> None:
        self.writes.append(commands)
        self._unread = list(commands)

    async def read_response(self) -> Any:
        command = self._unread.pop(0)
        if command[0] in self.refused:
            raise self.answer()
        return 1 if command[0] == "WAIT" else "OK"

    async def disconnect(self) -> None:
        pass


def _fake_connections(
    monkeypatch: pytest.MonkeyPatch, backend: RedisClusterBackend, connection: _Redirecting
) -> None:
    @contextlib.asynccontextmanager
    async def node_connection(node: Any) -> AsyncIterator[_Redirecting]:
        yield connection

    monkeypatch.setattr(backend, "_node_connection", node_connection)


async def test_a_redirect_that_keeps_pointing_away_is_a_503_not_a_hang(
    backend: RedisClusterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every answer a ``MOVED`` to another primary, and back: the end follows a few
    (``MAX_REDIRECTS``), then is a 503 at once, the script having run nowhere."""
    record = await signed_in(backend, "moved-loop")
    slot = key_slot(backend.names.session(record.id).encode())
    addresses = [f"{node.host}:{node.port}" for node in backend._cluster.get_primaries()]
    turns = iter(range(1000))

    def moved() -> MovedError:
        return MovedError(f"{slot} {addresses[next(turns) % len(addresses)]}")

    connection = _Redirecting(moved)
    _fake_connections(monkeypatch, backend, connection)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="redirects"):
        await asyncio.wait_for(
            backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
        )
    assert time.monotonic() - started < 1.0
    assert len(connection.writes) == 1 + cluster_module.MAX_REDIRECTS


async def test_a_tryagain_that_never_ends_is_a_503_at_the_calls_deadline(
    backend: RedisClusterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that never finishes (``TRYAGAIN`` for ever): the end is tried again
    until the call's deadline (here 0.6 s instead of 5 s), then 503."""
    record = await signed_in(backend, "tryagain-loop")
    monkeypatch.setattr(backend._multiplexer, "_timeout", 0.6)  # the call's deadline
    connection = _Redirecting(lambda: TryAgainError("Multiple keys request during rehashing"))
    _fake_connections(monkeypatch, backend, connection)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="rehashing"):
        await asyncio.wait_for(
            backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
        )
    assert 0.5 <= time.monotonic() - started < 1.5
    assert len(connection.writes) > 2


async def test_a_fence_redirected_after_the_end_ran_is_a_503_never_sent_again(
    backend: RedisClusterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The script ran, its fence was answered ``MOVED`` (a migration begun between
    the two): following it would run the end again elsewhere, and ``WAIT`` there would
    not count this write. One write, then 503."""
    record = await signed_in(backend, "fence-moved")
    slot = key_slot(backend.names.session(record.id).encode())
    other = backend._cluster.get_primaries()[0]
    connection = _Redirecting(lambda: MovedError(f"{slot} {other.host}:{other.port}"), ("SET",))
    _fake_connections(monkeypatch, backend, connection)
    with pytest.raises(BackendUnavailable, match="fence or WAIT failed"):
        await asyncio.wait_for(
            backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
        )
    assert len(connection.writes) == 1
