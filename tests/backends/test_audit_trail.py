"""The audit trail's contract, on memory://, one Redis and a Redis Cluster: one record
per change in the change's own step, none for what did not happen, no secret, and the
consumer-group reading that hooks and the export rely on (docs/audit.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from backends.test_backend_contract import BY, NOW, make_record, stored
from sessionwatch.backends.base import Backend, Timeouts
from sessionwatch.backends.memory import MemoryBackend
from sessionwatch.core.exceptions import SessionLimitReached
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from sessionwatch.core.trail import AuditRecord, AuditSettings


@pytest.fixture(params=["memory", "redis", "cluster"], name="backend_kind")
def _backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def everything(backend: Backend) -> list[AuditRecord]:
    records, _ = await backend.audit_after({}, 10_000)
    return records


def signed_in_record(user: str, now: int = NOW, device: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    record = make_record(user=user, now=now)
    return replace(record, device=device or record.device)


async def test_each_change_writes_one_record_and_a_refusal_only_its_own(
    backend: Backend, timeouts: Timeouts
) -> None:
    first = signed_in_record("ana")
    assert await backend.login(None, first, limit=1, deny=True, timeouts=timeouts, now=NOW) == []
    second = signed_in_record("ana", NOW + 1)
    with pytest.raises(SessionLimitReached):
        await backend.login(None, second, limit=1, deny=True, timeouts=timeouts, now=NOW + 1)
    await backend.claim(first.id, BY, exclusive=True, timeouts=timeouts, now=NOW + 2)
    await backend.claim(first.id, BY, exclusive=False, timeouts=timeouts, now=NOW + 3)  # no
    third = signed_in_record("ana", NOW + 4)
    evicted = await backend.login(None, third, limit=1, deny=False, timeouts=timeouts, now=NOW + 4)
    assert evicted == [first.id]
    assert await backend.end(third.id, "revoked", timeouts=timeouts, now=NOW + 5, detail="fraud",
                             actor="admin:root")  # fmt: skip
    assert not await backend.end(third.id, "logged_out", timeouts=timeouts, now=NOW + 6)  # no
    anonymous = await stored(backend, make_record(), timeouts)
    gone = await backend.load(anonymous.id, timeouts=timeouts, now=NOW + timeouts.idle + 1)
    assert gone.ended == "expired"
    everyone = await everything(backend)
    records = [r for r in everyone if r.user == "ana"]  # one shard: in order
    assert [(r.event, r.session, r.actor) for r in records] == [
        ("signed_in", first.id, "user"),
        ("limit_denied", "", "user"),
        ("superseded", first.id, "user"),
        ("evicted", first.id, f"session:{third.id}"),
        ("signed_in", third.id, "user"),
        ("revoked", third.id, "admin:root"),
    ]
    expiry = [r for r in everyone if r.user is None]
    assert [(r.event, r.session, r.actor) for r in expiry] == [("expired", anonymous.id, "system")]
    signed, denied, takeover, eviction = records[:4]
    assert (
        signed.user == "ana" and signed.device == first.device and signed.place == "203.0.113.0/24"
    )
    assert (signed.new_device, signed.new_place) == (True, True)  # never seen before
    assert denied.reason == "session_limit" and denied.user == "ana"
    assert takeover.by is not None and takeover.by["browser"] == BY.browser
    assert (takeover.new_device, takeover.new_place) == (True, True)  # BY: another device
    assert takeover.by["new_device"] is True
    assert eviction.by is not None and eviction.by["place"] == third.device["place"]
    assert records[4].new_device is False and records[4].new_place is False  # seen at NOW
    assert records[5].reason == "fraud"
    assert len(everyone) == 7 and len({r.id for r in everyone}) == 7


async def test_a_record_holds_no_secret(backend: Backend, timeouts: Timeouts) -> None:
    secret = new_session_id(user_tag("bo"))
    record = replace(make_record(user="bo"), id=public_id(secret))
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW)
    await backend.claim(record.id, BY, exclusive=True, timeouts=timeouts, now=NOW + 1)
    await backend.end(record.id, "logged_out", timeouts=timeouts, now=NOW + 2)
    dumped = json.dumps([r.to_json() for r in await everything(backend)])
    assert record.id in dumped
    assert secret not in dumped and secret.split(".")[1] not in dumped
    assert record.tab_key not in dumped


async def test_end_user_records_each_revoked_session(backend: Backend, timeouts: Timeouts) -> None:
    records = [signed_in_record("cy", NOW + i) for i in range(3)]
    for i, record in enumerate(records):
        await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + i)
    count = await backend.end_user("cy", except_id=records[0].id, detail="reset",
                                   timeouts=timeouts, now=NOW + 5, actor="provider:https://idp")  # fmt: skip
    assert count == 2
    revoked = [r for r in await everything(backend) if r.event == "revoked"]
    assert sorted(r.session for r in revoked) == sorted(r.id for r in records[1:])
    assert {(r.actor, r.reason) for r in revoked} == {("provider:https://idp", "reset")}


async def test_a_group_gives_each_record_once_and_again_when_unacknowledged(
    backend: Backend, timeouts: Timeouts
) -> None:
    for i in range(3):
        record = signed_in_record(f"user{i}", NOW + i)
        await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + i)
    given = await backend.audit_read("hooks", "a")
    assert [r.event for r in given] == ["signed_in"] * 3
    assert await backend.audit_read("hooks", "b") == []  # once per group
    await backend.audit_ack("hooks", [given[0].id])
    again = await backend.audit_reclaim("hooks", "b", idle_ms=0)  # "a" died
    assert [r.id for r in again] == [r.id for r in given[1:]]
    await backend.audit_ack("hooks", [r.id for r in again])
    assert await backend.audit_reclaim("hooks", "b", idle_ms=0) == []
    other = await backend.audit_read("export", "x")  # every group sees every record
    assert [r.id for r in other] == [r.id for r in given]


async def test_the_trail_can_be_switched_off(backend: Backend, timeouts: Timeouts) -> None:
    backend.audit = AuditSettings(enabled=False)  # type: ignore[attr-defined]
    record = signed_in_record("di")
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW)
    await backend.end(record.id, "logged_out", timeouts=timeouts, now=NOW + 1)
    assert await everything(backend) == []


async def test_latest_then_after_follow_the_trail(backend: Backend, timeouts: Timeouts) -> None:
    for i in range(4):
        record = signed_in_record(f"eve{i}", NOW + i)
        await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + i)
        # Shards (a Cluster's users) are merged by their entries' millisecond: two
        # sign-ins of one millisecond on two primaries have no order (docs/audit.md).
        await asyncio.sleep(0.002)
    latest, cursor = await backend.audit_latest(2)
    assert [r.user for r in latest] == ["eve2", "eve3"]
    assert (await backend.audit_after(cursor))[0] == []
    record = signed_in_record("eve9", NOW + 9)
    await backend.login(None, record, limit=None, deny=False, timeouts=timeouts, now=NOW + 9)
    following, _ = await backend.audit_after(cursor)
    assert [r.user for r in following] == ["eve9"]


def test_the_memory_ring_is_bounded() -> None:
    backend = MemoryBackend(audit=AuditSettings(max_records=5))
    for i in range(12):
        backend.trail.append("expired", f"s{i}", None, {}, NOW + i, "system")
    assert len(backend.trail._ring) == 5
