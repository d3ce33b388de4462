"""The per-process hub: fans backend events out to this process's sockets.

One hub per worker process holds one backend :class:`~.backends.base.Subscription` and
one supervised reader task. It keeps a registry of the local sockets (each a
:class:`Connection`) keyed by session and by user, subscribes a channel when its first
local socket arrives and unsubscribes when the last leaves. Fan-out never awaits a
socket: every connection has a bounded queue drained by its own writer; a full queue
closes that socket with 4012 (see :mod:`.connection`). It also runs what no single request can:

- expiry timers: ``expiring`` before a session's idle deadline, and at the deadline a
  backend check that ends the session (the backend publishes ``expired`` everywhere);
- resync: after a pub/sub reconnect (or a reader restart) every local socket is checked
  against stored state and corrected (``superseded`` or a terminal close);
- lost state: once a second the backend's epoch is read; a new one means the stored
  state was lost (``FLUSHALL``, a restart without persistence) with no reconnect to
  say so, and a resync closes the sockets of every session that is gone (4013);
- presence: each bound socket's presence is refreshed once per heartbeat interval, a
  twentieth of the sockets at a time.

Routing follows ``docs/protocol.md`` §4; :meth:`Hub.stats` exposes the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

from ..backends.base import (
    Backend,
    ChannelMessage,
    Listenable,
    Lookup,
    Subscription,
    Timeouts,
    session_channel,
    user_channel,
)
from ..core.config import Settings
from ..core.events import (
    SERVER_EVENT_TYPES,
    TERMINAL_CLOSE_CODES,
    CloseCode,
    Event,
    encode,
    ended_message,
    expiring_message,
    parse_event,
    ready_message,
    superseded_message,
)
from ..core.exceptions import BackendUnavailable, ProtocolError
from ..core.limits import AddressLimits
from ..core.tabs import tab_status
from .admission import Admission
from .connection import Connection, TooManySockets
from .timers import Timers

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

_CHECK_CONCURRENCY: Final = 32  # backend reads in flight during a resync
# Presence: a slice of the sockets per tick; bigger pipelines block the loop while
# redis-py parses the replies (256 sockets per pipeline raised push p99 to ~30 ms).
_PRESENCE_SLICES: Final = 20
_PRESENCE_BATCH: Final = 32
_RETRY_CHECK_AFTER: Final = 2.0  # seconds, when an expiry check found the backend down
_MAX_READER_BACKOFF: Final = 5.0
# Seconds between epoch reads: how soon tabs learn that stored state was lost.
STATE_CHECK_EVERY: Final = 1.0
# Seconds a handshake may wait for its turn to open (admission.py) before it is refused
# 503 ``busy``: long enough for a worker to work through a reconnect storm's queue.
OPENING_WAIT: Final = 30.0


class _Group:
    """The local sockets of one channel."""

    __slots__ = ("channel", "conns", "ready")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.conns: set[Connection] = set()
        self.ready: asyncio.Future[None] | None = None  # the pending subscribe

    def subscribed(self, ready: asyncio.Future[None]) -> None:
        # Dropped once done: a finished task kept per session costs ~0.7 KB.
        if self.ready is ready:
            self.ready = None


class _SessionGroup(_Group):
    """A session's local sockets and its expiry timer."""

    __slots__ = ("checking", "expires_at", "id", "timer", "warned")

    def __init__(self, channel: str, public_id: str) -> None:
        super().__init__(channel)
        self.id = public_id
        self.expires_at: int | None = None
        self.warned: int | None = None  # the deadline ``expiring`` was sent for
        self.timer: list[Any] | None = None  # its entry in the hub's expiry timers
        self.checking = False


class _UserGroup(_Group):
    __slots__ = ()


class Hub:
    """The per-process fan-out of :class:`SessionWatch` events (``watch.hub``).

    Args:
        backend: where sessions live and events are published.
        settings: the extension's settings (limits, heartbeat, lead times).
        timeouts: the sessions' timeouts, as the backend takes them.
        now_ms: the clock, in epoch milliseconds.
        exclusive_tabs: whether a newer claim supersedes older tabs (the policy's
            :attr:`~sessionwatch.core.policy.Policy.exclusive_tabs`). A socket's token
            is verified once, by its hello; the hub applies the supersede rule
            (:func:`~sessionwatch.core.tabs.tab_status`) to the generation it bound.
    """

    def __init__(
        self,
        backend: Backend,
        settings: Settings,
        timeouts: Timeouts,
        now_ms: Callable[[], int],
        *,
        exclusive_tabs: bool,
    ) -> None:
        self._backend = backend
        self.settings = settings
        self._timeouts = timeouts
        self._now_ms = now_ms
        self._exclusive_tabs = exclusive_tabs
        # Hears, for each socket an event was pushed to, the seconds from its arrival on
        # pub/sub to its frames being written (the service's push-latency histogram).
        self.on_push: Callable[[float], None] | None = None
        self._routing_since: float | None = None  # while _dispatch routes an event
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._state_watch: asyncio.Task[None] | None = None
        self._epoch: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._groups: dict[str, _Group] = {}  # channel -> local sockets
        self._sessions: dict[str, _SessionGroup] = {}
        self._users: dict[str, _UserGroup] = {}
        self._conns: set[Connection] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self.running = False
        self._counters = dict.fromkeys(
            ("reconnects", "resyncs", "reader_restarts", "dropped_slow", "events_in"), 0
        )
        self._counters["state_lost"] = 0
        self._counters["events_out"] = 0
        self._delivered: dict[str, int] = {}  # messages queued, per event type
        # One loop timer each for every session's expiry and every socket's read deadline.
        self._expiry: Timers[_SessionGroup] = Timers(self._on_timer)
        self.read_deadlines: Timers[Connection] = Timers(Connection.read_timed_out)
        self.openings = Admission(settings.max_opening_sockets, OPENING_WAIT)
        # Per client address: sockets and hellos (here), new sessions (the extension).
        self.address_limits = AddressLimits(
            max_sockets=settings.max_sockets_per_address,
            new_sessions_per_second=settings.max_new_sessions_per_second,
            hellos_per_second=settings.max_hellos_per_second,
        )

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the subscription and start the reader and the presence ticker."""
        if self.running:
            return
        self._subscription = self._backend.subscription()
        if isinstance(self._subscription, Listenable):
            # Messages are routed as they are read; the reader task sees only resyncs.
            self._subscription.listen(self._heard)
        # Fresh for this serving (its semaphore belongs to the running loop).
        self.openings = Admission(self.settings.max_opening_sockets, OPENING_WAIT)
        self.running = True
        self._reader = asyncio.create_task(self._read_forever(), name="sessionwatch-hub-reader")
        self._ticker = asyncio.create_task(self._tick_forever(), name="sessionwatch-hub-ticker")
        self._epoch = None
        self._state_watch = asyncio.create_task(
            self._watch_state_forever(), name="sessionwatch-hub-state"
        )

    async def stop(self, *, grace: float = 5.0) -> None:
        """Close every socket with 1001, then cancel and await every task."""
        if not self.running:
            return
        self.running = False
        for conn in list(self._conns):
            conn.abort(CloseCode.GOING_AWAY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._empty.wait(), grace)
        self._expiry.clear()
        self.read_deadlines.clear()
        tasks = [
            t
            for t in (self._reader, self._ticker, self._state_watch, *self._tasks)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._subscription is not None:
            await self._subscription.aclose()
            self._subscription = None

    def stats(self) -> dict[str, Any]:
        """Gauges (sockets, sessions, users, channels, connected, opening,
        opening_queued) and counters (opening_refused, reconnects, resyncs,
        reader_restarts, dropped_slow, state_lost, events_in, events_out, and ``delivered``:
        messages queued per event type) for metrics."""
        subscription = self._subscription
        connected = bool(getattr(subscription, "connected", subscription is not None))
        return {
            "sockets": len(self._conns),
            "sessions": len(self._sessions),
            "users": len(self._users),
            "channels": len(self._groups),
            "connected": connected and self.running,
            "opening": self.openings.opening,
            "opening_queued": self.openings.waiting,
            "opening_refused": self.openings.refused,
            **self._counters,
            "delivered": dict(self._delivered),
        }

    # -- registry ------------------------------------------------------------------

    def sockets(self) -> list[Connection]:
        """This process's sockets, attached and not yet detached (a snapshot: the hub
        keeps registering and forgetting them as they come and go)."""
        return list(self._conns)

    async def attach(self, conn: Connection) -> None:
        """Register a socket and wait until its channels are subscribed (so a state
        check made afterwards cannot miss an event). Raises :class:`TooManySockets`."""
        if not self.running or self._subscription is None:
            raise BackendUnavailable("the live-push hub is not running")
        settings = self.settings
        session = self._sessions.get(conn.session)
        if session is not None and len(session.conns) >= settings.max_sockets_per_session:
            raise TooManySockets("too many sockets for this session")
        user = self._users.get(conn.user) if conn.user else None
        if user is not None and len(user.conns) >= settings.max_sockets_per_user:
            raise TooManySockets("too many sockets for this user")
        prefix = self._backend.key_prefix
        groups: list[_Group] = []
        if session is None:
            session = _SessionGroup(session_channel(prefix, conn.session), conn.session)
            self._sessions[conn.session] = session
        groups.append(session)
        if conn.user:
            if user is None:
                user = _UserGroup(user_channel(prefix, conn.user))
                self._users[conn.user] = user
            groups.append(user)
        self._conns.add(conn)
        self._empty.clear()
        conn.on_overflow = self._count_dropped
        conn.on_pushed = self._pushed
        waits = []
        for group in groups:
            if not group.conns:
                self._groups[group.channel] = group
                group.ready = asyncio.ensure_future(self._subscription.subscribe(group.channel))
                group.ready.add_done_callback(group.subscribed)
            group.conns.add(conn)
            if group.ready is not None:
                waits.append(group.ready)
        for ready in waits:
            with contextlib.suppress(Exception):  # logged by the subscription
                await asyncio.shield(ready)

    def _count_dropped(self) -> None:
        self._counters["dropped_slow"] += 1

    async def detach(self, conn: Connection) -> None:
        """Forget a socket; unsubscribe the channels it was the last local socket of."""
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        gone = []
        session = self._sessions.get(conn.session)
        user = self._users.get(conn.user) if conn.user else None
        for group in (session, user):
            if group is None:
                continue
            group.conns.discard(conn)
            if not group.conns:
                gone.append(group.channel)
                del self._groups[group.channel]
        if session is not None and not session.conns:
            del self._sessions[conn.session]
            self._expiry.cancel(session)
        if user is not None and not user.conns and conn.user:
            del self._users[conn.user]
        if not self._conns:
            self._empty.set()
        # Unsubscribe updates the subscription's channel set before it awaits, so a
        # socket attaching meanwhile subscribes afresh.
        if gone and self._subscription is not None:
            try:
                await self._subscription.unsubscribe(*gone)
            except Exception:
                logger.exception("unsubscribe failed")
        if conn.bound:
            try:
                await self._backend.set_presence(
                    [(conn.session, conn.id)], until=None, now=self._now_ms()
                )
            except Exception as exc:
                logger.warning("presence of socket %s not dropped: %r", conn.id, exc)

    # -- catch-up ------------------------------------------------------------------

    def settle(self, conn: Connection, found: Lookup) -> None:
        """Tell ``conn`` the truth of a state read made after it subscribed: ``ready``,
        ``superseded``, or a terminal close (4007 for a token that does not verify)."""
        record = found.record
        if conn.closing:
            return
        if record is None:
            self._end([conn], found.ended)
            return
        gen = conn.gen
        status = tab_status(gen, record.gen, exclusive=self._exclusive_tabs)
        if status == "invalid" or gen is None:
            conn.finish(CloseCode.TAB_INVALID)
            return
        group = self._sessions.get(conn.session)
        expires_at = record.expires_at(self._timeouts.idle)
        if group is not None:
            self._set_deadline(group, expires_at)
            expires_at = max(expires_at, group.expires_at or 0)
        if status == "superseded":
            self._count("superseded", conn.supersede(record.gen, record.claimed_by))
        elif conn.told_gen <= gen:  # else a newer claim was already pushed
            conn.push(ready_message(gen, expires_at, record.id, record.user))

    def _end(self, conns: Iterable[Connection], ended: str | None) -> None:
        """Close sockets of a session that stored state says is over. The event (with
        its ``by``/``reason``) normally got there first; this is the fallback."""
        kind = ended if ended in TERMINAL_CLOSE_CODES else "rotated"
        message = ended_message(kind) if kind != "rotated" else None
        open_conns = [conn for conn in conns if not conn.closing]
        for conn in open_conns:
            conn.finish(TERMINAL_CLOSE_CODES[kind], message)
        self._count(kind, len(open_conns))

    async def _check(self, group: _SessionGroup) -> None:
        """Re-read a session and correct its sockets (expiry timer and resync)."""
        found = await self.load(group.id)
        record = found.record
        if record is None:
            group.expires_at = None  # over: no more timers while its sockets close
            self._end(group.conns, found.ended)
            return
        told = sum(
            conn.supersede(record.gen, record.claimed_by)
            for conn in list(group.conns)
            if conn.bound
            and tab_status(conn.gen, record.gen, exclusive=self._exclusive_tabs) == "superseded"
        )
        self._count("superseded", told)
        self._set_deadline(group, record.expires_at(self._timeouts.idle))

    async def load(self, session_id: str) -> Lookup:
        """The session's current state, without touching it (a socket's check)."""
        return await self._backend.load(
            session_id, timeouts=self._timeouts, now=self._now_ms(), touch=False
        )

    # -- events --------------------------------------------------------------------

    async def _read_forever(self) -> None:
        """Iterate the subscription; any failure is logged and the reader restarts
        (followed by a resync, since messages may have been lost)."""
        delay = 0.05
        while self.running:
            subscription = self._subscription
            if subscription is None:
                return
            try:
                async for message in subscription:
                    delay = 0.05
                    if message.resync:
                        self._counters["reconnects"] += 1
                        self._spawn(self._resync())
                    else:
                        self._dispatch(message.channel, message.payload)
                if not self.running:
                    return
                logger.error("hub subscription ended unexpectedly; restarting it")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("hub reader failed; restarting in %.2fs", delay)
            self._counters["reader_restarts"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_READER_BACKOFF)
            self._spawn(self._resync())

    def _heard(self, message: ChannelMessage) -> None:
        self._dispatch(message.channel, message.payload)

    def _dispatch(self, channel: str, payload: str) -> None:
        self._counters["events_in"] += 1
        group = self._groups.get(channel)
        if group is None:
            return  # a late message for a channel we just left
        try:
            event = parse_event(payload)
        except ProtocolError as exc:
            logger.warning("malformed event on %s ignored: %s", channel, exc)
            return
        received = asyncio.get_running_loop().time()
        self._routing_since = received
        try:
            if isinstance(group, _SessionGroup):
                self._route_session(group, event)
            elif event.type == "signed_in":
                self._route_user(group, event)
        except ProtocolError as exc:
            logger.warning("malformed event on %s ignored: %s", channel, exc)
        except Exception:  # a bug in routing must not stop the reader either
            logger.exception("event %s on %s could not be routed", event.type, channel)
        finally:
            self._routing_since = None
        if self.on_push is not None:
            for conn in group.conns:  # those the event queued a frame for
                if conn.event_at is None and conn.has_pending:
                    conn.event_at = received

    def _pushed(self, seconds: float | None) -> None:
        if self.on_push is None:
            return
        if seconds is None:  # written while routing: only an event's push counts
            if self._routing_since is None:
                return
            seconds = asyncio.get_running_loop().time() - self._routing_since
        self.on_push(seconds)

    def _route_session(self, group: _SessionGroup, event: Event) -> None:
        sent = 0
        if event.type == "superseded":
            gen = event.gen
            if gen is None:
                raise ProtocolError("superseded without gen")
            by = event.fields.get("by")
            text = encode(superseded_message(gen, by))  # once, for every tab of the session
            sent = sum(conn.supersede(gen, by, text) for conn in list(group.conns))
        elif event.type == "rotated":
            for conn in list(group.conns):
                conn.finish(CloseCode.ROTATED)
                sent += 1
        elif event.terminal:
            wire = encode(event.wire())
            for conn in list(group.conns):
                conn.finish(TERMINAL_CLOSE_CODES[event.type], wire)
                sent += 1
        elif event.type in SERVER_EVENT_TYPES:
            if event.type == "extended":
                expires_at = event.fields.get("expires_at")
                if isinstance(expires_at, int) and not isinstance(expires_at, bool):
                    self._set_deadline(group, expires_at)
            wire = encode(event.wire())
            sent = sum(conn.push(wire) for conn in list(group.conns) if conn.bound)
        self._count(event.type, sent)

    def _count(self, event_type: str, sent: int) -> None:
        if sent:
            self._counters["events_out"] += sent
            self._delivered[event_type] = self._delivered.get(event_type, 0) + sent

    def _route_user(self, group: _Group, event: Event) -> None:
        wire = encode(event.wire())
        sent = sum(
            conn.push(wire)
            for conn in list(group.conns)
            if conn.bound and conn.session != event.session
        )
        self._count(event.type, sent)

    async def _resync(self) -> None:
        """Re-check every local session against stored state (after a lost connection),
        retrying with backoff the ones the backend could not answer for yet."""
        self._counters["resyncs"] += 1
        groups = list(self._sessions.values())
        delay = 0.1
        while groups:
            results = await _gather_limited(self._check, groups)
            failed = [
                group
                for group, result in zip(groups, results, strict=True)
                if isinstance(result, Exception) and self._sessions.get(group.id) is group
            ]
            for group, result in zip(groups, results, strict=True):
                if isinstance(result, Exception) and not isinstance(result, BackendUnavailable):
                    logger.error("session %s not re-checked", group.id, exc_info=result)
            if not failed or not self.running:
                return
            logger.warning(
                "resync: %d session(s) not re-checked yet; retrying in %.1fs", len(failed), delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_READER_BACKOFF)
            groups = failed

    async def _watch_state_forever(self) -> None:
        """Read the backend's epoch every ``STATE_CHECK_EVERY`` seconds; when it changed,
        the stored state was lost without a lost connection to tell (``FLUSHALL``), so
        every local session is re-checked. Unreachable backend: the reader's reconnect
        resyncs."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(STATE_CHECK_EVERY)
            first = False
            try:
                epoch = await self._backend.epoch()
            except BackendUnavailable:
                continue
            except Exception:
                logger.exception("epoch check failed")
                continue
            if self._epoch is not None and epoch != self._epoch:
                self._counters["state_lost"] += 1
                logger.warning("stored state was lost (new epoch); re-checking every session")
                self._spawn(self._resync())
            self._epoch = epoch

    # -- expiry --------------------------------------------------------------------

    def _set_deadline(self, group: _SessionGroup, expires_at: int) -> None:
        # Deadlines only move forward (``seen`` only grows); a late, older ``extended``
        # changes nothing.
        if group.expires_at is None or expires_at > group.expires_at:
            group.expires_at = expires_at
        elif group.timer is not None:
            return
        if not group.checking:  # the running check reschedules when it is done
            self._schedule(group)

    def _schedule(self, group: _SessionGroup, delay: float | None = None) -> None:
        if group.expires_at is None or self._sessions.get(group.id) is not group:
            self._expiry.cancel(group)
            return
        if delay is None:
            now = self._now_ms()
            lead = int(self.settings.expiring_lead * 1000)
            due = group.expires_at
            if group.warned != group.expires_at and now < group.expires_at - lead:
                due -= lead
            delay = max(0.0, (due - now) / 1000)
        self._expiry.at(group, asyncio.get_running_loop().time() + delay)

    def check_expiry(self) -> None:
        """Re-evaluate every expiry timer against the clock now (after the clock jumped,
        e.g. a resumed VM; tests with a fake clock)."""
        for group in list(self._sessions.values()):
            self._on_timer(group)

    def _on_timer(self, group: _SessionGroup) -> None:
        self._expiry.cancel(group)  # when called directly (check_expiry)
        if group.expires_at is None or self._sessions.get(group.id) is not group:
            return
        now = self._now_ms()
        lead = int(self.settings.expiring_lead * 1000)
        if now >= group.expires_at:
            if not group.checking:
                group.checking = True
                self._spawn(self._expire(group))
            return
        if now >= group.expires_at - lead and group.warned != group.expires_at:
            group.warned = group.expires_at
            message = encode(expiring_message(group.expires_at, now))
            self._count(
                "expiring", sum(conn.push(message) for conn in list(group.conns) if conn.bound)
            )
        self._schedule(group)

    async def _expire(self, group: _SessionGroup) -> None:
        """At the deadline, ask the backend: it ends a due session and publishes
        ``expired`` to every process; a session extended elsewhere is rescheduled."""
        delay = None
        try:
            await self._check(group)
        except Exception as exc:
            logger.warning("expiry check of session %s failed: %r", group.id, exc)
            delay = _RETRY_CHECK_AFTER
        finally:
            group.checking = False
        self._schedule(group, delay)

    # -- presence ------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        """Refresh a slice of the sockets every ``1/_PRESENCE_SLICES`` of the heartbeat
        interval, so each socket is refreshed once per interval without a burst: with
        thousands of sockets, refreshing all at once kept a worker busy for seconds and
        delayed every push meanwhile (docs/performance.md, finding 2)."""
        interval = self.settings.heartbeat_interval / _PRESENCE_SLICES
        tick = 0
        while True:
            await asyncio.sleep(interval)
            tick = (tick + 1) % _PRESENCE_SLICES
            due = [conn for conn in self._conns if hash(conn.id) % _PRESENCE_SLICES == tick]
            try:
                await self.refresh_presence(due)
            except Exception:
                logger.exception("presence refresh failed")

    async def refresh_presence(self, conns: list[Connection]) -> None:
        """Mark bound sockets as live for two heartbeat intervals, in sequential batches
        of ``_PRESENCE_BATCH`` (one backend round trip each)."""
        now = self._now_ms()
        until = now + int(2 * self.settings.heartbeat_interval * 1000)
        live = [(conn.session, conn.id) for conn in conns if conn.bound and not conn.closing]
        failed = 0
        error: Exception | None = None
        for start in range(0, len(live), _PRESENCE_BATCH):
            batch = live[start : start + _PRESENCE_BATCH]
            try:
                await self._backend.set_presence(batch, until=until, now=now)
            except Exception as exc:
                failed += len(batch)
                error = exc
        if error is not None:
            logger.warning("presence of %d socket(s) not refreshed: %r", failed, error)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hub task failed", exc_info=task.exception())


_Item = TypeVar("_Item")


async def _gather_limited(
    action: Callable[[_Item], Awaitable[None]], items: list[_Item]
) -> list[Exception | None]:
    """Run ``action`` on every item, at most ``_CHECK_CONCURRENCY`` at a time; returns
    each one's exception or ``None``."""
    limit = asyncio.Semaphore(_CHECK_CONCURRENCY)

    async def one(item: _Item) -> Exception | None:
        async with limit:
            try:
                await action(item)
            except Exception as exc:
                return exc
            return None

    return list(await asyncio.gather(*(one(item) for item in items)))
