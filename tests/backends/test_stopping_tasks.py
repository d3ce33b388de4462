"""Stopping a task (backends/tasks.py) and the blocks that stop theirs with it: a
cancellation of the stopper is never absorbed (``suppress(CancelledError): await task``
swallowed it, and the stopper ran on as if it had not been cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from sessionwatch.backends.tasks import stop_task
from sessionwatch.service.background import background
from support.live import WAIT


class SlowToStop:
    """A task body whose clean-up after a cancellation waits for ``release``."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopping.set()
            await self.release.wait()
            raise


async def _cancelled_while_stopping(slow: SlowToStop, stop: Callable[[], Awaitable[Any]]) -> None:
    """Run ``stop`` in a task, cancel that task while ``slow`` cleans up: the task must end
    cancelled, without running on past ``stop``."""
    ran_on: list[bool] = []

    async def stopper() -> None:
        await stop()
        ran_on.append(True)

    task = asyncio.create_task(stopper())
    await asyncio.wait_for(slow.stopping.wait(), WAIT)
    task.cancel()
    await asyncio.wait_for(asyncio.wait([task]), WAIT)
    assert task.cancelled() and not ran_on, "the stopper's own cancellation was absorbed"
    slow.release.set()


async def test_stop_task_does_not_absorb_the_callers_cancellation() -> None:
    slow = SlowToStop()
    task = asyncio.create_task(slow.run())
    await asyncio.sleep(0)  # started
    await _cancelled_while_stopping(slow, lambda: stop_task(task))
    await asyncio.wait_for(asyncio.wait([task]), WAIT)
    assert task.cancelled()


async def test_stop_task_waits_and_returns_what_the_task_ended_with() -> None:
    cleaned: list[bool] = []

    async def cleans_up() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            cleaned.append(True)

    task = asyncio.create_task(cleans_up())
    await asyncio.sleep(0)
    assert await asyncio.wait_for(stop_task(task), WAIT) is None and cleaned == [True]

    async def fails() -> None:
        raise ValueError("broken")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    error = await asyncio.wait_for(stop_task(failed), WAIT)
    assert isinstance(error, ValueError)


async def test_background_block_does_not_absorb_a_cancellation_of_its_own() -> None:
    slow = SlowToStop()
    block = background(slow.run(), "slow")
    await block.__aenter__()
    await asyncio.sleep(0)  # the background task started
    await _cancelled_while_stopping(slow, lambda: block.__aexit__(None, None, None))


async def test_background_block_raises_the_error_its_task_ended_with() -> None:
    failing = asyncio.Event()

    async def fails() -> None:
        failing.set()
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        async with background(fails(), "fails"):
            await asyncio.wait_for(failing.wait(), WAIT)  # it failed in that same step
