"""Timers: many deadlines on one event-loop timer (sessionwatch.live.timers)."""

from __future__ import annotations

import asyncio

import pytest

from sessionwatch.live.timers import Timers


class _Item:
    def __init__(self, name: str) -> None:
        self.name = name
        self.timer: list[object] | None = None


async def test_timers_fire_once_each_at_their_latest_deadline() -> None:
    loop = asyncio.get_running_loop()
    fired: list[tuple[str, float]] = []
    done = asyncio.Event()

    def fire(item: _Item) -> None:
        fired.append((item.name, loop.time()))
        if item.name == "last":
            done.set()

    timers: Timers[_Item] = Timers(fire)
    a, b, c, gone, last = (_Item(n) for n in ("a", "b", "c", "gone", "last"))
    start = loop.time()
    timers.at(a, start + 0.05)
    timers.at(b, start + 0.02)
    timers.at(c, start + 0.20)
    timers.at(gone, start + 0.01)
    timers.at(last, start + 0.15)
    timers.at(a, start + 0.10)  # later: the entry fires at 0.05 and is pushed back
    timers.at(c, start + 0.03)  # earlier: a new entry
    timers.cancel(gone)
    assert len(timers) == 4
    await asyncio.wait_for(done.wait(), 5)
    assert [name for name, _ in fired] == ["b", "c", "a", "last"]
    for (name, at), due in zip(fired, (0.02, 0.03, 0.10, 0.15), strict=True):
        assert at >= start + due - 0.002, name
    assert len(timers) == 0 and a.timer is None and c.timer is None


async def test_timers_rebuild_a_mostly_stale_heap_and_survive_a_failing_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    fired: list[str] = []
    good_fired = asyncio.Event()

    def fire(item: _Item) -> None:
        fired.append(item.name)
        if item.name == "good":
            good_fired.set()
        if item.name == "bad":
            raise RuntimeError("injected")

    timers: Timers[_Item] = Timers(fire)
    items = [_Item(str(n)) for n in range(200)]
    for item in items:
        timers.at(item, loop.time() + 60)
    for item in items[:150]:
        timers.cancel(item)
    assert len(timers) == 50 and timers.entries < 200  # rebuilt, not 200 entries
    timers.clear()
    assert len(timers) == 0 and all(item.timer is None for item in items)
    bad, good = _Item("bad"), _Item("good")
    timers.at(bad, loop.time())
    timers.at(good, loop.time() + 0.01)
    await asyncio.wait_for(good_fired.wait(), 5)
    assert fired == ["bad", "good"]
    assert "timer callback failed" in caplog.text
