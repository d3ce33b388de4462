"""A push leaves nothing for the garbage collector (docs/performance.md, finding 13): its
objects are freed by reference counting as soon as the frame is written, so pushes at
any rate never fill the young generation and no collection pauses a worker holding
thousands of sockets."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sessionwatch.core.events import Event
from sessionwatch.live.connection import Connection
from sessionwatch.live.registry import Registry
from sessionwatch.live.routing import Deliveries, Router
from support.live import SERVING_PATHS, serving


class _Subscribed:
    async def subscribe(self, *channels: str) -> None:
        return None


@pytest.fixture(name="gc_off")
def _gc_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.usefixtures("gc_off")
@pytest.mark.parametrize("path", SERVING_PATHS)
@pytest.mark.parametrize("waits", [False, True], ids=["send-at-once", "send-waits"])
async def test_a_thousand_pushes_leave_no_cyclic_garbage(waits: bool, path: str) -> None:
    """Each push goes to an idle socket (sent at once) or, with a send that must wait
    (flow control), through the socket's writer task; the socket served by its task or
    by the server's callbacks."""
    written: list[str] = []

    async def send(text: str) -> None:
        if waits:
            await asyncio.sleep(0)
        written.append(text)

    registry = Registry("sw", max_per_session=4, max_per_user=4)
    registry.subscription = _Subscribed()  # type: ignore[assignment]
    router = Router(registry, Deliveries(), lambda group, at: None)
    router.on_push = lambda seconds: None  # the service's push-latency histogram
    conn = Connection("s" * 22, None, send, queue_size=8)
    conn.on_pushed = router.pushed
    await registry.attach(conn)
    conn.bind(1)
    channel = next(iter(registry.channels))
    stop = asyncio.Event()
    served = serving(conn, path, stop.wait())  # the socket's reader
    await asyncio.sleep(0)

    async def pushes(first: int, count: int) -> None:
        for gen in range(first, first + count):
            by = {"device": "Chrome on Linux", "at": gen}
            payload = Event("superseded", conn.session, {"gen": gen, "by": by}).payload()
            router.dispatch(channel, payload)
            for _ in range(3):
                await asyncio.sleep(0)

    await pushes(2, 100)  # warm-up: caches, the writer's first task
    gc.collect()
    await pushes(102, 1_000)
    assert len(written) == 1_100
    assert gc.collect() == 0
    stop.set()
    await served
