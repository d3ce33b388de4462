"""The per-process hub: fans backend events out to this process's sockets.

One hub per worker process holds one backend :class:`~.backends.base.Subscription` and
the tasks that serve it; each job is a module of its own, and the hub composes them:

- :mod:`.registry`: the local sockets by session and by user, the socket caps, and the
  channels, subscribed while a local socket holds them;
- :mod:`.routing`: a channel message to the right sockets' frames. Fan-out never awaits
  a socket: every connection has a bounded queue drained by its own writer; a full queue
  closes that socket with 4012 (see :mod:`.connection`);
- :mod:`.catchup`: a socket told the truth of a fresh state read (its ``hello``, and
  each session re-checked by expiry and resync);
- :mod:`.expiry`: ``expiring`` before a session's idle deadline, a check at it;
- :mod:`.resync`: every local socket re-checked after the pub/sub connection is
  re-established (or its reader restarted), or the backend's epoch changed;
- :mod:`.presence`: each bound socket's presence refreshed once per heartbeat interval,
  and (``presence_events``) a user's tabs told when a session's live tab count changed.

Routing follows ``docs/protocol.md`` §4; :meth:`Hub.stats` exposes the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..backends.base import Backend, Listenable, Lookup, Timeouts
from ..core.config import Settings
from ..core.events import CloseCode
from ..core.exceptions import BackendUnavailable
from .catchup import CatchUp
from .connection import Connection
from .expiry import Expiry
from .presence import Presence, PresenceNotices
from .registry import Registry, SessionGroup
from .resync import Resync
from .routing import Deliveries, Router

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

_MAX_READER_BACKOFF: Final = 5.0


class Hub:
    """The per-process fan-out of :class:`SessionWatch` events (``watch.hub``).

    Args:
        backend: where sessions live and events are published.
        settings: the extension's settings (socket caps, heartbeat, lead times).
        timeouts: the sessions' timeouts, as the backend takes them.
        now_ms: the clock, in epoch milliseconds.
        exclusive_tabs: whether a newer claim supersedes older tabs, asked each time the
            rule is applied (the current policy's
            :attr:`~sessionwatch.core.policy.Policy.exclusive_tabs`: it may change while
            the app runs). A socket's token is verified once, by its hello; the hub
            applies the supersede rule to the generation it bound.
    """

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        timeouts: Timeouts,
        now_ms: Callable[[], int],
        *,
        exclusive_tabs: Callable[[], bool],
    ) -> None:
        self._backend = backend
        self.settings = settings
        self.running = False
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._state_watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnects = 0
        self._reader_restarts = 0
        self._registry = Registry(
            backend.key_prefix,
            max_per_session=settings.max_sockets_per_session,
            max_per_user=settings.max_sockets_per_user,
        )
        self._deliveries = Deliveries()
        self._expiry = Expiry(
            settings.expiring_lead,
            now_ms,
            self._registry,
            self._deliveries,
            self._check,
            self._spawn,
        )
        self._catch_up = CatchUp(
            backend,
            timeouts,
            now_ms,
            self._registry,
            self._deliveries,
            self._expiry.set_deadline,
            exclusive_tabs,
        )
        self._router = Router(self._registry, self._deliveries, self._expiry.set_deadline)
        self._resync = Resync(
            backend, self._registry, self._catch_up.check, self._spawn, self._is_running
        )
        self._notices = (
            PresenceNotices(backend, now_ms, self._spawn) if settings.presence_events else None
        )
        self._presence = Presence(
            backend, settings.heartbeat_interval, now_ms, self._registry, self._notices
        )

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the subscription and start the reader, the presence ticker and the
        epoch watch."""
        if self.running:
            return
        subscription = self._backend.subscription()
        self._registry.subscription = subscription
        if isinstance(subscription, Listenable):
            # Messages are routed as they are read; the reader task sees only resyncs.
            subscription.listen(self._router.heard)
        self.running = True
        if self._notices is not None:
            self._notices.telling = True
        self._reader = asyncio.create_task(self._read_forever(), name="sessionwatch-hub-reader")
        self._ticker = asyncio.create_task(
            self._presence.tick_forever(), name="sessionwatch-hub-ticker"
        )
        self._state_watch = asyncio.create_task(
            self._resync.watch_epoch_forever(), name="sessionwatch-hub-state"
        )

    async def stop(self, *, grace: float = 5.0) -> None:
        """Close every socket with 1001, then cancel every task and close the
        subscription. Each of the three waits (sockets gone, tasks ended, subscription
        closed) lasts at most ``grace`` seconds: a task that ignores its cancellation or
        a backend that does not answer is logged and left behind, never waited for
        forever (a worker could not shut down)."""
        if not self.running:
            return
        self.running = False
        if self._notices is not None:
            self._notices.telling = False
        for conn in list(self._registry.sockets):
            conn.abort(CloseCode.GOING_AWAY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._registry.empty.wait(), grace)
        self._expiry.clear()
        tasks = [
            t
            for t in (self._reader, self._ticker, self._state_watch, *self._tasks)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in done:  # retrieved: a failure was logged when it happened
                if not task.cancelled():
                    task.exception()
            if pending:
                logger.error(
                    "hub stop: %d task(s) still running %.1f s after their cancellation: %s",
                    len(pending),
                    grace,
                    ", ".join(sorted(_name(task) for task in pending)),
                )
        self._tasks.clear()
        subscription, self._registry.subscription = self._registry.subscription, None
        if subscription is not None:
            try:
                await asyncio.wait_for(subscription.aclose(), grace)
            except TimeoutError:
                logger.error("hub stop: the subscription did not close within %.1f s", grace)

    @property
    def on_push(self) -> Callable[[float], None] | None:
        """Hears, for each socket an event was pushed to, the seconds from its arrival
        on pub/sub to its frames being written (the service's push-latency histogram)."""
        return self._router.on_push

    @on_push.setter
    def on_push(self, hear: Callable[[float], None] | None) -> None:
        self._router.on_push = hear

    def stats(self) -> dict[str, Any]:
        """Gauges (sockets, sessions, users, channels, connected) and counters
        (reconnects, resyncs, reader_restarts, dropped_slow, state_lost, events_in,
        events_out, and ``delivered``: messages queued per event type) for metrics."""
        registry, deliveries = self._registry, self._deliveries
        subscription = registry.subscription
        connected = bool(getattr(subscription, "connected", subscription is not None))
        return {
            "sockets": len(registry.sockets),
            "sessions": len(registry.sessions),
            "users": len(registry.users),
            "channels": len(registry.channels),
            "connected": connected and self.running,
            "reconnects": self._reconnects,
            "resyncs": self._resync.resyncs,
            "reader_restarts": self._reader_restarts,
            "dropped_slow": deliveries.dropped_slow,
            "events_in": self._router.events_in,
            "state_lost": self._resync.state_lost,
            "events_out": deliveries.events_out,
            "delivered": dict(deliveries.by_type),
        }

    # -- sockets -------------------------------------------------------------------

    def sockets(self) -> list[Connection]:
        """This process's sockets, attached and not yet detached (a snapshot: the hub
        keeps registering and forgetting them as they come and go)."""
        return list(self._registry.sockets)

    async def attach(self, conn: Connection) -> None:
        """Register a socket and wait until its channels are subscribed (so a state
        check made afterwards cannot miss an event). Raises :class:`TooManySockets`,
        or :class:`BackendUnavailable` when the hub is not running."""
        if not self.running:
            raise BackendUnavailable("the live-push hub is not running")
        conn.on_overflow = self._deliveries.dropped
        conn.on_pushed = self._router.pushed
        await self._registry.attach(conn)

    async def detach(self, conn: Connection) -> None:
        """Forget a socket; unsubscribe the channels it was the last local socket of."""
        if conn not in self._registry.sockets:
            return
        channels, session = self._registry.forget(conn)
        if session is not None:
            self._expiry.cancel(session)
        await self._registry.release(channels)
        await self._presence.drop(conn)

    async def load(self, session_id: str) -> Lookup:
        """The session's current state, without touching it (a socket's check)."""
        return await self._catch_up.load(session_id)

    def settle(self, conn: Connection, found: Lookup) -> None:
        """Tell ``conn`` the truth of a state read made after it subscribed: ``ready``,
        ``superseded``, or a terminal close (4007 for a token that does not verify)."""
        self._catch_up.settle(conn, found)

    async def refresh_presence(self, conns: list[Connection]) -> None:
        """Mark bound sockets as live for two heartbeat intervals."""
        await self._presence.refresh(conns)

    async def arrive(self, conn: Connection) -> None:
        """A socket bound its first token: count it live (and, with
        ``presence_events``, tell its user's tabs)."""
        await self._presence.arrive(conn)

    def check_expiry(self) -> None:
        """Re-evaluate every expiry deadline against the clock now (after the clock
        jumped, e.g. a resumed VM; tests with a fake clock)."""
        self._expiry.check_all()

    # -- tasks ---------------------------------------------------------------------

    async def _read_forever(self) -> None:
        """Iterate the subscription; any failure is logged and the reader restarts
        (followed by a resync, since messages may have been lost)."""
        delay = 0.05
        while self.running:
            subscription = self._registry.subscription
            if subscription is None:
                return
            try:
                async for message in subscription:
                    delay = 0.05
                    if message.resync:
                        self._reconnects += 1
                        self._resync.request()
                    else:
                        self._router.dispatch(message.channel, message.payload)
                if not self.running:
                    return
                logger.error("hub subscription ended unexpectedly; restarting it")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub reader failed; restarting in %.2fs", delay)
            self._reader_restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_READER_BACKOFF)
            self._resync.request()

    async def _check(self, group: SessionGroup) -> None:
        # Expiry is built before catch-up, which moves its deadlines.
        await self._catch_up.check(group)

    def _is_running(self) -> bool:
        return self.running

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hub task failed", exc_info=task.exception())


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)
