"""A tap on the hub's real subscription, through the ``Subscription`` protocol only.

``Tap.install(backend)`` makes the backend hand out its real subscriptions wrapped in a
:class:`Tap` (install it before the app is served: the hub subscribes when it starts).
Through the tap a test sees which channels the hub has subscribed, and plays what a
network does to pub/sub: loses messages (a dropped connection), breaks the reader once,
announces a reconnect (the ``resync`` marker a real subscription yields) and holds
subscribes back. Nothing here reads or writes a private field of the product.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sessionwatch.backends.base import Backend, ChannelMessage, Subscription

__all__ = ["Tap"]


class Tap:
    """A real :class:`Subscription`, observed and disturbed on demand.

    Attributes:
        channels: the channels subscribed through this tap now.
        losing: while True, channel messages vanish (``lost`` is set on the first).
        fail_next: the next channel message is lost and the reader gets an exception
            (``failed`` is set).
        gate: when set, each subscribe waits for it.
    """

    def __init__(self, inner: Subscription) -> None:
        self._inner = inner
        self._messages = aiter(inner)  # one iterator for the subscription's life
        self._next: asyncio.Future[ChannelMessage] | None = None
        self._injected: asyncio.Queue[ChannelMessage] = asyncio.Queue()
        self.channels: set[str] = set()
        self.losing = False
        self.lost = asyncio.Event()
        self.fail_next = False
        self.failed = asyncio.Event()
        self.gate: asyncio.Event | None = None

    @classmethod
    def install(cls, backend: Backend) -> list[Tap]:
        """Wrap every subscription ``backend`` hands out from now on; the list fills
        with the taps as the hub creates them."""
        taps: list[Tap] = []
        original = backend.subscription

        def subscription() -> Subscription:
            tap = cls(original())
            taps.append(tap)
            return tap

        backend.subscription = subscription  # type: ignore[method-assign]
        return taps

    @property
    def connected(self) -> bool:
        return bool(getattr(self._inner, "connected", True))

    def reconnected(self) -> None:
        """Yield a ``resync`` marker next, as a subscription does after a reconnect."""
        self._injected.put_nowait(ChannelMessage(channel="", payload="", resync=True))

    async def subscribe(self, *channels: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        await self._inner.subscribe(*channels)
        self.channels.update(channels)

    async def unsubscribe(self, *channels: str) -> None:
        await self._inner.unsubscribe(*channels)
        self.channels.difference_update(channels)

    def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChannelMessage]:
        while True:
            if self._next is None:
                self._next = asyncio.ensure_future(anext(self._messages))
            injected = asyncio.ensure_future(self._injected.get())
            try:
                await asyncio.wait({self._next, injected}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not injected.done():
                    injected.cancel()
            if injected.done() and not injected.cancelled():
                yield injected.result()
                continue
            nxt, self._next = self._next, None
            try:
                message = nxt.result()
            except StopAsyncIteration:
                return
            if message.resync:
                yield message
            elif self.fail_next:
                self.fail_next = False
                self.failed.set()
                raise RuntimeError("injected reader failure")
            elif self.losing:
                self.lost.set()
            else:
                yield message

    async def aclose(self) -> None:
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
            self._next = None
        await self._inner.aclose()
