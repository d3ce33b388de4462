"""One contract, every backend: the same bodies run on memory://, a real Redis, a real
Sentinel's master (``redis+sentinel://``), a real 6-node Redis Cluster
(``redis+cluster://``, sharded pub/sub) and, in the extended run, a 6-node Cluster with
TLS only and an ACL user (``rediss+cluster://sw:…@…/?ssl_ca_certs=…``)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import (
    EXPIRY_GRACE_MS,
    Backend,
    Claim,
    Lookup,
    SessionRecord,
    Timeouts,
    session_channel,
    user_channel,
)
from sessionwatch.core.events import Device
from sessionwatch.core.exceptions import InvalidPage, SessionLimitReached
from sessionwatch.core.limits import RateRule
from sessionwatch.core.paging import MAX_PAGE_SIZE
from sessionwatch.core.tabs import new_tab_key
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.events import EventCollector

NOW = 1_800_000_000_000


@pytest.fixture(
    params=[
        "memory",
        "redis",
        "sentinel",
        "cluster",
        pytest.param("tls_cluster", marks=pytest.mark.cluster_extended),
    ],
    name="backend_kind",
)
def _backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


BY = Device(browser="Firefox 121", os="Android 14", place="198.51.100.0/24", at=NOW)


def make_record(
    user: str | None = None, now: int = NOW, data: str = "", timeouts: Timeouts | None = None
) -> SessionRecord:
    absolute = timeouts.absolute if timeouts else 12 * 3_600_000
    return SessionRecord(
        id=public_id(new_session_id(user_tag(user) if user else None)),  # as login mints
        user=user,
        created=now,
        seen=now,
        absolute_expiry=now + absolute,
        gen=0,
        tab_key=new_tab_key(),
        device={"browser": "Chrome 120", "os": "Windows 10", "place": "203.0.113.0/24"},
        data=data,
    )


async def stored(backend: Backend, record: SessionRecord, timeouts: Timeouts) -> SessionRecord:
    await backend.create(record, timeouts=timeouts, now=record.created)
    return record


async def listed(backend: Backend, user: str, timeouts: Timeouts, now: int) -> list[SessionRecord]:
    """Every live session of ``user``, following the pages."""
    page = await backend.list_sessions(user, timeouts=timeouts, now=now)
    records = list(page.records)
    while page.next is not None:
        page = await backend.list_sessions(user, timeouts=timeouts, now=now, after=page.next)
        records += page.records
    return records


def schan(backend: Backend, record: SessionRecord | str) -> str:
    return session_channel(backend.key_prefix, record if isinstance(record, str) else record.id)


async def test_create_then_load_round_trips_every_field(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(data='{"cart":[1,2]}'), timeouts)
    found = await backend.load(record.id, timeouts=timeouts, now=NOW + 1000)
    assert found == Lookup(record)


async def test_unknown_id_is_no_session(backend: Backend, timeouts: Timeouts) -> None:
    assert await backend.load("x" * 22, timeouts=timeouts, now=NOW) == Lookup(None, None)


async def test_touch_only_after_refresh_interval_and_publishes_extended(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        early = await backend.load(record.id, timeouts=timeouts, now=NOW + timeouts.refresh - 1)
        assert not early.extended and early.record is not None and early.record.seen == NOW
        await events.nothing()
        later = NOW + timeouts.refresh
        touched = await backend.load(record.id, timeouts=timeouts, now=later)
        assert touched.extended and touched.record is not None and touched.record.seen == later
        channel, event = await events.next()
        assert channel == schan(backend, record)
        assert event.type == "extended" and event.session == record.id
        assert event.fields == {"expires_at": later + timeouts.idle}
        untouched = await backend.load(record.id, timeouts=timeouts, now=later + 1, touch=False)
        assert untouched.record is not None and untouched.record.seen == later


async def test_extend_touches_regardless_of_interval(backend: Backend, timeouts: Timeouts) -> None:
    record = await stored(backend, make_record(), timeouts)
    found = await backend.extend(record.id, timeouts=timeouts, now=NOW + 5)
    assert found.extended and found.record is not None and found.record.seen == NOW + 5


async def test_idle_expiry_ends_session_with_event_and_tombstone(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(user=None), timeouts)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        alive = await backend.load(
            record.id, timeouts=timeouts, now=NOW + timeouts.idle - 1, touch=False
        )
        assert alive.record is not None
        gone = await backend.load(record.id, timeouts=timeouts, now=NOW + timeouts.idle)
        assert gone == Lookup(None, "expired")
        _, event = await events.next()
        assert event.type == "expired" and event.session == record.id
        again = await backend.load(record.id, timeouts=timeouts, now=NOW + timeouts.idle + 10)
        assert again == Lookup(None, "expired")
        await events.nothing()


async def test_absolute_expiry_despite_activity(backend: Backend, timeouts: Timeouts) -> None:
    record = await stored(backend, make_record(), timeouts)
    now = NOW
    while now + timeouts.idle // 2 < NOW + timeouts.absolute:
        now += timeouts.idle // 2
        found = await backend.load(record.id, timeouts=timeouts, now=now)
        assert found.record is not None, now - NOW
    assert await backend.load(record.id, timeouts=timeouts, now=NOW + timeouts.absolute) == Lookup(
        None, "expired"
    )


async def test_claims_increment_gen_and_supersede_only_when_exclusive(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        first = await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
        claimed = replace(record, gen=1, claimed_by=BY.to_json())
        assert first == Claim(1, record.tab_key, NOW + timeouts.idle, claimed)
        _, event = await events.next()
        assert event.type == "superseded" and event.gen == 1 and event.session == record.id
        assert Device.from_json(event.fields["by"]) == BY  # another browser: not the same
        second = await backend.claim(record.id, BY, exclusive=False, timeouts=timeouts, now=NOW)
        assert isinstance(second, Claim) and second.gen == 2
        await events.nothing()
    found = await backend.load(record.id, timeouts=timeouts, now=NOW, touch=False)
    assert (
        found.record is not None
        and found.record.gen == 2
        and found.record.claimed_by == BY.to_json()
    )


async def test_a_claim_from_the_creating_browser_is_the_same_browser(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    device = record.device
    mine = Device(browser=device["browser"], os=device["os"], place=device["place"], at=NOW)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        claim = await backend.claim(record.id, mine, exclusive=True, timeouts=timeouts, now=NOW)
        _, event = await events.next()
    assert isinstance(claim, Claim)
    assert claim.record.claimed_by == replace(mine, same_browser=True).to_json()
    assert event.fields["by"] == replace(mine, same_browser=True).to_json()
    elsewhere = replace(mine, place="192.0.2.0/24")  # same browser, another network
    claim = await backend.claim(record.id, elsewhere, exclusive=False, timeouts=timeouts, now=NOW)
    assert isinstance(claim, Claim) and claim.record.claimed_by == elsewhere.to_json()


async def test_a_claim_is_activity_and_refreshes_the_idle_deadline_when_due(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(data='{"a":1}'), timeouts)
    early = NOW + timeouts.refresh - 1
    claim = await backend.claim(record.id, BY, exclusive=False, timeouts=timeouts, now=early)
    assert isinstance(claim, Claim) and claim.record.seen == NOW
    assert claim.record.data == '{"a":1}' and claim.record.user is None
    due = NOW + timeouts.refresh
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        claim = await backend.claim(record.id, BY, exclusive=False, timeouts=timeouts, now=due)
        _, event = await events.next()
    assert isinstance(claim, Claim) and claim.record.seen == due
    assert claim.expires_at == due + timeouts.idle
    assert event.type == "extended" and event.fields["expires_at"] == due + timeouts.idle
    found = await backend.load(record.id, timeouts=timeouts, now=due, touch=False)
    assert found.record == claim.record


async def test_claim_on_ended_session_says_why(backend: Backend, timeouts: Timeouts) -> None:
    record = await stored(backend, make_record(), timeouts)
    assert await backend.end(record.id, "revoked", timeouts=timeouts, now=NOW, detail="admin")
    result = await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
    assert result == Lookup(None, "revoked")
    assert await backend.claim("y" * 22, BY, exclusive=True, timeouts=timeouts, now=NOW) == Lookup(
        None, None
    )


async def test_save_data_never_resurrects_an_ended_session(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    assert await backend.save_data(record.id, '{"a":1}', timeouts=timeouts, now=NOW)
    found = await backend.load(record.id, timeouts=timeouts, now=NOW, touch=False)
    assert found.record is not None and found.record.data == '{"a":1}'
    await backend.end(record.id, "logged_out", timeouts=timeouts, now=NOW)
    assert not await backend.save_data(record.id, '{"a":2}', timeouts=timeouts, now=NOW)
    assert (await backend.load(record.id, timeouts=timeouts, now=NOW)).record is None


async def test_login_rotates_carrying_data_but_no_claim_state(
    backend: Backend, timeouts: Timeouts
) -> None:
    """The new record is stored as given: the caller's data, its own claim generation,
    tab key and claimer. Nothing of the old claim survives (issue 12, hole 2: a carried
    tab key kept pre-login tokens valid)."""
    anonymous = await stored(backend, make_record(data='{"cart":[3]}'), timeouts)
    await backend.claim(anonymous.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
    fresh = replace(
        make_record(user="alice", now=NOW + 5, data='{"cart":[3],"user":"alice"}'),
        gen=2,
        claimed_by={**BY.to_json(), "same_browser": True},
    )
    assert fresh.tab_key != anonymous.tab_key
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, anonymous), user_channel(backend.key_prefix, "alice"))
        evicted = await backend.login(
            anonymous.id, fresh, limit=None, deny=False, timeouts=timeouts, now=NOW + 5
        )
        assert evicted == []
        seen = {}
        for _ in range(2):
            channel, event = await events.next()
            seen[event.type] = (channel, event)
        assert seen["rotated"][0] == schan(backend, anonymous)
        signed_in = seen["signed_in"][1]
        assert signed_in.session == fresh.id
        assert (
            signed_in.fields["by"]["browser"] == "Chrome 120"
            and signed_in.fields["by"]["at"] == NOW + 5
        )
    assert await backend.load(anonymous.id, timeouts=timeouts, now=NOW + 5) == Lookup(None, None)
    found = (await backend.load(fresh.id, timeouts=timeouts, now=NOW + 5)).record
    assert found is not None
    assert (found.user, found.gen, found.tab_key, found.data) == (
        "alice",
        2,
        fresh.tab_key,
        fresh.data,
    )
    assert found.claimed_by == fresh.claimed_by
    assert [r.id for r in await listed(backend, "alice", timeouts, NOW + 5)] == [fresh.id]


async def test_evict_oldest_at_the_limit(backend: Backend, timeouts: Timeouts) -> None:
    ids = []
    for i in range(3):
        record = make_record(user="bob", now=NOW + i)
        assert (
            await backend.login(
                None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + i
            )
            == []
        )
        ids.append(record.id)
    newest = make_record(user="bob", now=NOW + 10)
    async with EventCollector(backend) as events:
        await events.subscribe(*(schan(backend, i) for i in ids))
        evicted = await backend.login(
            None, newest, limit=2, deny=False, timeouts=timeouts, now=NOW + 10
        )
        assert evicted == ids[:2]
        got = sorted(
            [(await events.next())[1] for _ in range(2)], key=lambda e: ids.index(e.session or "")
        )
        assert [e.type for e in got] == ["evicted", "evicted"]
        assert got[0].fields["by"]["browser"] == "Chrome 120"
    live = await listed(backend, "bob", timeouts, NOW + 10)
    assert [r.id for r in live] == [ids[2], newest.id]
    assert await backend.load(ids[0], timeouts=timeouts, now=NOW + 10) == Lookup(None, "evicted")


async def test_deny_at_the_limit_changes_nothing(backend: Backend, timeouts: Timeouts) -> None:
    first = make_record(user="carol")
    await backend.login(None, first, limit=1, deny=True, timeouts=timeouts, now=NOW)
    anonymous = await stored(backend, make_record(), timeouts)
    with pytest.raises(SessionLimitReached) as caught:
        await backend.login(
            anonymous.id, make_record(user="carol"), limit=1, deny=True, timeouts=timeouts, now=NOW
        )
    assert caught.value.limit == 1 and caught.value.user_id == "carol"
    assert (await backend.load(anonymous.id, timeouts=timeouts, now=NOW)).record is not None
    assert [r.id for r in await listed(backend, "carol", timeouts, NOW)] == [first.id]


async def test_relogin_from_the_same_session_never_counts_twice(
    backend: Backend, timeouts: Timeouts
) -> None:
    current = make_record(user="dave")
    await backend.login(None, current, limit=1, deny=True, timeouts=timeouts, now=NOW)
    for i in range(3):
        nxt = make_record(user="dave", now=NOW + i + 1)
        assert (
            await backend.login(
                current.id, nxt, limit=1, deny=True, timeouts=timeouts, now=NOW + i + 1
            )
            == []
        )
        current = nxt
    assert [r.id for r in await listed(backend, "dave", timeouts, NOW + 9)] == [current.id]


async def test_login_switching_user_leaves_the_old_users_index(
    backend: Backend, timeouts: Timeouts
) -> None:
    as_erin = make_record(user="erin")
    await backend.login(None, as_erin, limit=None, deny=False, timeouts=timeouts, now=NOW)
    as_frank = make_record(user="frank")
    await backend.login(as_erin.id, as_frank, limit=None, deny=False, timeouts=timeouts, now=NOW)
    assert await listed(backend, "erin", timeouts, NOW) == []
    assert [r.id for r in await listed(backend, "frank", timeouts, NOW)] == [as_frank.id]


async def test_end_checks_owner_and_publishes_reason(backend: Backend, timeouts: Timeouts) -> None:
    record = make_record(user="gina")
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW)
    assert not await backend.end(record.id, "revoked", timeouts=timeouts, now=NOW, user="mallory")
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        assert await backend.end(
            record.id, "revoked", timeouts=timeouts, now=NOW, user="gina", detail="password_changed"
        )
        _, event = await events.next()
        assert event.type == "revoked" and event.fields == {"reason": "password_changed"}
    assert not await backend.end(record.id, "revoked", timeouts=timeouts, now=NOW)
    assert await backend.load(record.id, timeouts=timeouts, now=NOW) == Lookup(None, "revoked")
    assert await listed(backend, "gina", timeouts, NOW) == []


async def test_logout_publishes_logged_out(backend: Backend, timeouts: Timeouts) -> None:
    record = await stored(backend, make_record(), timeouts)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, record))
        assert await backend.end(record.id, "logged_out", timeouts=timeouts, now=NOW)
        _, event = await events.next()
        assert event.type == "logged_out" and event.fields == {}
    assert await backend.load(record.id, timeouts=timeouts, now=NOW) == Lookup(None, "logged_out")


async def test_end_user_spares_the_current_session(backend: Backend, timeouts: Timeouts) -> None:
    records = [make_record(user="hank", now=NOW + i) for i in range(4)]
    for r in records:
        await backend.login(None, r, limit=None, deny=False, timeouts=timeouts, now=r.created)
    count = await backend.end_user(
        "hank",
        except_id=records[1].id,
        detail="signed_out_elsewhere",
        timeouts=timeouts,
        now=NOW + 9,
    )
    assert count == 3
    assert [r.id for r in await listed(backend, "hank", timeouts, NOW + 9)] == [records[1].id]


async def test_list_prunes_expired_sessions(backend: Backend, timeouts: Timeouts) -> None:
    old = make_record(user="ivy", now=NOW)
    young = make_record(user="ivy", now=NOW + timeouts.idle // 2)
    await backend.login(None, old, limit=None, deny=False, timeouts=timeouts, now=NOW)
    await backend.login(None, young, limit=None, deny=False, timeouts=timeouts, now=young.created)
    at = NOW + timeouts.idle
    assert [r.id for r in await listed(backend, "ivy", timeouts, at)] == [young.id]
    # the expired member no longer counts towards the limit either
    newest = make_record(user="ivy", now=at)
    assert await backend.login(None, newest, limit=2, deny=True, timeouts=timeouts, now=at) == []


async def signed_in(
    backend: Backend, user: str, timeouts: Timeouts, times: list[int]
) -> list[SessionRecord]:
    """One session of ``user`` created at each of ``times`` (no limit, no ceiling)."""
    records = []
    for at in times:
        record = make_record(user=user, now=at)
        await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=at)
        records.append(record)
    return records


async def test_listing_pages_are_bounded_in_a_stable_order_and_resume_after_an_ended_cursor(
    backend: Backend, timeouts: Timeouts
) -> None:
    """Issue 22, item 6: a page holds at most ``limit`` sessions, by (created, id); the
    next page starts after the cursor even when the cursor's session has ended."""
    records = await signed_in(
        backend, "pia", timeouts, [NOW, NOW, NOW, NOW + 1, NOW + 2, NOW + 2, NOW + 3]
    )
    order = [r.id for r in sorted(records, key=lambda r: (r.created, r.id))]
    first = await backend.list_sessions("pia", timeouts=timeouts, now=NOW + 5, limit=3)
    assert [r.id for r in first.records] == order[:3]
    assert first.next is not None
    # The cursor's session ends (and leaves the index) before the next page is asked.
    assert await backend.end(order[2], "logged_out", timeouts=timeouts, now=NOW + 5)
    second = await backend.list_sessions(
        "pia", timeouts=timeouts, now=NOW + 5, after=first.next, limit=3
    )
    assert [r.id for r in second.records] == order[3:6]
    third = await backend.list_sessions(
        "pia", timeouts=timeouts, now=NOW + 5, after=second.next, limit=3
    )
    assert [r.id for r in third.records] == order[6:]
    assert third.next is None
    assert all(r.data == "" for r in first.records + second.records + third.records)


async def test_a_listing_examines_a_bounded_number_of_members(
    backend: Backend, timeouts: Timeouts
) -> None:
    """Issue 22, item 6: one call returns at most MAX_PAGE_SIZE sessions however many
    the user holds, and examines at most LIST_SCAN_FACTOR x limit members: lapsed ones
    met are pruned and count, so a page may be short but still name the next."""
    many = await signed_in(backend, "quinn", timeouts, [NOW + i for i in range(MAX_PAGE_SIZE + 20)])
    page = await backend.list_sessions("quinn", timeouts=timeouts, now=NOW + 500)
    assert [r.id for r in page.records] == [r.id for r in many[:MAX_PAGE_SIZE]]
    assert page.next is not None
    assert len(await listed(backend, "quinn", timeouts, NOW + 500)) == len(many)

    lapsed = await signed_in(backend, "rui", timeouts, [NOW + i for i in range(25)])
    alive = await signed_in(
        backend, "rui", timeouts, [NOW + timeouts.idle // 2 + i for i in range(5)]
    )
    at = NOW + timeouts.idle + 100  # the first 25 have lapsed
    page = await backend.list_sessions("rui", timeouts=timeouts, now=at, limit=10)
    assert page.records == [] and page.next is not None  # 20 examined, all pruned
    rest = await backend.list_sessions("rui", timeouts=timeouts, now=at, after=page.next, limit=10)
    assert [r.id for r in rest.records] == [r.id for r in alive]
    assert rest.next is None
    assert await backend.load(lapsed[0].id, timeouts=timeouts, now=at) == Lookup(None, "expired")


async def test_the_ceiling_evicts_the_oldest_even_without_a_policy_limit(
    backend: Backend, timeouts: Timeouts
) -> None:
    """Issue 22, item 6: ``ceiling`` bounds a user's live sessions whatever the policy:
    beyond it the oldest are evicted (a sign-in is never refused by the ceiling); a
    policy limit within the ceiling keeps its own action."""
    records = await signed_in(backend, "sam", timeouts, [NOW + i for i in range(3)])
    newest = make_record(user="sam", now=NOW + 10)
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, records[0]))
        evicted = await backend.login(
            None, newest, limit=None, deny=False, timeouts=timeouts, now=NOW + 10, ceiling=3
        )
        assert evicted == [records[0].id]
        assert (await events.next())[1].type == "evicted"
    assert [r.id for r in await listed(backend, "sam", timeouts, NOW + 10)] == [
        records[1].id,
        records[2].id,
        newest.id,
    ]
    # A policy that denies at 5 is above the ceiling: the ceiling evicts, never denies.
    later = make_record(user="sam", now=NOW + 11)
    assert await backend.login(
        None, later, limit=5, deny=True, timeouts=timeouts, now=NOW + 11, ceiling=3
    ) == [records[1].id]
    # A policy that denies at 3 is within the ceiling: it denies, changing nothing.
    refused = make_record(user="sam", now=NOW + 12)
    with pytest.raises(SessionLimitReached):
        await backend.login(
            None, refused, limit=3, deny=True, timeouts=timeouts, now=NOW + 12, ceiling=3
        )
    assert len(await listed(backend, "sam", timeouts, NOW + 12)) == 3


async def test_presence_counts_live_sockets_until_they_lapse(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    other = await stored(backend, make_record(), timeouts)
    await backend.set_presence([(record.id, "a")], until=NOW + 30_000, now=NOW)
    await backend.set_presence([(record.id, "b"), (other.id, "c")], until=NOW + 60_000, now=NOW)
    assert await backend.count_presence([record.id, other.id, "nobody"], now=NOW + 1) == {
        record.id: 2,
        other.id: 1,
        "nobody": 0,
    }
    assert await backend.count_presence([record.id], now=NOW + 30_000) == {record.id: 1}
    await backend.set_presence([(record.id, "b")], until=None, now=NOW)
    await backend.set_presence([], until=None, now=NOW)  # nothing to do: no round trip
    assert await backend.count_presence([record.id], now=NOW + 30_001) == {record.id: 0}


async def test_record_is_kept_through_the_grace_period_only(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    if hasattr(backend, "sweep"):
        backend.sweep(NOW + timeouts.idle + EXPIRY_GRACE_MS - 1)  # memory: what key expiry does
        assert await backend.load(record.id, timeouts=timeouts, now=NOW + timeouts.idle) == Lookup(
            None, "expired"
        )
    else:
        key = backend.names.session(record.id)  # type: ignore[attr-defined]
        ttl = await backend.client.pttl(key)  # type: ignore[attr-defined]
        assert timeouts.idle < ttl <= timeouts.idle + EXPIRY_GRACE_MS


async def test_concurrent_claims_have_exactly_one_winner(
    backend: Backend, timeouts: Timeouts
) -> None:
    record = await stored(backend, make_record(), timeouts)
    highest = 0
    for _ in range(200):
        claims = await asyncio.gather(
            *(
                backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW)
                for _ in range(50)
            )
        )
        gens = sorted(c.gen for c in claims if isinstance(c, Claim))
        assert gens == list(range(highest + 1, highest + 51))  # all distinct, none lost
        highest = gens[-1]
        found = (await backend.load(record.id, timeouts=timeouts, now=NOW, touch=False)).record
        assert found is not None and found.gen == highest


@pytest.mark.parametrize("on_limit", ["evict", "deny"])
async def test_concurrent_logins_never_exceed_the_limit(
    backend: Backend, timeouts: Timeouts, on_limit: str
) -> None:
    user = f"racer-{on_limit}"
    anonymous = [await stored(backend, make_record(), timeouts) for _ in range(30)]

    async def login(source: SessionRecord) -> bool:
        try:
            await backend.login(
                source.id,
                replace(make_record(user=user)),
                limit=1,
                deny=on_limit == "deny",
                timeouts=timeouts,
                now=NOW,
            )
        except SessionLimitReached:
            return False
        return True

    for _ in range(5):
        results = await asyncio.gather(*(login(a) for a in anonymous))
        live = await listed(backend, user, timeouts, NOW)
        assert len(live) == 1
        if on_limit == "deny":
            assert sum(results) <= 1
        else:
            assert all(results)
        anonymous = [await stored(backend, make_record(), timeouts) for _ in range(30)]


# Two events a second in bursts of three: 500 ms an event, 1,500 ms ahead at most.
RATE = RateRule("test", per_second=2.0, burst=3.0)


async def take(backend: Backend, rule: RateRule, subject: str, now: int) -> int:
    return await backend.take_rates([(rule, subject)], now=now)


async def test_a_rate_lets_its_burst_through_then_one_event_per_interval(
    backend: Backend,
) -> None:
    address = "203.0.113.7"
    assert [await take(backend, RATE, address, NOW) for _ in range(3)] == [0, 0, 0]
    assert await take(backend, RATE, address, NOW) == 500
    assert await take(backend, RATE, address, NOW + 499) == 1  # nothing counted
    assert await take(backend, RATE, address, NOW + 500) == 0
    assert await take(backend, RATE, address, NOW + 500) == 500
    # Another subject, another rule: buckets of their own.
    assert await take(backend, RATE, "2001:db8::/64", NOW) == 0
    assert await take(backend, replace(RATE, name="other"), address, NOW) == 0
    # Quiet for the whole capacity: a full burst again.
    later = NOW + 500 + 1_500
    assert [await take(backend, RATE, address, later) for _ in range(4)] == [0, 0, 0, 500]
    assert await backend.take_rates([], now=NOW) == 0


async def test_a_rate_per_user_counts_any_user_id(backend: Backend) -> None:
    per_user = RateRule("test_user", per_second=1.0, burst=1.0, per="user")
    for user in ("ines", "a{b}c", "名前"):
        assert await take(backend, per_user, user, NOW) == 0
        assert await take(backend, per_user, user, NOW + 1) == 999


async def test_rates_taken_together_count_all_or_nothing(
    backend: Backend, backend_kind: str
) -> None:
    """A sign-in's user and address rates in one step: when one bucket has no room,
    the other is not counted (on a Cluster the two live in different slots, and a
    refusal by one leaves the other counted: the documented exception)."""
    per_user = RateRule("test_user", per_second=1.0, burst=1.0, per="user")
    user, address = "ines", "192.0.2.44"
    assert await take(backend, per_user, user, NOW) == 0  # the user's one sign-in
    both = [(per_user, user), (RATE, address)]
    assert await backend.take_rates(both, now=NOW) == 1_000  # the longest wait
    counted = 1 if backend_kind in ("cluster", "tls_cluster") else 0
    expected = [0] * (3 - counted) + [500]
    assert [await take(backend, RATE, address, NOW) for _ in range(4 - counted)] == expected
    assert await backend.take_rates(both, now=NOW + 1_000) == 0  # both have room again


async def test_a_rate_is_one_count_for_every_process(
    backend: Backend, backend_kind: str, request: pytest.FixtureRequest
) -> None:
    """Two backend objects on one store (two workers, two hosts) share each bucket;
    the memory backend is one process and has no second view to ask."""
    if backend_kind == "memory":
        pytest.skip("one process is the whole memory backend")
    other = backend_from_url(request.getfixturevalue("backend_url"), key_prefix=backend.key_prefix)
    await other.connect()
    try:
        address = "198.51.100.9"
        taken = [await take(view, RATE, address, NOW) for view in (backend, other) * 2]
        assert taken == [0, 0, 0, 500]
        # The key lives no longer than its bucket needs (a spray of addresses expires).
        client = backend.client  # type: ignore[attr-defined]
        key = backend.names.rate(RATE.name, address, per="address")  # type: ignore[attr-defined]
        assert 0 < await client.pttl(key) <= 1_500
    finally:
        await other.disconnect()


async def test_list_users_pages_through_every_user_with_bounded_pages(
    backend: Backend, timeouts: Timeouts
) -> None:
    """The admin listing's enumeration (backends/user_scan.py): every user with an index
    is found by following the cursor, each page bounded, glob characters in user ids
    taken literally; an ended user's index is gone."""
    users = {f"user-{n}" for n in range(23)} | {"glob*[x]?", "ünï"}
    for user in sorted(users):
        await backend.login(
            None, make_record(user), limit=None, deny=False, timeouts=timeouts, now=NOW
        )
    await backend.end_user("user-0", except_id=None, detail="revoked", timeouts=timeouts, now=NOW)
    found: list[str] = []
    page = await backend.list_users(limit=5)
    pages = 1
    found += page.users
    while page.next is not None:
        page = await backend.list_users(cursor=page.next, limit=5)
        found += page.users
        pages += 1
        assert pages < 200
        assert len(page.users) <= 5 * 8  # at most one SCAN step's worth beyond the limit
    assert set(found) == users - {"user-0"}
    with pytest.raises(InvalidPage):
        await backend.list_users(cursor="not a cursor!")


async def test_provider_links_name_live_sessions_until_their_time(backend: Backend) -> None:
    """docs/sso.md: a provider session or user finds the sessions linked to it, each
    until its time; links are independent of each other."""
    await backend.link(["sid-a", "sub-a"], "p1", until=NOW + 10_000, now=NOW)
    await backend.link(["sub-a"], "p2", until=NOW + 5_000, now=NOW)
    await backend.link(["sid-b"], "p3", until=NOW + 10_000, now=NOW)
    assert await backend.linked("sid-a", now=NOW) == ["p1"]
    assert sorted(await backend.linked("sub-a", now=NOW)) == ["p1", "p2"]
    assert await backend.linked("sub-a", now=NOW + 6_000) == ["p1"]  # p2's time passed
    assert await backend.linked("unknown", now=NOW) == []


async def test_a_logout_token_is_used_once_until_forgotten(backend: Backend) -> None:
    """docs/sso.md: a jti is accepted once while remembered (shared by every worker on
    Redis), and again once forgotten (a logout that failed may be sent again)."""
    assert await backend.first_use("jti-1", until=NOW + 60_000, now=NOW) is True
    assert await backend.first_use("jti-1", until=NOW + 60_000, now=NOW) is False
    assert await backend.first_use("jti-2", until=NOW + 60_000, now=NOW) is True
    await backend.forget_use("jti-1")
    assert await backend.first_use("jti-1", until=NOW + 60_000, now=NOW) is True
