"""One table of key and channel names (``backends/keys.py``) for Python and the scripts:
the Lua helper derives the names a script learns at run time exactly as the table does,
every script call's ``KEYS`` share one slot on a real cluster, and no Lua file spells a
name."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from backends.test_backend_contract import BY, NOW, make_record, stored
from backends.test_cluster_layout import _cluster_backend  # noqa: F401 (the fixture)
from sessionwatch.backends.base import PendingLogin, RestoreStep, Timeouts
from sessionwatch.backends.keys import (
    ClusterKeyNames,
    KeyNames,
    key_names,
    session_channel,
    user_channel,
)
from sessionwatch.backends.memory import MemoryBackend
from sessionwatch.backends.redis_cluster import RedisClusterBackend
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.events import EventCollector
from support.redis_cluster import RedisCluster

_LUA = resources.files("sessionwatch.backends").joinpath("lua")

# A script made of the prelude (with the names helper) and a probe that returns, for each
# (kind, id) pair of ARGV[7..], the name the helper derives: nothing is declared, so
# every name is derived as for a session found in a user's index.
_PROBE = """
local out = {}
for i = 7, #ARGV - 1, 2 do
  local kind, id = ARGV[i], ARGV[i + 1]
  if kind == 'u' or kind == 'cu' or kind == 'uf' or kind == 'k' then
    out[#out + 1] = user_name(kind, id)
  else
    out[#out + 1] = session_name(kind, id)
  end
end
return out
"""
_SESSION_KINDS = {
    "s": KeyNames.session,
    "t": KeyNames.tombstone,
    "l": KeyNames.presence,
    "cs": KeyNames.session_channel,
    "f": KeyNames.family,  # a remember-me family id is tagged as a session id
}
_USER_KINDS = {
    "u": KeyNames.index,
    "cu": KeyNames.user_channel,
    "uf": KeyNames.families,
    "k": KeyNames.known,
}


def _probe_source() -> str:
    prelude = _LUA.joinpath("_prelude.lua").read_text("utf-8")
    names = _LUA.joinpath("_names.lua").read_text("utf-8")
    return prelude.replace("--@names\n", names, 1) + _PROBE


@pytest.fixture(name="redis_client")
async def _redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


async def derived(
    client: aioredis.Redis, names: KeyNames, routed_by: str, pairs: list[tuple[str, str]]
) -> list[str]:
    """What ``_names.lua`` derives for ``pairs`` in a call routed by ``routed_by``."""
    # ARGV[7], the deadline the prelude takes out: far ahead (this probe is never late);
    # then the audit context it takes out too ('': the trail off).
    deadline = int(time.time() * 1000) + 60_000
    pairs_argv = (v for pair in pairs for v in pair)
    argv = [names.script_names(), NOW, 0, 0, 0, 0, deadline, "", *pairs_argv]
    return list(await client.eval(_probe_source(), 1, routed_by, *argv))  # type: ignore[misc]


def expected(names: KeyNames, pairs: list[tuple[str, str]]) -> list[str]:
    table = {**_SESSION_KINDS, **_USER_KINDS}
    return [table[kind](names, value) for kind, value in pairs]


def _session_pairs(*ids: str) -> list[tuple[str, str]]:
    return [(kind, i) for i in ids for kind in _SESSION_KINDS]


@pytest.mark.parametrize("prefix", ["sw:", "swtest:x:", "app/β:"])
async def test_lua_derives_the_plain_names_of_the_python_table(
    redis_client: aioredis.Redis, prefix: str
) -> None:
    names = key_names(prefix, "plain")
    anonymous = public_id(new_session_id())
    tagged = public_id(new_session_id(user_tag("ines")))
    pairs = _session_pairs(anonymous, tagged) + [
        (kind, user) for user in ("ines", "a{b}c", "名前") for kind in _USER_KINDS
    ]
    got = await derived(redis_client, names, names.session(anonymous), pairs)
    assert got == expected(names, pairs)
    assert names.session(anonymous) == f"{prefix}s:{anonymous}"  # the documented layout


@pytest.mark.parametrize("user", ["ines", "a.b", "名前"])
async def test_lua_derives_the_tagged_names_of_the_python_table(
    redis_client: aioredis.Redis, user: str
) -> None:
    names = key_names("sw:", "cluster")
    ids = [public_id(new_session_id(user_tag(user))) for _ in range(3)]
    pairs = _session_pairs(*ids) + [(kind, user) for kind in _USER_KINDS]
    for routed_by in (names.index(user), names.session(ids[0])):
        got = await derived(redis_client, names, routed_by, pairs)
        assert got == expected(names, pairs)
        assert len({key_slot(name.encode()) for name in got}) == 1
    anonymous = public_id(new_session_id())
    pairs = _session_pairs(anonymous)
    got = await derived(redis_client, names, names.session(anonymous), pairs)
    assert got == expected(names, pairs) and got[0] == "sw:s:{" + anonymous + "}"


async def test_lua_refuses_to_derive_a_name_of_another_slot(
    redis_client: aioredis.Redis,
) -> None:
    names = key_names("sw:", "cluster")
    mine = public_id(new_session_id(user_tag("ines")))
    other = public_id(new_session_id(user_tag("jon")))
    with pytest.raises(ResponseError, match="not in the slot"):
        await derived(redis_client, names, names.session(mine), _session_pairs(other))
    with pytest.raises(ResponseError, match="no hash tag"):
        await derived(redis_client, names, "sw:s:untagged", _session_pairs(mine))


def test_the_memory_backend_names_channels_by_the_table() -> None:
    backend = MemoryBackend(key_prefix="p:")
    assert backend.names.session_channel("abc") == session_channel("p:", "abc") == "p:c:s:abc"
    assert backend.names.user_channel("ines") == user_channel("p:", "ines") == "p:c:u:ines"


def test_the_cluster_maps_logical_channels_to_its_shard_channels() -> None:
    names = ClusterKeyNames("p:")
    tagged = public_id(new_session_id(user_tag("ines")))
    assert names.physical(session_channel("p:", tagged)) == names.session_channel(tagged)
    assert names.physical(user_channel("p:", "ines")) == names.user_channel("ines")
    assert names.user_channel("ines") == "p:c:u:{" + user_tag("ines") + "}ines"
    assert names.physical("other") == "{other}"


# -- no Lua file spells a name ------------------------------------------------------------

_LITERAL = re.compile(r"""(['"])(.*?)\1""")


def _lua_literals() -> Iterator[tuple[str, str]]:
    for entry in _LUA.iterdir():
        if entry.name.endswith(".lua"):
            for line in entry.read_text("utf-8").splitlines():
                code = line.split("--", 1)[0]
                for match in _LITERAL.finditer(code):
                    yield entry.name, match.group(2)


def test_no_lua_file_contains_a_key_name_literal() -> None:
    literals = list(_lua_literals())
    assert len(literals) > 20  # the scan sees the scripts' strings
    heads = ("s:", "t:", "l:", "u:", "c:s:", "c:u:", "sw:")
    spelled = [(f, s) for f, s in literals if s.endswith(":") or any(h in s for h in heads)]
    assert spelled == []


# -- every call's KEYS in one slot, on the cluster ----------------------------------------


async def test_every_script_call_declares_keys_of_one_slot(
    cluster_backend: RedisClusterBackend,
    redis_cluster: RedisCluster,
    timeouts: Timeouts,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = cluster_backend
    calls: list[tuple[str, list[str]]] = []
    run_script = backend._eval

    async def recording(name: str, keys: list[str], argv: list[Any], **options: Any) -> Any:
        calls.append((name, list(keys)))
        return await run_script(name, keys, argv, **options)

    monkeypatch.setattr(backend, "_eval", recording)
    end_and_wait = backend._end_and_wait  # the ends, when they wait for a replica

    async def recording_end(name: str, keys: list[str], *rest: Any) -> Any:
        calls.append((name, list(keys)))
        return await end_and_wait(name, keys, *rest)

    monkeypatch.setattr(backend, "_end_and_wait", recording_end)
    anonymous = await stored(backend, make_record(), timeouts)
    await backend.load(anonymous.id, timeouts=timeouts, now=NOW)
    await backend.extend(anonymous.id, timeouts=timeouts, now=NOW)
    await backend.save_data(anonymous.id, "{}", timeouts=timeouts, now=NOW)
    await backend.claim(anonymous.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
    first = make_record(user="ines")
    await backend.login(anonymous.id, first, limit=2, deny=False, timeouts=timeouts, now=NOW)
    second = make_record(user="ines", now=NOW + 1)
    await backend.login(first.id, second, limit=2, deny=False, timeouts=timeouts, now=NOW + 1)
    for i in range(3):  # evictions: sessions found in the index
        record = make_record(user="ines", now=NOW + 2 + i)
        await backend.login(None, record, limit=2, deny=False, timeouts=timeouts, now=NOW + 2)
    await backend.set_presence(
        [(second.id, "a"), (anonymous.id, "b"), (second.id, "c")], until=NOW + 9, now=NOW
    )
    await backend.list_sessions("ines", timeouts=timeouts, now=NOW + 5)
    await backend.reauthenticated(second.id, timeouts=timeouts, now=NOW + 5)
    # on_limit="ask": the pending sign-in and its completion in the user's slot, the
    # anonymous session of another slot retired afterwards.
    browser = await stored(backend, make_record(), timeouts)
    pending = PendingLogin(public_id(new_session_id(user_tag("ines"))), "ines", browser.id, NOW + 9)
    await backend.put_pending(pending, now=NOW + 5)
    await backend.complete_login(
        pending,
        browser.id,
        make_record(user="ines", now=NOW + 5),
        evict=[
            r.id for r in (await backend.list_sessions("ines", timeouts=timeouts, now=NOW)).records
        ],
        limit=2,
        timeouts=timeouts,
        now=NOW + 5,
    )
    await backend.end(second.id, "logged_out", timeouts=timeouts, now=NOW + 5)
    # Remember-me: a family in the user's slot, a restore from it, then a reuse.
    fresh = make_record(user="ines", now=NOW + 5)
    await backend.login(None, fresh, limit=None, deny=False, timeouts=timeouts, now=NOW + 5)
    family = user_tag("ines") + ".f" + "a" * 21
    await backend.remember_start(
        fresh, family, "h1", lifetime=60_000, timeouts=timeouts, now=NOW + 5
    )
    restored = replace(make_record(user="ines", now=NOW + 6), family=family)
    for hash_ in ("h1", "h0"):  # a rotation, then a reuse
        step = RestoreStep(family, 1, hash_, "h2", fresh.id, restored, None, False, 0)
        await backend.remember_restore(step, timeouts=timeouts, now=NOW + 6)
    await backend.end_user("ines", except_id=None, detail="x", timeouts=timeouts, now=NOW + 5)
    monkeypatch.undo()

    assert {name for name, _ in calls} == set(backend._scripts)  # every script was seen
    slot_map = redis_cluster.slot_map()
    node = aioredis.Redis(port=redis_cluster.primaries()[0].port, decode_responses=True)
    try:
        for name, keys in calls:
            assert keys, name
            slots = {key_slot(k.encode()) for k in keys}
            assert len(slots) == 1, (name, keys)
            (slot,) = slots
            assert await node.execute_command("CLUSTER", "KEYSLOT", keys[-1]) == slot
            assert slot in slot_map
    finally:
        await node.aclose()


async def test_the_tagged_names_are_the_keys_the_scripts_write(
    cluster_backend: RedisClusterBackend, timeouts: Timeouts
) -> None:
    """The table names what the scripts really write and publish: a login that evicts
    (a derived name) leaves the tombstone, index and record under the table's names."""
    backend = cluster_backend
    names = backend.names
    old = make_record(user="oda")
    await backend.login(None, old, limit=1, deny=False, timeouts=timeouts, now=NOW)
    new = make_record(user="oda", now=NOW + 1)
    async with EventCollector(backend) as events:
        await events.subscribe(session_channel(backend.key_prefix, old.id))
        await backend.login(None, new, limit=1, deny=False, timeouts=timeouts, now=NOW + 1)
        channel, event = await events.next()
        assert (channel, event.type) == (session_channel(backend.key_prefix, old.id), "evicted")
    client = backend._cluster
    assert await client.get(names.tombstone(old.id)) == "evicted"
    assert await client.exists(names.session(new.id)) == 1
    assert await client.zrange(names.index("oda"), 0, -1) == [new.id]


def test_rate_keys_per_address_and_per_user() -> None:
    plain, cluster = key_names("sw:", "plain"), key_names("sw:", "cluster")
    assert plain.rate("logins", "203.0.113.7", per="address") == "sw:r:logins:203.0.113.7"
    assert plain.rate("logins", "ines", per="user") == "sw:r:logins:ines"
    tagged = cluster.rate("new_sessions", "2001:db8::/64", per="address")
    assert tagged == "sw:r:new_sessions:{2001:db8::/64}"
    # A user's rate shares the user's slot (a login script could take it in one step).
    for user in ("ines", "a{b}c", "名前"):
        user_rate = cluster.rate("logins_user", user, per="user")
        assert key_slot(user_rate.encode()) == key_slot(cluster.index(user).encode())


def test_the_user_index_pattern_takes_the_prefix_literally_and_reads_users_back() -> None:
    """SCAN MATCH of the admin listing: a prefix with glob characters matches only
    itself; a user is read back from its index key on both topologies, and no other
    key passes for an index (a cluster key whose tag is not the user's)."""
    plain = key_names("a*[b]?\\:")
    assert plain.index_pattern() == "a\\*\\[b\\]\\?\\\\:u:*"
    assert plain.user_of_index(plain.index("ann:x")) == "ann:x"
    assert plain.user_of_index(plain.session("s")) is None
    cluster = key_names("sw:", "cluster")
    assert cluster.user_of_index(cluster.index("ann")) == "ann"
    assert cluster.user_of_index("sw:u:{abc}ann") is None
    assert cluster.user_of_index("sw:u:ann") is None
