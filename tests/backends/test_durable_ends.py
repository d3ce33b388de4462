"""Durable ends (backends/durable_ends.py): the setting, and on a real primary with a
real replica, which writes wait for the replica and what a stalled replica makes of them.

The replica is stalled with SIGSTOP (it stops acknowledging at once, no wait needed) and
always resumed with SIGCONT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import PendingLogin, RestoreStep, SessionRecord, Timeouts
from sessionwatch.backends.durable_ends import (
    RECHECK_EVERY,
    REPLICA_GRACE,
    DurableEnds,
    online_replicas,
)
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.backends.redis_cluster import RedisClusterBackend
from sessionwatch.core.config import Settings, settings_from_env
from sessionwatch.core.exceptions import BackendUnavailable, ConfigurationError, EndNotDurable
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.redis_cluster import ClusterNode, RedisCluster
from support.redis_server import RedisServer, required

NOW = 1_800_000_000_000
TIMEOUTS = Timeouts(idle=60_000, absolute=3_600_000, refresh=1_000, tombstone=60_000)
WAIT_TIMEOUT = 0.3  # seconds an end waits for the replica in these tests
BOUND = 10  # seconds any one step may take


# -- the setting ---------------------------------------------------------------------


def test_durable_ends_is_on_by_default() -> None:
    assert Settings().durable_ends == "auto"
    assert Settings().durable_ends_timeout == 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), ("AUTO", "auto"), ("off", 0), ("0", 0), ("false", 0), ("1", 1), ("2", 2)],
)
def test_the_environment_sets_durable_ends(value: str, expected: object) -> None:
    settings = settings_from_env({"SESSIONWATCH_DURABLE_ENDS": value})
    assert settings.durable_ends == expected


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SESSIONWATCH_DURABLE_ENDS": "-1"}, "SESSIONWATCH_DURABLE_ENDS"),
        ({"SESSIONWATCH_DURABLE_ENDS": "some"}, "SESSIONWATCH_DURABLE_ENDS"),
        ({"SESSIONWATCH_DURABLE_ENDS": "1.5"}, "SESSIONWATCH_DURABLE_ENDS"),
        ({"SESSIONWATCH_DURABLE_ENDS_TIMEOUT": "0"}, "SESSIONWATCH_DURABLE_ENDS_TIMEOUT"),
        ({"SESSIONWATCH_DURABLE_ENDS_TIMEOUT": "4.5"}, "SESSIONWATCH_DURABLE_ENDS_TIMEOUT"),
    ],
)
def test_bad_durable_ends_values_name_their_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key):
        settings_from_env(environ)


@pytest.mark.parametrize("value", [True, -2, 1.0, "some", [1]])
def test_bad_durable_ends_keywords_are_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="durable_ends"):
        Settings.resolve({"durable_ends": value}, {})


def test_the_setting_reaches_the_redis_backend() -> None:
    backend = backend_from_url("redis://127.0.0.1:1/0", durable_ends=2, durable_ends_timeout=0.5)
    assert isinstance(backend, RedisBackend)
    assert (backend.durable_ends.replicas, backend.durable_ends.timeout_ms) == (2, 500)


# -- how many replicas ---------------------------------------------------------------


async def test_auto_waits_for_one_replica_while_one_is_connected() -> None:
    connected = [0]
    now = [0.0]

    async def replicas() -> int:
        return connected[0]

    ends = DurableEnds("auto", 1.0, replicas, clock=lambda: now[0])
    assert await ends.required() == 0
    connected[0] = 3
    assert await ends.required() == 0  # looked at a moment ago
    now[0] += RECHECK_EVERY + 0.1
    assert await ends.required() == 1  # one is enough, however many there are
    connected[0] = 0
    ends.forget()  # after a failure: look again at once
    # The replica just left (promoted by a failover?): ends still wait for one.
    assert await ends.required() == 1
    now[0] += REPLICA_GRACE - 1
    ends.forget()
    assert await ends.required() == 1
    now[0] += 1.1  # gone longer than the grace: paused
    ends.forget()
    assert await ends.required() == 0
    connected[0] = 1
    ends.forget()
    assert await ends.required() == 1


async def test_a_count_is_used_as_given_and_a_shortfall_is_a_503() -> None:
    async def never() -> int:
        raise AssertionError("a fixed count reads no replica list")

    ends = DurableEnds(2, 0.25, never)
    assert await ends.required() == 2
    ends.check(2, 2)
    ends.check(None, 2)  # nothing that needed a replica
    with pytest.raises(EndNotDurable, match="1 of 2 replica") as refused:
        ends.check(1, 2)
    assert isinstance(refused.value, BackendUnavailable)
    assert refused.value.code == "backend_unavailable"


def test_auto_counts_only_replicas_past_their_first_sync() -> None:
    info = {
        "role": "master",
        "connected_slaves": 2,
        "slave0": {"ip": "127.0.0.1", "port": 1, "state": "wait_bgsave", "offset": 0},
        "slave1": {"ip": "127.0.0.1", "port": 2, "state": "online", "offset": 9},
    }
    assert online_replicas(info) == 1
    assert online_replicas({"role": "master", "connected_slaves": 0}) == 0


# -- on a real primary and replica ---------------------------------------------------


@pytest.fixture(scope="module", name="primary")
def _primary() -> Iterator[RedisServer]:
    with required(RedisServer) as server:
        yield server


@pytest.fixture(scope="module", name="replica")
def _replica(primary: RedisServer) -> Iterator[RedisServer]:
    with required(
        lambda: RedisServer(args=("--replicaof", "127.0.0.1", str(primary.port)))
    ) as server:
        yield server


@contextlib.contextmanager
def stalled(server: RedisServer) -> Iterator[None]:
    """``server`` stopped (SIGSTOP): it acknowledges nothing until resumed."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def in_sync(primary: RedisServer) -> None:
    """Wait until the replica acknowledged everything the primary has written."""
    client = aioredis.Redis(port=primary.port, decode_responses=True)
    try:
        await client.set("sync-probe", "1")
        assert await asyncio.wait_for(client.execute_command("WAIT", 1, 5000), BOUND) == 1
    finally:
        await client.aclose()


async def waits(primary: RedisServer | ClusterNode) -> int:
    client = aioredis.Redis(port=primary.port, decode_responses=True)
    try:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_wait", {}).get("calls", 0))
    finally:
        await client.aclose()


@pytest.fixture(name="backend")
async def _backend(
    primary: RedisServer, replica: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[RedisBackend]:
    setting = getattr(request, "param", "auto")
    backend = RedisBackend(
        primary.url,
        key_prefix=f"durable:{uuid.uuid4().hex[:8]}:",
        durable_ends=setting,
        durable_ends_timeout=WAIT_TIMEOUT,
    )
    await backend.connect()
    await in_sync(primary)
    try:
        yield backend
    finally:
        await backend.disconnect()


def record_of(user: str) -> SessionRecord:
    return SessionRecord(
        id=public_id(new_session_id(user_tag(user))),
        user=user,
        created=NOW,
        seen=NOW,
        absolute_expiry=NOW + TIMEOUTS.absolute,
        gen=0,
        tab_key="k" * 32,
        device={"browser": "Firefox", "os": "Linux", "place": "x"},
    )


async def signed_in(
    backend: RedisBackend | RedisClusterBackend, user: str, limit: int | None = None
) -> SessionRecord:
    record = record_of(user)
    await asyncio.wait_for(
        backend.login(None, record, limit=limit, deny=False, timeouts=TIMEOUTS, now=NOW), BOUND
    )
    return record


async def is_live(backend: RedisBackend | RedisClusterBackend, record: SessionRecord) -> bool:
    found = await backend.load(record.id, timeouts=TIMEOUTS, now=NOW + 1, touch=False)
    return found.record is not None


async def test_ends_wait_for_the_replica(backend: RedisBackend, primary: RedisServer) -> None:
    before = await waits(primary)
    one, two, three = [await signed_in(backend, "ann") for _ in range(3)]
    assert await waits(primary) == before  # sign-ins do not wait
    assert await backend.end(one.id, "logged_out", timeouts=TIMEOUTS, now=NOW + 1)
    assert await backend.end_user("ann", except_id=two.id, detail="x", timeouts=TIMEOUTS, now=NOW)
    assert await waits(primary) == before + 2
    await signed_in(backend, "ann", limit=1)  # evicts ``two``: waits
    assert await waits(primary) == before + 3
    assert not await is_live(backend, two) and not await is_live(backend, three)


async def test_an_end_after_the_script_cache_was_flushed_needs_no_eval(
    primary: RedisServer, replica: RedisServer
) -> None:
    """A new primary (or a flushed cache) has not loaded the end's script: it is loaded
    and run by SHA, as every other script, never sent with ``EVAL``, which the documented
    ACL user may not run (before: the end was refused NOPERM, 503 on every repeat)."""
    password = "pw-" + uuid.uuid4().hex
    admin = aioredis.Redis(port=primary.port, decode_responses=True)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "noeval", "on", f">{password}", "~*", "&*", "+@all", "-eval",
            "-eval_ro",
        )  # fmt: skip
        backend = RedisBackend(
            f"redis://noeval:{password}@127.0.0.1:{primary.port}/0",
            key_prefix=f"durable:{uuid.uuid4().hex[:8]}:",
            durable_ends=1,
            durable_ends_timeout=WAIT_TIMEOUT,
        )
        await asyncio.wait_for(backend.connect(), BOUND)
        try:
            await in_sync(primary)
            one = await signed_in(backend, "noah")
            await admin.script_flush()
            before = await waits(primary)
            assert await asyncio.wait_for(
                backend.end(one.id, "logged_out", timeouts=TIMEOUTS, now=NOW + 1), BOUND
            )
            assert await waits(primary) > before  # it waited for the replica
            assert not await is_live(backend, one)
        finally:
            await asyncio.wait_for(backend.disconnect(), BOUND)
    finally:
        await admin.execute_command("ACL", "DELUSER", "noeval")
        await admin.aclose()


async def test_the_ask_completion_waits_only_when_it_evicted(
    backend: RedisBackend, primary: RedisServer
) -> None:
    """Issue 27: the chooser's completion is an end when it evicts the chosen session
    (it waits for the replica, as login's evictions do), a plain sign-in otherwise."""
    first, second = [await signed_in(backend, "eve") for _ in range(2)]

    async def complete(evict: list[str]) -> list[str]:
        token = public_id(new_session_id(user_tag("eve")))
        await backend.put_pending(PendingLogin(token, "eve", "", NOW + 60_000), now=NOW)
        return await asyncio.wait_for(
            backend.complete_login(
                PendingLogin(token, "eve", "", NOW + 60_000),
                None,
                record_of("eve"),
                evict=evict,
                limit=2,
                timeouts=TIMEOUTS,
                now=NOW,
            ),
            BOUND,
        )

    before = await waits(primary)
    assert await complete([second.id]) == [second.id]
    assert await waits(primary) == before + 1
    await backend.end(first.id, "logged_out", timeouts=TIMEOUTS, now=NOW)
    assert await complete([]) == []  # below the limit: nothing evicted, nothing waits
    assert await waits(primary) == before + 2  # (the logout's wait only)


async def test_a_stalled_replica_makes_every_end_a_503_but_not_a_sign_in(
    backend: RedisBackend, replica: RedisServer
) -> None:
    first, second, third = [await signed_in(backend, "bea") for _ in range(3)]
    with stalled(replica):
        started = time.monotonic()
        with pytest.raises(EndNotDurable):
            await asyncio.wait_for(
                backend.end(first.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
            )
        assert time.monotonic() - started < WAIT_TIMEOUT + 1
        # It ran on the primary (its tabs are refused here), it is just not safe yet...
        assert not await is_live(backend, first)
        # ...and repeating it is not taken as done until a replica has the first run.
        with pytest.raises(EndNotDurable):
            await asyncio.wait_for(
                backend.end(first.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
            )
        with pytest.raises(EndNotDurable):  # eviction at the limit
            await signed_in(backend, "bea", limit=1)
        assert not await is_live(backend, second) and not await is_live(backend, third)
        with pytest.raises(EndNotDurable):  # the session that sign-in made
            await asyncio.wait_for(
                backend.end_user("bea", except_id=None, detail="x", timeouts=TIMEOUTS, now=NOW),
                BOUND,
            )
        started = time.monotonic()
        await signed_in(backend, "cid")  # grants access: asynchronous, answered at once
        assert time.monotonic() - started < WAIT_TIMEOUT
    await in_sync_of(backend)
    assert not await backend.end(first.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1)


async def in_sync_of(backend: RedisBackend) -> None:
    """Wait (bounded) until the resumed replica acknowledges again."""
    deadline = time.monotonic() + BOUND
    while True:
        try:
            await asyncio.wait_for(
                backend.end_user("nobody", except_id=None, detail="x", timeouts=TIMEOUTS, now=NOW),
                BOUND,
            )
            return
        except EndNotDurable:
            assert time.monotonic() < deadline, "the replica did not come back"


@pytest.mark.parametrize("backend", [0], indirect=True)
async def test_off_answers_without_waiting(backend: RedisBackend, replica: RedisServer) -> None:
    record = await signed_in(backend, "dot")
    with stalled(replica):
        assert await asyncio.wait_for(
            backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), WAIT_TIMEOUT
        )


async def test_a_count_without_replicas_refuses_ends(redis_url: str) -> None:
    backend = RedisBackend(
        redis_url,
        key_prefix=f"durable:{uuid.uuid4().hex[:8]}:",
        durable_ends=1,
        durable_ends_timeout=0.1,
    )
    await backend.connect()
    try:
        record = await signed_in(backend, "eve")
        with pytest.raises(EndNotDurable):
            await asyncio.wait_for(
                backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
            )
    finally:
        await backend.disconnect()


async def test_on_a_cluster_an_end_waits_on_the_primary_of_its_slot(
    redis_cluster: RedisCluster,
) -> None:
    # Two replicas asked for, one per primary in the test cluster: the shortfall shows
    # that WAIT ran where the end did, and nothing of the shared cluster is disturbed.
    backend = RedisClusterBackend(
        redis_cluster.url,
        key_prefix=f"durable{uuid.uuid4().hex[:8]}:",
        durable_ends=2,
        durable_ends_timeout=0.1,
    )
    await backend.connect()
    try:
        record = await signed_in(backend, "fay")
        primary = redis_cluster.node_for_key(backend.names.session(record.id))
        for node in redis_cluster.primaries():  # past the first sync: they acknowledge
            redis_cluster.wait_replicated(node)
        assert await backend._connected_replicas() == 1  # what auto reads: each has one
        before = await waits(primary)
        with pytest.raises(EndNotDurable, match="1 of 2 replica"):
            await asyncio.wait_for(
                backend.end(record.id, "revoked", timeouts=TIMEOUTS, now=NOW + 1), BOUND
            )
        assert await waits(primary) == before + 1
        assert not await is_live(backend, record)
    finally:
        await backend.disconnect()


async def test_a_detected_token_reuse_is_a_durable_end_and_a_rotation_is_not(
    backend: RedisBackend, primary: RedisServer, replica: RedisServer
) -> None:
    """Remember-me (docs/policies.md): the restore that rotates a token grants access
    (asynchronous); the one that finds a token used twice ends the family and its
    session, and waits for the replica like any other end."""
    first = await signed_in(backend, "dee")
    family = user_tag("dee") + ".durable-family-0000000"
    assert await backend.remember_start(
        first, family, "hash-1", lifetime=600_000, timeouts=TIMEOUTS, now=NOW
    )
    restored = replace(record_of("dee"), family=family)
    before = await waits(primary)
    rotation = RestoreStep(family, 1, "hash-1", "hash-2", first.id, restored, None, False, 0)
    assert (await backend.remember_restore(rotation, timeouts=TIMEOUTS, now=NOW + 1)).outcome == (
        "rotated"
    )
    assert await waits(primary) == before  # a rotation grants access: no wait
    reuse = RestoreStep(family, 1, "hash-1", "hash-2", restored.id, restored, None, False, 0)
    with stalled(replica), pytest.raises(EndNotDurable):
        await asyncio.wait_for(
            backend.remember_restore(reuse, timeouts=TIMEOUTS, now=NOW + 2), BOUND
        )
    assert not await is_live(backend, restored)  # ended on the primary, not yet safe
    assert await waits(primary) == before + 1


async def test_an_end_on_a_primary_whose_replica_was_just_promoted_is_a_503(
    backend: RedisBackend, primary: RedisServer, replica: RedisServer
) -> None:
    """A failover the old primary did not take part in (``SENTINEL FAILOVER``, a
    partition): its replica is promoted (``REPLICAOF NO ONE``) and the old primary,
    not yet demoted, reports no replica while it still accepts writes, which it will
    discard when it becomes a replica. An end acknowledged there would be undone
    (issue 23's overlap soak: 93 ended sessions alive again). Before: ``auto`` saw no
    replica and acknowledged it unreplicated; now it still waits, and the end is 503."""
    record = await signed_in(backend, "dora")
    promoted = aioredis.Redis(port=replica.port, decode_responses=True)
    try:
        await promoted.execute_command("REPLICAOF", "NO", "ONE")
        old = aioredis.Redis(port=primary.port, decode_responses=True)
        for _ in range(200):  # the old primary notices its replica is gone
            if online_replicas(await old.info("replication")) == 0:
                break
            await asyncio.sleep(0.05)
        await old.aclose()
        backend.durable_ends.forget()  # as after any failure, or within RECHECK_EVERY
        with pytest.raises(EndNotDurable):
            await backend.end(record.id, "logged_out", timeouts=TIMEOUTS, now=NOW + 1)
    finally:
        await promoted.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        await promoted.aclose()
        await asyncio.wait_for(in_sync(primary), BOUND * 3)
