"""What only a Redis Cluster adds to the contract: slot-local keys, the cross-slot login,
an even spread over the primaries, and the URL and prefix checks."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from redis.crc import key_slot

from backends.test_backend_contract import BY, NOW, make_record, stored
from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import Timeouts, session_channel, user_channel
from sessionwatch.backends.redis_cluster import RedisClusterBackend, cluster_from_url
from sessionwatch.core.exceptions import ConfigurationError
from sessionwatch.core.tokens import new_session_id, public_id, slot_tag, user_tag
from support.events import EventCollector
from support.redis_cluster import RedisCluster


@pytest.fixture(name="cluster_backend")
async def _cluster_backend(
    redis_cluster: RedisCluster, key_prefix: str
) -> AsyncIterator[RedisClusterBackend]:
    backend = RedisClusterBackend(redis_cluster.url, key_prefix=key_prefix)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


async def keys_of(backend: RedisClusterBackend) -> list[str]:
    """Every key under the test's prefix, on every primary."""
    found: list[str] = []
    async for key in backend._cluster.scan_iter(match=f"{backend.key_prefix}*", count=1000):
        found.append(key)
    return found


async def test_a_users_sessions_index_and_tombstones_share_one_slot(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts
) -> None:
    backend = cluster_backend
    ids = []
    for i in range(3):
        record = make_record(user="ines", now=NOW + i)
        await backend.login(None, record, limit=2, deny=False, timeouts=timeouts, now=NOW + i)
        ids.append(record.id)
    await backend.set_presence([(i, "socket") for i in ids], until=NOW + 60_000, now=NOW + 3)
    keys = [k for k in await keys_of(backend) if user_tag("ines") in k]
    # 2 records + 1 tombstone (evicted) + the index + 2 live-socket sets (the evicted
    # session's presence key is gone with it)
    assert len(keys) >= 5
    assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    assert all(slot_tag(i) == user_tag("ines") for i in ids)


async def test_login_from_another_slot_ignores_a_claim_that_raced_it(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The anonymous session and the user's slot differ, so a login is two steps; a tab
    claiming the old session between them changes nothing of the new session: it keeps
    the caller's new tab key and generation (the caller's token passes, no token of the
    old session does), and the old session is gone."""
    backend = cluster_backend
    anonymous = await stored(backend, make_record(), timeouts)
    claimed = await backend.claim(anonymous.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
    assert claimed.gen == 1  # type: ignore[union-attr]
    fresh = replace(make_record(user="jon"), gen=2)
    assert fresh.tab_key != anonymous.tab_key
    assert slot_tag(anonymous.id) != slot_tag(fresh.id)
    run = backend._run

    async def racing(name: str, *args: Any, **options: Any) -> Any:
        if name == "rotate":  # the login script has run on the user's slot
            await backend.claim(anonymous.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
            await backend.claim(anonymous.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
        return await run(name, *args, **options)

    monkeypatch.setattr(backend, "_run", racing)
    await backend.login(anonymous.id, fresh, limit=None, deny=False, timeouts=timeouts, now=NOW)
    monkeypatch.undo()
    found = (await backend.load(fresh.id, timeouts=timeouts, now=NOW)).record
    assert found is not None and found.gen == 2 and found.tab_key == fresh.tab_key
    assert (await backend.load(anonymous.id, timeouts=timeouts, now=NOW)).record is None


async def test_a_user_session_without_the_users_tag_is_refused_changing_nothing(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts
) -> None:
    untagged = replace(make_record(user="kim"), id=public_id(new_session_id()))
    with pytest.raises(ValueError, match="tag"):
        await cluster_backend.login(
            None, untagged, limit=None, deny=False, timeouts=timeouts, now=NOW
        )
    assert (await cluster_backend.list_sessions("kim", timeouts=timeouts, now=NOW)).records == []


@pytest.mark.parametrize("public_id", ["", "a}b", "{x}", "a.b.c", "é"])
async def test_odd_public_ids_are_no_session(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts, public_id: str
) -> None:
    assert not await cluster_backend.end(public_id, "revoked", timeouts=timeouts, now=NOW)


async def test_sessions_spread_evenly_over_the_primaries(
    cluster_backend: RedisClusterBackend, redis_cluster: RedisCluster, timeouts: Timeouts
) -> None:
    backend = cluster_backend
    for batch in range(6):
        await asyncio.gather(
            *(
                backend.login(
                    None,
                    make_record(user=f"user{batch}-{i}"),
                    limit=None,
                    deny=False,
                    timeouts=timeouts,
                    now=NOW,
                )
                for i in range(250)
            )
        )
    owners = {n.port: 0 for n in redis_cluster.primaries()}
    slot_map = redis_cluster.slot_map()
    names = backend.names  # the sessions' keys; not the trail's and the known devices'
    skip = (names.audit(), names.prefix + "k:")
    keys = [k for k in await keys_of(backend) if not k.startswith(skip)]
    slots = collections.Counter(key_slot(k.encode()) for k in keys)
    for slot, count in slots.items():
        owners[slot_map[slot].port] += count
    total = sum(owners.values())
    assert total == 1500 * 2  # a record and an index per user
    assert max(owners.values()) / total < 0.40, owners


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "host:port"),
        ("redis+cluster://h1:6379,h2/", "host:port"),
        ("redis+cluster://h1:99999/", "host:port"),
        ("redis+cluster://h1:6379/3", "database 0"),
    ],
)
def test_bad_cluster_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        backend_from_url(url)


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="brace"):
        backend_from_url("redis+cluster://127.0.0.1:7000/", key_prefix="app{1}:")


async def test_concurrent_first_subscribes_on_one_node_are_all_delivered(
    cluster_backend: RedisClusterBackend,
) -> None:
    """A tab's session and user channels share a slot and the hub subscribes both at
    once: neither may end up on an orphaned connection (which once cost a 5 s timeout
    and a resync, with the event it should have carried lost)."""
    backend = cluster_backend
    record = make_record(user="liv")
    channels = [
        session_channel(backend.key_prefix, record.id),
        user_channel(backend.key_prefix, "liv"),
    ]
    async with EventCollector(backend) as events:
        events.subscription.confirm_timeout = 2.0  # type: ignore[attr-defined]
        async with asyncio.timeout(10):  # connected, with no channel yet (as a hub starts)
            while not events.subscription.connected:  # type: ignore[attr-defined]  # noqa: ASYNC110 (no event in the API)
                await asyncio.sleep(0.01)
        await asyncio.gather(*(events.subscribe(c) for c in channels))
        assert events.subscription.connected  # type: ignore[attr-defined]
        for channel in channels:
            await backend.publish(channel, channel)
        got = {(await events.next_message()).payload for _ in channels}
        assert got == set(channels)
        assert events.subscription.reconnects == 0  # type: ignore[attr-defined]


async def test_a_slot_migration_moves_the_subscription_and_resyncs(
    cluster_backend: RedisClusterBackend, redis_cluster: RedisCluster, timeouts: Timeouts
) -> None:
    """The node that loses a slot drops its shard subscribers (``sunsubscribe``): the
    subscription re-reads the slot map, resubscribes on the new owner and yields a
    resync (the hub then re-checks its tabs); the next event arrives from the new owner."""
    backend = cluster_backend
    record = make_record(user="mig")
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW)
    channel = session_channel(backend.key_prefix, record.id)
    slot = key_slot(backend.names.session(record.id).encode())
    async with EventCollector(backend) as events:
        await events.subscribe(channel)
        source = redis_cluster.slot_map()[slot]
        target = next(n for n in redis_cluster.primaries() if n is not source)
        await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)
        assert redis_cluster.slot_map()[slot] is target
        marker = await events.next_message(timeout=15)
        assert marker.resync
        claimed = await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
        seen, event = await events.next(timeout=10)
        assert (seen, event.type, event.gen) == (channel, "superseded", claimed.gen)  # type: ignore[union-attr]


def test_credentials_and_tls_in_the_url_reach_every_node_client() -> None:
    client, options = cluster_from_url(
        "rediss+cluster://app:p%40ss@[::1]:7000,10.0.0.2:7001/", decode_responses=True
    )
    assert (options["username"], options["password"], options["ssl"]) == ("app", "p@ss", True)
    assert options["decode_responses"] is True  # what the pub/sub clients get too
    assert {(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()} == {
        ("::1", 7000),
        ("10.0.0.2", 7001),
    }


async def test_a_silent_shard_link_is_pinged_then_rebuilt_and_resyncs(
    cluster_backend: RedisClusterBackend, redis_cluster: RedisCluster, timeouts: Timeouts
) -> None:
    """A primary that answers nothing (``CLIENT PAUSE``: as a stalled node or a silent
    partition) is not a quiet channel: its link is pinged once silent for
    ``health_interval``, counted lost when the answer takes over ``reply_timeout``,
    and the subscription rebuilt with a resync; then events arrive again."""
    backend = cluster_backend
    record = make_record(user="quiet")
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW)
    channel = session_channel(backend.key_prefix, record.id)
    node = redis_cluster.slot_map()[key_slot(backend.names.session(record.id).encode())]
    async with EventCollector(backend) as events:
        events.subscription.health_interval = 0.2  # type: ignore[attr-defined]
        events.subscription.reply_timeout = 0.5  # type: ignore[attr-defined]
        await events.subscribe(channel)
        node.cli("client", "pause", "2500", "all")
        marker = await events.next_message(timeout=20)
        assert marker.resync
        claimed = await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
        seen, event = await events.next(timeout=10)
        assert (seen, event.type, event.gen) == (channel, "superseded", claimed.gen)  # type: ignore[union-attr]
