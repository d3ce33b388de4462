"""The Cluster's scripts on one pipelined connection per primary
(backends/cluster_multiplex.py): routed by the slot map, a stale map followed (``MOVED``),
a slot being migrated asked (``ASK``), and the presence refresh one script per primary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from backends.test_backend_contract import BY, NOW, make_record, stored
from backends.test_cluster_layout import _cluster_backend  # noqa: F401 (the fixture)
from sessionwatch.backends.base import PendingLogin, Timeouts
from sessionwatch.backends.redis_cluster import RedisClusterBackend
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.redis_cluster import ClusterNode, RedisCluster


async def _clients(node: ClusterNode) -> int:
    client = aioredis.Redis(port=node.port, decode_responses=True)
    try:
        return int((await client.info("clients"))["connected_clients"])
    finally:
        await client.aclose()


def _misroute(backend: RedisClusterBackend, key: str, to: Any = None) -> Any:
    """Make the backend's slot map name another primary (``to``, or any) for ``key``'s
    slot, as after a failover or a migration it has not heard of; returns the owner."""
    manager = backend._cluster.nodes_manager
    slot = key_slot(key.encode())
    owner = manager.slots_cache[slot][0]
    wrong = to or next(n for n in backend._cluster.get_primaries() if n.name != owner.name)
    assert wrong.name != owner.name
    manager.slots_cache[slot] = [wrong]
    return owner


async def test_a_burst_of_scripts_uses_one_connection_per_primary(
    cluster_backend: RedisClusterBackend, redis_cluster: RedisCluster, timeouts: Timeouts
) -> None:
    """300 protected requests at once: redis-py's cluster client checked a connection
    out per call in flight (up to 64 per node); the multiplexer writes them all on one."""
    backend = cluster_backend
    records = [await stored(backend, make_record(), timeouts) for _ in range(30)]
    await asyncio.gather(*(backend.load(r.id, timeouts=timeouts, now=NOW) for r in records))
    primaries = redis_cluster.primaries()
    before = [await _clients(node) for node in primaries]
    found = await asyncio.gather(
        *(backend.load(records[i % 30].id, timeouts=timeouts, now=NOW) for i in range(300))
    )
    assert all(lookup.record is not None for lookup in found)
    after = [await _clients(node) for node in primaries]
    assert all(a - b <= 1 for a, b in zip(after, before, strict=True)), (before, after)
    assert len(backend._multiplexer._nodes) == len(primaries)


async def test_a_stale_slot_map_is_followed_and_the_script_runs_once(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts
) -> None:
    backend = cluster_backend
    record = await stored(backend, make_record(), timeouts)
    owner = _misroute(backend, backend.names.session(record.id))
    claimed = await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
    assert claimed.gen == record.gen + 1  # type: ignore[union-attr]  # ran once, on the owner
    slot = key_slot(backend.names.session(record.id).encode())
    assert backend._cluster.nodes_manager.slots_cache[slot][0].name == owner.name  # patched
    found = await backend.load(record.id, timeouts=timeouts, now=NOW, touch=False)
    assert found.record is not None and found.record.gen == claimed.gen  # type: ignore[union-attr]


async def test_a_slot_being_migrated_is_asked_of_its_importing_node(
    cluster_backend: RedisClusterBackend, redis_cluster: RedisCluster
) -> None:
    """A pending sign-in (one key) in a slot being migrated: its source answers ``ASK``
    (the key is not there); ``ASKING`` + the script on the importing node store it
    there, where it stays when the migration ends. (A session's scripts declare its
    channel too, a key that never exists: during a migration Redis answers them
    ``TRYAGAIN``, a 503, until the slot has moved.)"""
    backend = cluster_backend
    pending = PendingLogin(public_id(new_session_id(user_tag("asked"))), "asked", "b", NOW + 60)
    slot = key_slot(backend.names.pending(pending.id).encode())
    source = redis_cluster.slot_map()[slot]
    target = next(node for node in redis_cluster.primaries() if node is not source)
    await asyncio.to_thread(redis_cluster.begin_migration, slot, target)
    try:
        await backend.put_pending(pending, now=NOW)
        key = backend.names.pending(pending.id)
        assert key in target.cli("cluster", "getkeysinslot", str(slot), "1000").split()
        assert key not in source.cli("cluster", "getkeysinslot", str(slot), "1000").split()
    finally:
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)
    assert await backend.get_pending(pending.id, now=NOW) == pending


async def test_the_presence_refresh_is_one_script_per_primary(
    cluster_backend: RedisClusterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 32 sockets of 32 users (about 32 slots): before, one script per slot."""
    backend = cluster_backend
    sockets = [(make_record(user=f"p{i}").id, f"socket-{i}") for i in range(32)]
    owners = {backend._multiplexer.node_of(backend.names.presence(s)).name for s, _ in sockets}
    calls: list[list[str]] = []
    run_script = backend._eval

    async def recording(name: str, keys: list[str], argv: list[Any], **options: Any) -> Any:
        if name == "presence":
            calls.append(keys)
        return await run_script(name, keys, argv, **options)

    monkeypatch.setattr(backend, "_eval", recording)
    await backend.set_presence(sockets, until=NOW + 60_000, now=NOW)
    assert len(calls) == len(owners) == 3
    counts = await backend.count_presence([s for s, _ in sockets], now=NOW)
    assert set(counts.values()) == {1}
    await backend.set_presence(sockets, until=None, now=NOW)
    counts = await backend.count_presence([s for s, _ in sockets], now=NOW)
    assert set(counts.values()) == {0}


@pytest.mark.parametrize("stale", ["first", "later"])
async def test_a_presence_refresh_on_a_stale_slot_map_reaches_every_socket(
    cluster_backend: RedisClusterBackend, stale: str
) -> None:
    """The misrouted socket first in its primary's call: ``MOVED``; later: the script
    fails on a key of a slot its node does not serve. Either way every socket is
    refreshed, the call's sockets sent again one script per slot."""
    backend = cluster_backend
    sockets = [(make_record(user=f"q{i}").id, f"socket-{i}") for i in range(12)]
    first = backend._multiplexer.node_of(backend.names.presence(sockets[0][0]))
    if stale == "first":
        _misroute(backend, backend.names.presence(sockets[0][0]))
    else:  # the last socket of another primary, routed after the first socket
        victim = next(
            public_id
            for public_id, _ in reversed(sockets)
            if backend._multiplexer.node_of(backend.names.presence(public_id)) is not first
        )
        _misroute(backend, backend.names.presence(victim), to=first)
    await backend.set_presence(sockets, until=NOW + 60_000, now=NOW)
    counts = await backend.count_presence([s for s, _ in sockets], now=NOW)
    assert set(counts.values()) == {1}, counts
