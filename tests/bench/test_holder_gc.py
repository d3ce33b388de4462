"""The tab holder's own garbage collections stay out of the measured steps (finding 13 of
docs/performance.md), and the stall probe's attribution (no server, no processes)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from bench.gcprobe import summarize
from bench.tabs import TabHolder


class _Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture(name="gc_restored")
def _gc_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.enable()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_restored")
async def test_no_collection_runs_while_a_step_is_logged_and_the_tabs_heap_is_frozen() -> None:
    holder = TabHolder()
    collections: list[dict[str, Any]] = []

    def heard(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info)

    await holder.connect("sw", "127.0.0.1", 1, tabs=[])
    try:
        assert gc.get_freeze_count() > 0  # what the open tabs hold leaves every collection
        gc.set_threshold(100, 10, 10)
        gc.callbacks.append(heard)
        try:
            await holder.log_start()
            for _ in range(10_000):  # a hundred times the young threshold
                _Cycle()
            step_collections = len(collections)
            await holder.log_take()
            for _ in range(1_000):
                _Cycle()
        finally:
            gc.callbacks.remove(heard)
        assert step_collections == 0
        assert collections  # collections run again between steps
    finally:
        await holder.close_all()
    assert gc.isenabled()


@pytest.mark.usefixtures("gc_restored")
async def test_what_closed_tabs_leave_frozen_is_collected_when_tabs_close() -> None:
    holder = TabHolder()
    await holder.connect("sw", "127.0.0.1", 1, tabs=[])
    left = _Cycle()  # a tab's objects: open at the last connect, so frozen with it
    gc.freeze()
    gone = weakref.ref(left)
    del left  # the tab closed: its cycle is garbage, but frozen
    try:
        await holder.close_tabs()
        assert gone() is None
    finally:
        await holder.close_all()


def test_the_probe_tells_collections_from_waiting_for_a_core() -> None:
    events: list[tuple[Any, ...]] = [
        # (kind, start, wall ms, generation, collected, CPU ms)
        ("gc", 1.000, 30.0, 1, 5, 29.0),
        ("gc", 2.000, 2.0, 0, 0, 0.5),
        # (kind, start, lag ms, loop CPU ms over the lag's window)
        ("lag", 0.999, 31.0, 33.0),  # the collection above: the loop was busy
        ("lag", 3.000, 40.0, 1.0),  # no collection, little CPU: waiting for a core
        ("lag", 9.000, 50.0, 50.0),  # outside the window
    ]
    summary = summarize(events, 0.0, 5.0)
    assert summary["gen1"] == (1, 30.0, 30.0, 29.0)
    assert summary["gen0"] == (1, 2.0, 2.0, 0.5)
    assert summary["lags"] == (2, 71.0, 40.0)
    assert summary["lags_over_5ms"] == 2
    assert summary["lags_with_gc"] == (1, 31.0)
    assert summary["lags_busy"] == (1, 31.0)
