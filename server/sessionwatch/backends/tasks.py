"""Stopping a task: cancel it, wait for it to end, and never absorb a cancellation of the
caller's own.

``with suppress(CancelledError): await task`` looks the same and is not: when the task
waiting there is itself cancelled (a shut-down cancelling the stopper), ``await task``
raises that cancellation and ``suppress`` swallows it, so the stopper runs on as if it had
not been cancelled. :func:`stop_task` waits with :func:`asyncio.wait`, which raises only
the caller's cancellation, and reads the task's outcome separately.

The lowest layer allowed asyncio (``core`` is pure); every layer above uses it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["stop_task"]


async def stop_task(task: asyncio.Future[Any]) -> BaseException | None:
    """Cancel ``task`` and wait until it has ended. Returns the exception it ended with
    other than its cancellation (retrieved: never reported as unobserved), else ``None``.

    Raises:
        asyncio.CancelledError: the caller was cancelled while it waited (the task,
            already cancelled, ends on its own).
    """
    task.cancel()
    await asyncio.wait([task])
    return None if task.cancelled() else task.exception()
