"""Presence notices (``presence_events``) are coalesced per session and bounded per
process, so that a reconnect storm cannot turn into a flood of counts and publishes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from sessionwatch.backends.base import user_channel
from sessionwatch.live import presence as presence_module
from sessionwatch.live.presence import PresenceNotices
from support.live import WAIT


class CountingBackend:
    """Counts presence reads and records publishes."""

    key_prefix = "sw:"

    def __init__(self, *, fail: bool = False) -> None:
        self.counted: list[list[str]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    async def count_presence(self, public_ids: Sequence[str], *, now: int) -> dict[str, int]:
        self.counted.append(list(public_ids))
        if self.fail:
            raise ConnectionError("backend down")
        return {public_id: 2 for public_id in public_ids}

    async def publish(self, channel: str, payload: str) -> None:
        self.published.append((channel, json.loads(payload)))


@pytest.fixture(autouse=True)
def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence_module, "NOTICE_DELAY", 0.0)


async def _told(backend: CountingBackend, *changes: tuple[str, str | None]) -> PresenceNotices:
    rounds: list[asyncio.Future[Any]] = []

    def spawn(coroutine: Any) -> asyncio.Future[Any]:
        rounds.append(asyncio.ensure_future(coroutine))
        return rounds[-1]

    notices = PresenceNotices(backend, lambda: 1000, spawn)  # type: ignore[arg-type]
    for session, user in changes:
        notices.changed(session, user)
    while not all(task.done() for task in rounds):
        await asyncio.wait_for(asyncio.gather(*rounds), WAIT)
    assert len(rounds) == 1, "one round at a time"
    return notices


async def test_a_burst_of_changes_makes_one_notice_per_session() -> None:
    backend = CountingBackend()
    burst = [("s1", "ann")] * 50 + [("s2", "bob")] * 50 + [("s3", None)] * 5
    notices = await _told(backend, *burst)
    assert backend.counted == [["s1", "s2"]]  # one read for the round; anonymous: no one to tell
    assert backend.published == [
        (user_channel("sw:", "ann"), {"type": "presence", "id": "s1", "live_tabs": 2, "at": 1000}),
        (user_channel("sw:", "bob"), {"type": "presence", "id": "s2", "live_tabs": 2, "at": 1000}),
    ]
    assert notices.published == 2


async def test_rounds_and_waiting_sessions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence_module, "_NOTICES", 2)
    monkeypatch.setattr(presence_module, "_PENDING", 5)
    backend = CountingBackend()
    await _told(backend, *[(f"s{i}", "ann") for i in range(9)])
    # five wait (the rest are not told: the listing counts them), two per round
    assert backend.counted == [["s0", "s1"], ["s2", "s3"], ["s4"]]


async def test_a_failed_round_is_logged_and_the_next_change_is_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = CountingBackend(fail=True)
    await _told(backend, ("s1", "ann"))
    assert "presence of 1 session(s) not told" in caplog.text and not backend.published
    backend.fail = False
    await _told(backend, ("s1", "ann"))
    assert [message["id"] for _, message in backend.published] == ["s1"]


async def test_nothing_is_told_while_the_hub_stops() -> None:
    backend = CountingBackend()
    notices = PresenceNotices(backend, lambda: 1000, asyncio.ensure_future)  # type: ignore[arg-type]
    notices.telling = False
    notices.changed("s1", "ann")
    await asyncio.sleep(0)
    assert backend.counted == [] and backend.published == []
