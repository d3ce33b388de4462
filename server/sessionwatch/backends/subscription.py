"""The pub/sub reader of one Redis or Sentinel deployment: every push starts here.

One connection per process carries every channel of its sockets' sessions and users. It
is made by redis-py's pool and taken over (``takeover.py``): :class:`_Feed` gives the
bytes to hiredis' reader and queues every message of a read at once, so a burst costs
one wake-up of the hub's reader, not one ``get_message`` call (a timeout, a stream read
and a parse in Python) per message — 2.4 times less CPU per message measured with a reader
like this one (docs/performance.md).

Liveness is checked here, not left to TCP: after ``health_interval`` seconds without a
byte from Redis a ``PING`` is sent, and no answer within ``reply_timeout`` counts as a
lost connection (a silent partition otherwise looks like a quiet channel).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import ChannelMessage
from .confirmations import Confirmations
from .keys import KEEPALIVE_CHANNEL
from .multiplex import pack
from .takeover import ReplyProtocol, give_back, take_over

__all__ = ["RedisSubscription"]

logger = logging.getLogger(__name__)

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class _Feed(ReplyProtocol):
    """Parses what Redis pushes on a subscribed connection into the subscription."""

    def __init__(self, owner: RedisSubscription) -> None:
        super().__init__()
        self._owner = owner
        self.lost: BaseException | None = None

    def replied(self, reply: Any) -> bool:
        if reply == "PONG":  # RESP3's answer to a health check's PING, subscribed or not
            return True
        if isinstance(reply, hiredis.ReplyError) or not isinstance(reply, list):
            self.failed(RedisConnectionError(f"unexpected reply on pub/sub: {reply!r}"))
            return False
        kind = reply[0]
        if kind == "message":
            self._owner.received(ChannelMessage(channel=reply[1], payload=reply[2]))
        elif kind == "subscribe":
            self._owner.confirmed(reply[1])
        # "unsubscribe" and the "pong" of a health check need nothing
        return True

    def read(self) -> None:
        self._owner.heard()
        self._owner.news()

    def failed(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        self._owner.wake()


class RedisSubscription:
    """One pub/sub connection that survives Redis restarts, failovers and ``CLIENT KILL``.

    On a lost connection it reconnects with jittered exponential backoff (capped at
    ``max_backoff`` seconds), re-subscribes every channel and then yields one
    ``ChannelMessage(resync=True)``. Every failure is logged; iteration never ends
    until :meth:`aclose`.

    Args:
        pool: the backend's redis-py connection pool (TLS, ACL, Sentinel discovery).
        max_backoff: the longest wait between reconnection attempts, in seconds.
        health_interval: seconds of silence after which Redis is pinged.
        reply_timeout: seconds the ping's answer may take before the link counts as lost.
    """

    def __init__(
        self,
        pool: Any,
        *,
        max_backoff: float = 5.0,
        health_interval: float = 15.0,
        reply_timeout: float = 5.0,
    ) -> None:
        self._pool = pool
        self._max_backoff = max_backoff
        self._health_interval = health_interval
        self._reply_timeout = reply_timeout
        self._channels: set[str] = set()
        self._closed = False
        self._confirmations = Confirmations()
        self._unconfirmed: set[str] = set()  # sent by the current _open, not yet confirmed
        self._messages: collections.deque[ChannelMessage] = collections.deque()
        self._wake: asyncio.Future[None] | None = None
        self._feed: _Feed | None = None
        self._connection: Any = None
        self._transport: asyncio.Transport | None = None
        self._unsent: list[bytes] = []
        self._heard_at = 0.0
        self._pinged_at: float | None = None
        self._listener: Callable[[ChannelMessage], None] | None = None
        # How often the health is looked at: fine enough for the interval and the
        # reply's timeout (a PING sent in one look is judged in a later one), never a
        # busy loop.
        self._tick = max(0.01, min(1.0, health_interval / 2, reply_timeout / 2))
        self.confirm_timeout = 5.0
        self.connected = False
        self.reconnects = 0

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._channels)

    # -- what the protocol calls ---------------------------------------------------------

    def heard(self) -> None:
        self._heard_at = asyncio.get_running_loop().time()
        self._pinged_at = None

    def received(self, message: ChannelMessage) -> None:
        listener = self._listener
        if listener is None:
            self._messages.append(message)
            return
        try:
            listener(message)
        except Exception:  # the reader must go on whatever one message does
            logger.exception("pub/sub listener failed on a message of %s", message.channel)

    def listen(self, listener: Callable[[ChannelMessage], None]) -> None:
        """Hand every message to ``listener`` as it is read (``base.Listenable``); the
        iterator then yields only resync markers. Messages already queued go first."""
        while self._messages:
            listener(self._messages.popleft())
        self._listener = listener

    def confirmed(self, channel: str) -> None:
        self._unconfirmed.discard(channel)
        self._confirmations.confirm(channel)

    def news(self) -> None:
        """A read was handed on: wake the reader task only when it has news in it. It
        has while it connects (confirmations) or queues messages for the iterator; a
        message handed to the listener is not news to it, and waking it for each read
        cost a future, a timeout and a task step per push (a loss wakes it in
        ``failed``)."""
        if not self.connected or self._listener is None or self._messages:
            self.wake()

    def wake(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- subscriptions -------------------------------------------------------------------

    def _send(self, *command: str) -> None:
        """Queue ``command``; what one loop iteration queues goes out in one write (a
        connect burst subscribes thousands of sessions, one syscall per iteration)."""
        if self._transport is None:
            return
        self._unsent.append(pack(*command))
        if len(self._unsent) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        data = b"".join(self._unsent)
        self._unsent.clear()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def subscribe(self, *channels: str) -> None:
        """Subscribe and wait (up to ``confirm_timeout``) until Redis confirms, so a
        state check made afterwards cannot miss an event published in between.

        While disconnected the channels are recorded and the reconnect subscribes them;
        if that outlasts the timeout, the reconnect yields a resync instead."""
        new = [c for c in channels if c not in self._channels]
        if not new:
            return
        self._channels.update(new)
        waiters = self._confirmations.expect(new)
        try:
            if self.connected:
                self._send("SUBSCRIBE", *new)
            await asyncio.wait_for(asyncio.gather(*waiters), self.confirm_timeout)
        except TimeoutError:
            pass  # the reader reconnects, resubscribes and yields a resync
        finally:
            self._confirmations.forget(new, waiters)

    async def unsubscribe(self, *channels: str) -> None:
        gone = [c for c in channels if c in self._channels]
        if not gone:
            return
        self._channels.difference_update(gone)
        if self.connected:
            self._send("UNSUBSCRIBE", *gone)

    # -- the connection ------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect and subscribe every channel, waiting (up to ``confirm_timeout``) for
        Redis to confirm them all: only then may the consumer re-check state. Messages
        that arrive meanwhile stay queued, in order."""
        await self._close_connection()
        feed = _Feed(self)
        self._connection, self._transport = await take_over(self._pool, feed)
        self._feed = feed
        self.heard()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        # A placeholder channel keeps the connection subscribed even with no tabs.
        sent = set(self._channels)
        self._unconfirmed = {KEEPALIVE_CHANNEL, *sent}
        self._send("SUBSCRIBE", KEEPALIVE_CHANNEL, *sent)
        while True:
            missing = self._channels - sent  # subscribe() calls made while we connect
            if missing:
                sent |= missing
                self._unconfirmed |= missing
                self._send("SUBSCRIBE", *missing)
            if not self._unconfirmed:
                break
            if feed.lost is not None:
                raise feed.lost
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RedisTimeoutError(f"{len(self._unconfirmed)} subscription(s) not confirmed")
            await self._wait(min(remaining, 1.0))
        left = sent - self._channels  # unsubscribe() calls made while we connected
        if left:
            self._send("UNSUBSCRIBE", *left)
        self.connected = True

    async def _wait(self, timeout: float) -> None:
        """Until the protocol has news (data, a confirmation, a loss) or ``timeout``."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._wake
        except TimeoutError:
            pass
        finally:
            self._wake = None

    def _check_health(self) -> None:
        """Ping a silent connection; a ping unanswered in time is a lost connection."""
        now = asyncio.get_running_loop().time()
        if self._pinged_at is not None:
            if now - self._pinged_at > self._reply_timeout:
                raise RedisTimeoutError("Redis did not answer a pub/sub health check")
        elif now - self._heard_at > self._health_interval:
            self._pinged_at = now
            self._send("PING")

    async def _close_connection(self) -> None:
        self.connected = False
        self._feed = None
        self._unsent.clear()
        transport, self._transport = self._transport, None
        connection, self._connection = self._connection, None
        if transport is not None:
            transport.abort()
        if connection is not None:
            with contextlib.suppress(Exception):
                await give_back(self._pool, connection)

    async def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        attempt = 0  # failures since the last good connection
        messages = self._messages
        while not self._closed:
            try:
                if not self.connected:
                    await self._open()
                    if attempt:
                        self.reconnects += 1
                        logger.warning(
                            "pub/sub reconnected; %d channel(s) resubscribed", len(self._channels)
                        )
                        attempt = 0
                        yield ChannelMessage(channel="", payload="", resync=True)
                while messages:
                    yield messages.popleft()
                feed = self._feed
                if feed is not None and feed.lost is not None:
                    raise feed.lost
                self._check_health()
                await self._wait(self._tick)
            except (*_UNREACHABLE, RedisError) as exc:
                if self._closed:
                    return
                await self._close_connection()
                messages.clear()  # a resync follows: what was queued is re-read from state
                delay = min(self._max_backoff, 0.05 * 2**attempt) * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                attempt += 1
                logger.warning("pub/sub connection lost (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def aclose(self) -> None:
        self._closed = True
        self.wake()
        await self._close_connection()
