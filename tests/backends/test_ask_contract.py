"""``on_limit="ask"`` and step-up on every backend: a pending sign-in completed by the
user's choice (one atomic step with the limit's re-check) and the re-authentication
stamp. The same bodies on memory://, one Redis and the 6-node Redis Cluster (where the
pending sign-in lives in the user's slot)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from backends.test_backend_contract import NOW, listed, make_record, schan, stored
from sessionwatch.backends.base import Backend, Lookup, PendingLogin, SessionRecord, Timeouts
from sessionwatch.core.exceptions import PendingLoginRefused, SessionLimitReached
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from support.events import EventCollector

TTL = 300_000


@pytest.fixture(params=["memory", "redis", "cluster"], name="backend_kind")
def _backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def signed_in(backend: Backend, user: str, timeouts: Timeouts, n: int) -> list[str]:
    ids = []
    for i in range(n):
        record = make_record(user=user, now=NOW + i)
        await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + i)
        ids.append(record.id)
    return ids


async def pending_for(backend: Backend, user: str, bound: SessionRecord | None) -> PendingLogin:
    """A pending sign-in as the engine stores it (the id is its token's public id)."""
    pending = PendingLogin(
        public_id(new_session_id(user_tag(user))), user, bound.id if bound else "", NOW + TTL
    )
    await backend.put_pending(pending, now=NOW)
    return pending


async def complete(
    backend: Backend,
    pending: PendingLogin,
    source: SessionRecord | None,
    evict: list[str],
    timeouts: Timeouts,
    *,
    limit: int = 2,
    now: int = NOW + 100,
    user: str | None = None,
) -> tuple[SessionRecord, list[str]]:
    record = make_record(user=user or pending.user, now=now)
    evicted = await backend.complete_login(
        pending,
        source.id if source else None,
        record,
        evict=evict,
        limit=limit,
        timeouts=timeouts,
        now=now,
    )
    return record, evicted


async def test_completion_evicts_exactly_the_chosen_session_and_signs_in(
    backend: Backend, timeouts: Timeouts
) -> None:
    a, b = await signed_in(backend, "ann", timeouts, 2)
    browser = await stored(backend, make_record(), timeouts)
    pending = await pending_for(backend, "ann", browser)
    assert await backend.get_pending(pending.id, now=NOW) == pending
    async with EventCollector(backend) as events:
        await events.subscribe(schan(backend, a), schan(backend, b), schan(backend, browser.id))
        record, evicted = await complete(backend, pending, browser, [b], timeouts)
        assert evicted == [b]  # the chosen one, not the oldest
        got = {(await events.next())[1].type for _ in range(2)}
        assert got == {"evicted", "rotated"}
    assert [r.id for r in await listed(backend, "ann", timeouts, NOW + 100)] == [a, record.id]
    assert await backend.load(b, timeouts=timeouts, now=NOW + 100) == Lookup(None, "evicted")
    assert (await backend.load(browser.id, timeouts=timeouts, now=NOW + 100)).record is None
    stored_pending = await backend.get_pending(pending.id, now=NOW + 100)
    assert stored_pending is not None and stored_pending.used


async def test_a_replayed_expired_foreign_or_unknown_pending_sign_in_changes_nothing(
    backend: Backend, timeouts: Timeouts
) -> None:
    a, b = await signed_in(backend, "bea", timeouts, 2)
    browser = await stored(backend, make_record(), timeouts)
    other = await stored(backend, make_record(), timeouts)
    pending = await pending_for(backend, "bea", browser)

    async def refused(source: SessionRecord | None, p: PendingLogin, now: int) -> str:
        with pytest.raises(PendingLoginRefused) as caught:
            await complete(backend, p, source, [a], timeouts, now=now)
        return str(caught.value.code)

    assert await refused(other, pending, NOW + 1) == "pending_login_foreign"
    assert await refused(None, pending, NOW + 1) == "pending_login_foreign"
    assert await refused(browser, pending, NOW + TTL) == "pending_login_expired"
    unknown = replace(pending, id=public_id(new_session_id(user_tag("bea"))))
    assert await refused(browser, unknown, NOW + 1) == "pending_login_unknown"
    # For another user: the record's user must be the pending sign-in's.
    with pytest.raises(PendingLoginRefused):
        await complete(backend, pending, browser, [a], timeouts, now=NOW + 1, user="bob")
    live = [r.id for r in await listed(backend, "bea", timeouts, NOW + 1)]
    assert live == [a, b]  # nothing changed
    assert (await backend.load(browser.id, timeouts=timeouts, now=NOW + 1)).record is not None
    record, _ = await complete(backend, pending, browser, [a], timeouts, now=NOW + 1)
    assert await refused(browser, pending, NOW + 2) == "pending_login_used"  # replayed
    assert {r.id for r in await listed(backend, "bea", timeouts, NOW + 2)} == {b, record.id}


async def test_the_limit_is_checked_again_when_the_choice_arrives(
    backend: Backend, timeouts: Timeouts
) -> None:
    a, b = await signed_in(backend, "cid", timeouts, 2)
    browser = await stored(backend, make_record(), timeouts)
    pending = await pending_for(backend, "cid", browser)
    # Meanwhile a third device signed in (the ceiling let it): one choice is not enough.
    (c,) = await signed_in(backend, "cid", timeouts, 1)
    with pytest.raises(SessionLimitReached):
        await complete(backend, pending, browser, [a], timeouts)
    assert {r.id for r in await listed(backend, "cid", timeouts, NOW + 100)} == {a, b, c}
    # Choosing an id that is not the user's changes nothing either (it is ignored).
    stranger = (await signed_in(backend, "someone-else", timeouts, 1))[0]
    with pytest.raises(SessionLimitReached):
        await complete(backend, pending, browser, [a, stranger], timeouts)
    assert (await backend.load(stranger, timeouts=timeouts, now=NOW + 100)).record is not None
    # Two devices sign out: the same pending sign-in completes with nothing chosen.
    await backend.end(a, "logged_out", timeouts=timeouts, now=NOW + 100)
    await backend.end(c, "logged_out", timeouts=timeouts, now=NOW + 100)
    record, evicted = await complete(backend, pending, browser, [a], timeouts)
    assert evicted == []
    assert {r.id for r in await listed(backend, "cid", timeouts, NOW + 100)} == {b, record.id}


async def test_concurrent_completions_never_leave_more_than_the_limit(
    backend: Backend, timeouts: Timeouts
) -> None:
    """Twenty browsers of one user, each holding its own pending sign-in, complete at
    once, each choosing one of the two sessions there were; and one pending sign-in
    completed twenty times at once: at most two sessions live, one completion per
    pending sign-in."""
    for round_ in range(3):
        user = f"race-{round_}"
        a, b = await signed_in(backend, user, timeouts, 2)
        browsers = [await stored(backend, make_record(), timeouts) for _ in range(20)]
        pendings = [await pending_for(backend, user, s) for s in browsers]

        async def attempt(
            i: int, pending: PendingLogin, source: SessionRecord, chosen: tuple[str, str]
        ) -> bool:
            try:
                await complete(backend, pending, source, [chosen[i % 2]], timeouts)
            except (SessionLimitReached, PendingLoginRefused):
                return False
            return True

        results = await asyncio.gather(
            *(
                attempt(i, p, s, (a, b))
                for i, (p, s) in enumerate(zip(pendings, browsers, strict=True))
            )
        )
        live = await listed(backend, user, timeouts, NOW + 100)
        assert len(live) <= 2 and sum(results) == 2, (results, live)
        # One pending sign-in, replayed concurrently: exactly one completion.
        spare = await stored(backend, make_record(), timeouts)
        pending = await pending_for(backend, user, spare)
        replays = await asyncio.gather(*(attempt(i, pending, spare, (a, b)) for i in range(20)))
        live_ids = [r.id for r in await listed(backend, user, timeouts, NOW + 100)]
        assert sum(replays) <= 1 and len(live_ids) <= 2


async def test_reauthenticated_stamps_the_session_and_changes_nothing_else(
    backend: Backend, timeouts: Timeouts
) -> None:
    (sid,) = await signed_in(backend, "dan", timeouts, 1)
    before = (await backend.load(sid, timeouts=timeouts, now=NOW, touch=False)).record
    assert before is not None
    assert await backend.reauthenticated(sid, timeouts=timeouts, now=NOW + 5_000)
    after = (await backend.load(sid, timeouts=timeouts, now=NOW + 5_000, touch=False)).record
    assert after == replace(before, authenticated_at=NOW + 5_000)
    await backend.end(sid, "logged_out", timeouts=timeouts, now=NOW + 6_000)
    assert not await backend.reauthenticated(sid, timeouts=timeouts, now=NOW + 7_000)
