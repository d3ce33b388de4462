"""Remember-me on every backend (memory, one Redis, a Redis Cluster): rotation, the
grace window, reuse detection, expiry, and every revocation path ending the family
(docs/policies.md, "Remember-me"). Driven through the engine, as every door is."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionwatch.backends.base import Backend, Timeouts, session_channel, user_channel
from sessionwatch.core.policy import Policy
from sessionwatch.core.remember import RememberSigner
from sessionwatch.engine import Restored, SessionEngine
from sessionwatch.engine.operations import SessionRecord
from support.events import EventCollector

NOW = 1_800_000_000_000
LIFETIME = 7 * 86_400_000
GRACE = 10_000
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.fixture(params=["memory", "redis", "cluster"], name="backend_kind")
def _backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock()


def make_engine(
    backend: Backend, timeouts: Timeouts, clock: Clock, policy: Policy
) -> SessionEngine:
    return SessionEngine(
        backend,
        timeouts=timeouts,
        policy=policy,
        now_ms=clock,
        remember=RememberSigner(["a-test-secret-key-of-some-length"]),
        remember_lifetime=LIFETIME,
        remember_grace=GRACE,
    )


@pytest.fixture(name="engine")
def _engine(backend: Backend, timeouts: Timeouts, clock: Clock) -> SessionEngine:
    return make_engine(backend, timeouts, clock, Policy(sessions_per_user=None))


async def remembered(engine: SessionEngine, user: str) -> tuple[SessionRecord, str]:
    """A sign-in with remember-me: its session and the remember cookie's value."""
    device = engine.describe(UA, "203.0.113.9")
    _, record, _ = await engine.login(None, user, "", device)
    cookie = await engine.remember(record)
    assert cookie is not None
    return record, cookie


async def restore(engine: SessionEngine, cookie: str) -> Restored:
    return await engine.restore(cookie, UA, "203.0.113.9")


async def live_ids(engine: SessionEngine, user: str) -> list[str]:
    return [info.id for info in (await engine.list_sessions(user)).sessions]


async def test_a_restore_rotates_the_token_and_signs_the_user_in_again(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts
) -> None:
    record, cookie = await remembered(engine, "ana")
    clock.now += timeouts.idle + 1  # the session lapses; the family does not
    async with EventCollector(engine.backend) as events:
        await events.subscribe(user_channel(engine.backend.key_prefix, "ana"))
        restored = await restore(engine, cookie)
        assert restored.record is not None and restored.cookie is not None
        _, event = await events.next()
        assert (event.type, event.session) == ("signed_in", restored.record.id)
    assert restored.record.user == "ana" and restored.record.id != record.id
    assert restored.cookie != cookie and not restored.clear
    assert await live_ids(engine, "ana") == [restored.record.id]
    # The successor restores in turn (a second browser restart).
    clock.now += timeouts.idle + 1
    again = await restore(engine, restored.cookie)
    assert again.record is not None and again.record.id not in (record.id, restored.record.id)


async def test_two_requests_with_one_token_get_the_same_successor_and_session(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts
) -> None:
    """Two tabs of one browser restoring at once (after a restart) are not a reuse."""
    _, cookie = await remembered(engine, "bea")
    clock.now += timeouts.idle + 1
    first, second = await asyncio.gather(restore(engine, cookie), restore(engine, cookie))
    assert first.record is not None and second.record is not None
    assert (first.session_id, first.cookie) == (second.session_id, second.cookie)
    clock.now += GRACE - 1  # still within the grace window
    third = await restore(engine, cookie)
    assert third.session_id == first.session_id and third.cookie == first.cookie
    assert await live_ids(engine, "bea") == [first.record.id]


async def test_a_token_used_after_its_successor_ends_the_family_and_its_session(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts
) -> None:
    _, stolen = await remembered(engine, "cid")
    clock.now += timeouts.idle + 1
    owner = await restore(engine, stolen)  # the owner restores first
    assert owner.record is not None and owner.cookie is not None
    clock.now += GRACE  # the grace window is over
    channel = session_channel(engine.backend.key_prefix, owner.record.id)
    async with EventCollector(engine.backend) as events:
        await events.subscribe(channel)
        thief = await restore(engine, stolen)
        _, event = await events.next()
        assert (event.type, event.fields.get("reason")) == ("revoked", "token_reuse")
    assert thief.record is None and thief.clear
    assert await live_ids(engine, "cid") == []
    refused = await restore(engine, owner.cookie)  # the owner's successor died with it
    assert refused.record is None and refused.clear


async def test_an_older_token_is_a_reuse_even_within_the_grace_window(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts
) -> None:
    """The grace window covers the token just rotated away only (django-oauth-toolkit
    #1617 is the hole of covering older ones)."""
    _, first = await remembered(engine, "dan")
    clock.now += timeouts.idle + 1
    second = await restore(engine, first)
    assert second.cookie is not None and second.record is not None
    await engine.logout(second.record.id)  # ends the family: start one more to test
    _, first = await remembered(engine, "dan")
    clock.now += timeouts.idle + 1
    second = await restore(engine, first)
    assert second.cookie is not None
    clock.now += timeouts.idle + 1
    third = await restore(engine, second.cookie)
    assert third.record is not None
    reused = await restore(engine, first)  # two generations back, 0 ms after
    assert reused.record is None and reused.clear
    assert await live_ids(engine, "dan") == []


async def test_a_family_lapses_at_its_lifetime(engine: SessionEngine, clock: Clock) -> None:
    _, cookie = await remembered(engine, "eva")
    clock.now += LIFETIME
    gone = await restore(engine, cookie)
    assert gone.record is None and gone.clear


async def test_a_forged_cookie_is_refused_without_a_lookup(engine: SessionEngine) -> None:
    _, cookie = await remembered(engine, "fay")
    body, _, signature = cookie.rpartition(".")
    forged = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert (await restore(engine, forged)).clear
    assert (await restore(engine, "nonsense")).clear


async def test_the_policy_applies_to_a_restore(
    backend: Backend, timeouts: Timeouts, clock: Clock
) -> None:
    evicting = make_engine(backend, timeouts, clock, Policy(sessions_per_user=1))
    _, cookie = await remembered(evicting, "gus")
    clock.now += timeouts.idle + 1
    device = evicting.describe(UA, "198.51.100.7")
    _, other, _ = await evicting.login(None, "gus", "", device)  # another device, now
    restored = await restore(evicting, cookie)
    assert restored.record is not None and restored.evicted == (other.id,)
    denying = make_engine(backend, timeouts, clock, Policy(sessions_per_user=1, on_limit="deny"))
    clock.now += timeouts.idle + 1
    _, other, _ = await denying.login(None, "gus", "", device)
    assert restored.cookie is not None
    denied = await restore(denying, restored.cookie)
    assert denied.record is None and not denied.clear  # nothing changed: it may serve later
    assert await live_ids(denying, "gus") == [other.id]


async def test_the_server_keeps_hashes_only(engine: SessionEngine, backend_kind: str) -> None:
    if backend_kind == "memory":
        pytest.skip("no storage to dump")
    _, cookie = await remembered(engine, "hal")
    token = engine.remember_signer.unsign(cookie)  # type: ignore[union-attr]
    assert token is not None
    backend: Any = engine.backend
    stored = await backend.call(backend.client.hgetall, backend.names.family(token.family))
    assert stored["cur"] and token.secret not in str(stored)


async def _logout(engine: SessionEngine, record: SessionRecord) -> None:
    await engine.logout(record.id)


async def _revoke_one(engine: SessionEngine, record: SessionRecord) -> None:
    await engine.revoke_session(record.id, reason="admin")


async def _revoke_user(engine: SessionEngine, record: SessionRecord) -> None:
    await engine.revoke_user("ivy", reason="admin")


async def _sign_out_others(engine: SessionEngine, record: SessionRecord) -> None:
    device = engine.describe("curl/8", "192.0.2.1")
    _, other, _ = await engine.login(None, "ivy", "", device)
    await engine.revoke_user("ivy", except_id=other.id, reason="signed_out_elsewhere")


async def _password_changed(engine: SessionEngine, record: SessionRecord) -> None:
    await engine.revoke_user("ivy", reason="password_changed")


async def _signed_in_again(engine: SessionEngine, record: SessionRecord) -> None:
    device = engine.describe(UA, "203.0.113.9")
    await engine.login(record, "ivy", "", device)  # re-authentication without remember


async def _evicted(engine: SessionEngine, record: SessionRecord) -> None:
    engine.policy = Policy(sessions_per_user=1)
    device = engine.describe("curl/8", "192.0.2.1")
    await engine.login(None, "ivy", "", device)


Path = Callable[[SessionEngine, SessionRecord], Awaitable[None]]
PATHS: dict[str, Path] = {
    "logout": _logout,
    "revoke_session": _revoke_one,
    "revoke_user": _revoke_user,
    "sign_out_others": _sign_out_others,
    "password_changed": _password_changed,
    "signed_in_again": _signed_in_again,
    "evicted": _evicted,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("restored_first", [False, True], ids=["first", "restored"])
async def test_every_revocation_path_ends_the_family(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts, path: str, restored_first: bool
) -> None:
    """Whichever way the session ends (but expiry), its family ends with it: the
    remember cookie restores nothing afterwards. ``restored``: the session was born of
    a restore, not of the sign-in."""
    record, cookie = await remembered(engine, "ivy")
    if restored_first:
        clock.now += timeouts.idle + 1
        restored = await restore(engine, cookie)
        assert restored.record is not None and restored.cookie is not None
        record, cookie = restored.record, restored.cookie
    await PATHS[path](engine, record)
    clock.now += timeouts.idle + 1
    after = await restore(engine, cookie)
    assert after.record is None and after.clear, path


@pytest.mark.parametrize("path", ["revoke_user", "sign_out_others", "password_changed"])
async def test_a_user_wide_revocation_ends_families_whose_session_has_lapsed(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts, path: str
) -> None:
    """A closed browser's session expires; its family lives on until the user-wide
    revocation (the lost laptop of "sign out other sessions")."""
    record, cookie = await remembered(engine, "ivy")
    clock.now += timeouts.idle + 1
    assert await live_ids(engine, "ivy") == []
    await PATHS[path](engine, record)
    after = await restore(engine, cookie)
    assert after.record is None and after.clear


async def test_sign_out_others_keeps_the_current_browsers_family(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts
) -> None:
    record, cookie = await remembered(engine, "joe")
    await engine.revoke_user("joe", except_id=record.id, reason="signed_out_elsewhere")
    clock.now += timeouts.idle + 1
    assert (await restore(engine, cookie)).record is not None


async def test_a_revocation_racing_the_start_leaves_no_family(engine: SessionEngine) -> None:
    device = engine.describe(UA, "203.0.113.9")
    _, record, _ = await engine.login(None, "kim", "", device)
    await engine.revoke_session(record.id)
    assert await engine.remember(record) is None


async def test_a_user_keeps_a_bounded_number_of_families(
    engine: SessionEngine, clock: Clock, timeouts: Timeouts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond the bound a new family ends the oldest: the scripts that read a user's
    families (a user-wide revocation) stay bounded, as a listing does."""
    for module in ("memory", "redis"):
        monkeypatch.setattr(f"sessionwatch.backends.{module}.MAX_FAMILIES_PER_USER", 2)
    cookies = []
    for _ in range(3):
        _, cookie = await remembered(engine, "lou")
        cookies.append(cookie)
        clock.now += 1
    clock.now += timeouts.idle + 1
    oldest = await restore(engine, cookies[0])
    assert oldest.record is None and oldest.clear
    for cookie in cookies[1:]:
        assert (await restore(engine, cookie)).record is not None
