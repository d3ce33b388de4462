"""A task that lives exactly as long as a block (the app's serving time)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from ..backends.tasks import stop_task

__all__ = ["background"]


@contextlib.asynccontextmanager
async def background(coroutine: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """Run ``coroutine`` as a task during the block; cancel and await it on the way out
    (so shutting down never leaves it running or its error unobserved; a cancellation
    of the block's own task is not absorbed)."""
    task = asyncio.create_task(coroutine, name=name)
    try:
        yield
    finally:
        error = await stop_task(task)
        if error is not None:
            raise error
