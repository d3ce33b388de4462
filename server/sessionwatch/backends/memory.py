"""The in-process backend: complete and atomic for a single process.

Every operation runs without an ``await`` between its read and its write, so on one
event loop it is atomic just as a Lua script is on Redis; events are delivered to this
process's subscriptions in the same step. It is the embedded default and passes the
same contract suite as Redis; it cannot share state between processes (the service
refuses it with more than one worker).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from ..core.events import Device, Event
from ..core.exceptions import PendingLoginRefused, SessionLimitReached
from ..core.limits import RateCheck, gcra_take
from ..core.paging import MAX_PAGE_SIZE, PageCursor, page_size
from ..core.policy import bounded_limit, select_evictions
from ..core.remember import MAX_FAMILIES_PER_USER
from ..core.trail import AuditSettings
from .base import (
    EXPIRY_GRACE_MS,
    LIST_SCAN_FACTOR,
    MAX_LINKED,
    PENDING_REFUSALS,
    ChannelMessage,
    Claim,
    EndReason,
    Lookup,
    PendingLogin,
    Restore,
    RestoreStep,
    SessionPage,
    SessionRecord,
    Timeouts,
)
from .keys import KeyNames
from .memory_trail import MemoryTrail
from .tasks import stop_task
from .user_scan import UserPage, decode_cursor, encode_cursor

__all__ = ["MemoryBackend", "MemorySubscription"]

logger = logging.getLogger(__name__)

_SWEEP_EVERY = 60.0
_MAX_RATE_KEYS = 100_000  # subjects with a rate in flight; the oldest are forgotten beyond


def _flags(marks: dict[str, bool] | None) -> dict[str, str]:
    """A record's ``new_device``/``new_place`` fields, as the scripts write them."""
    return {name: "1" if value else "0" for name, value in (marks or {}).items()}


class MemorySubscription:
    """A subscription to the memory backend's channels (unbounded, in order)."""

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._queue: asyncio.Queue[ChannelMessage | None] = asyncio.Queue()
        self.channels: set[str] = set()
        self._closed = False

    async def subscribe(self, *channels: str) -> None:
        for channel in channels:
            self.channels.add(channel)
            self._backend._listeners[channel].add(self)

    async def unsubscribe(self, *channels: str) -> None:
        for channel in channels:
            self.channels.discard(channel)
            listeners = self._backend._listeners.get(channel)
            if listeners is not None:
                listeners.discard(self)
                if not listeners:
                    del self._backend._listeners[channel]

    def deliver(self, message: ChannelMessage) -> None:
        if not self._closed:
            self._queue.put_nowait(message)

    async def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            yield message

    async def aclose(self) -> None:
        if not self._closed:
            await self.unsubscribe(*list(self.channels))
            self._closed = True
            self._queue.put_nowait(None)


class MemoryBackend:
    """Sessions in this process's memory (``memory://``).

    Args:
        key_prefix: prefix of channel names (kept for parity with Redis).
        clock: seconds since the epoch; only the background sweep reads it (operations
            receive ``now`` from the caller).
        audit: how the audit trail (:mod:`.memory_trail`, a bounded ring) is kept.
    """

    def __init__(
        self,
        *,
        key_prefix: str = "sw:",
        clock: Callable[[], float] = time.time,
        audit: AuditSettings | None = None,
    ) -> None:
        self.key_prefix = key_prefix
        self.trail = MemoryTrail(audit or AuditSettings())  # the audit trail: a ring
        self.audit_read = self.trail.audit_read
        self.audit_reclaim = self.trail.audit_reclaim
        self.audit_ack = self.trail.audit_ack
        self.audit_latest = self.trail.audit_latest
        self.audit_after = self.trail.audit_after
        self.names = KeyNames(key_prefix)  # the channels are the plain (logical) ones
        self._clock = clock
        self._records: dict[str, SessionRecord] = {}
        self._grace_until: dict[str, int] = {}  # id -> when the record is forgotten
        self._tombstones: dict[str, tuple[EndReason, int]] = {}
        self._users: dict[str, dict[str, int]] = defaultdict(dict)
        self._presence: dict[str, dict[str, int]] = defaultdict(dict)
        self._listeners: dict[str, set[MemorySubscription]] = defaultdict(set)
        self._sweeper: asyncio.Task[None] | None = None
        self._epoch = secrets.token_hex(8)  # this process's memory is the whole state
        self._rates: OrderedDict[str, float] = OrderedDict()  # rate key -> tat (ms)
        self._pending: dict[str, PendingLogin] = {}  # pending sign-ins of on_limit="ask"
        self._links: dict[str, dict[str, int]] = {}  # link -> {public id: until (ms)}
        self._seen: dict[str, int] = {}  # seen logout token -> until (ms)
        # Remember-me families (family id -> fields as remember.lua keeps them, with
        # "until": when it lapses) and each user's family ids.
        self._families: dict[str, dict[str, Any]] = {}
        self._user_families: dict[str, dict[str, int]] = defaultdict(dict)  # id -> its end
        self._keep_family: str | None = None  # remember.lua's KEEP_FAMILY

    @property
    def audit(self) -> AuditSettings:
        """How the trail is kept (as the Redis backends' ``audit``; may be replaced)."""
        return self.trail.settings

    @audit.setter
    def audit(self, settings: AuditSettings) -> None:
        self.trail.settings = settings

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="sessionwatch-sweep")

    async def disconnect(self) -> None:
        if self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            error = await stop_task(sweeper)
            if error is not None:
                raise error

    async def ping(self) -> None:
        return None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                self.sweep(int(self._clock() * 1000))
            except Exception:  # never let the sweeper die silently
                logger.exception("memory backend sweep failed")

    def sweep(self, now: int) -> None:
        """Forget records past their grace period and stale tombstones and presence,
        as Redis key expiry does."""
        for public_id, until in list(self._grace_until.items()):
            if until <= now:
                self._forget(public_id)
        for public_id, (_, until) in list(self._tombstones.items()):
            if until <= now:
                del self._tombstones[public_id]
        for public_id in list(self._presence):
            self._live_sockets(public_id, now)
        for key, tat in list(self._rates.items()):
            if tat <= now:
                del self._rates[key]
        for key, pending in list(self._pending.items()):
            if pending.expires_at + EXPIRY_GRACE_MS <= now:
                del self._pending[key]
        for link in list(self._links):
            self._prune_link(link, now)
        for token, until in list(self._seen.items()):
            if until <= now:
                del self._seen[token]
        for family, fields in list(self._families.items()):
            if fields["until"] <= now:
                self._end_family(family)

    # -- events -----------------------------------------------------------------

    def _deliver(self, channel: str, payload: str) -> None:
        """Hand a payload to this process's subscribers, in the caller's step."""
        message = ChannelMessage(channel=channel, payload=payload)
        for subscription in list(self._listeners.get(channel, ())):
            subscription.deliver(message)

    def _publish(self, channel: str, event: Event) -> None:
        self._deliver(channel, event.payload())

    def _publish_session(self, public_id: str, event_type: str, **fields: Any) -> None:
        channel = self.names.session_channel(public_id)
        self._publish(channel, Event(event_type, public_id, fields))

    async def take_rates(self, checks: Sequence[RateCheck], *, now: int) -> int:
        # One process is the whole deployment: the extension's own buckets already
        # count everything; this keeps the contract (and a library caller) whole.
        keys = self.names.rates(checks)
        taken = [
            gcra_take(self._rates.get(key), now, rule)
            for key, (rule, _) in zip(keys, checks, strict=True)
        ]
        after = [tat for tat, _ in taken if tat is not None]
        if len(after) < len(taken):  # a bucket without room: nothing counted
            return max(wait for _, wait in taken)
        for key, tat in zip(keys, after, strict=True):
            self._rates[key] = tat
            self._rates.move_to_end(key)
            if len(self._rates) > _MAX_RATE_KEYS:
                self._rates.popitem(last=False)
        return 0

    async def publish(self, channel: str, payload: str) -> None:
        self._deliver(channel, payload)

    # -- provider links and seen logout tokens (docs/sso.md) ----------------------

    def _prune_link(self, link: str, now: int) -> dict[str, int]:
        members = {pid: until for pid, until in self._links.get(link, {}).items() if until > now}
        if len(members) > MAX_LINKED:
            members = dict(sorted(members.items(), key=lambda m: m[1])[-MAX_LINKED:])
        if members:
            self._links[link] = members
        else:
            self._links.pop(link, None)
        return members

    async def link(self, links: Sequence[str], public_id: str, *, until: int, now: int) -> None:
        for link in links:
            self._links.setdefault(link, {})[public_id] = until
            self._prune_link(link, now)

    async def linked(self, link: str, *, now: int) -> list[str]:
        return list(self._prune_link(link, now))

    async def first_use(self, token: str, *, until: int, now: int) -> bool:
        if self._seen.get(token, 0) > now:
            return False
        self._seen[token] = until
        return True

    async def forget_use(self, token: str) -> None:
        self._seen.pop(token, None)

    async def epoch(self) -> str:
        return self._epoch

    def subscription(self) -> MemorySubscription:
        return MemorySubscription(self)

    # -- helpers ----------------------------------------------------------------

    def _store(self, record: SessionRecord, timeouts: Timeouts) -> None:
        self._records[record.id] = record
        self._grace_until[record.id] = record.expires_at(timeouts.idle) + EXPIRY_GRACE_MS
        if record.user:
            self._users[record.user][record.id] = record.created

    def _forget(self, public_id: str) -> SessionRecord | None:
        record = self._records.pop(public_id, None)
        self._grace_until.pop(public_id, None)
        self._presence.pop(public_id, None)
        if record is not None and record.user:
            sessions = self._users.get(record.user)
            if sessions is not None:
                sessions.pop(public_id, None)
                if not sessions:
                    del self._users[record.user]
        return record

    def _family(self, family: str, now: int) -> dict[str, Any] | None:
        fields = self._families.get(family)
        if fields is not None and fields["until"] <= now:  # its lifetime is over
            self._end_family(family)
            return None
        return fields

    def _end_family(self, family: str) -> str | None:
        """End a family; returns its last session's id (prelude's end_family)."""
        fields = self._families.pop(family, None)
        if fields is None:
            return None
        families = self._user_families.get(fields["uid"])
        if families is not None:
            families.pop(family, None)
            if not families:
                del self._user_families[fields["uid"]]
        return str(fields["sid"])

    def _end_family_of(self, record: SessionRecord | None) -> None:
        """Every end but expiry ends the family the session was born of."""
        if record is not None and record.family and record.family != self._keep_family:
            self._end_family(record.family)

    def _finish(
        self,
        public_id: str,
        ending: EndReason,
        timeouts: Timeouts,
        now: int,
        fields: dict[str, Any] | None = None,
        *,
        actor: str,
        **record: str,
    ) -> None:
        """Forget a record, leave its tombstone, tell its tabs and record it (``record``:
        the trail's extra fields)."""
        if ending != "expired":
            self._end_family_of(self._records.get(public_id))
        ended = self._forget(public_id)
        self._tombstones[public_id] = (ending, now + timeouts.tombstone)
        self._publish_session(public_id, ending, **(fields or {}))
        if ended is not None:
            self.trail.append(ending, public_id, ended.user, ended.device, now, actor, **record)

    def _live(self, public_id: str, timeouts: Timeouts, now: int) -> Lookup:
        """The live record, or why there is none (expiring it if its time has come)."""
        record = self._records.get(public_id)
        if record is None:
            tombstone = self._tombstones.get(public_id)
            if tombstone is not None and tombstone[1] > now:
                return Lookup(None, tombstone[0])
            return Lookup(None)
        if now >= record.expires_at(timeouts.idle):
            self._finish(public_id, "expired", timeouts, now, actor="system")
            return Lookup(None, "expired")
        return Lookup(record)

    def _touch(self, record: SessionRecord, timeouts: Timeouts, now: int) -> SessionRecord:
        touched = replace(record, seen=now)
        self._store(touched, timeouts)
        self._publish_session(record.id, "extended", expires_at=touched.expires_at(timeouts.idle))
        return touched

    # -- operations --------------------------------------------------------------

    async def create(self, record: SessionRecord, *, timeouts: Timeouts, now: int) -> None:
        self._tombstones.pop(record.id, None)
        self._store(record, timeouts)

    async def load(
        self, public_id: str, *, timeouts: Timeouts, now: int, touch: bool = True
    ) -> Lookup:
        found = self._live(public_id, timeouts, now)
        record = found.record
        if record is None or not touch or now - record.seen < timeouts.refresh:
            return found
        return Lookup(self._touch(record, timeouts, now), extended=True)

    async def extend(self, public_id: str, *, timeouts: Timeouts, now: int) -> Lookup:
        found = self._live(public_id, timeouts, now)
        if found.record is None:
            return found
        return Lookup(self._touch(found.record, timeouts, now), extended=True)

    async def save_data(self, public_id: str, data: str, *, timeouts: Timeouts, now: int) -> bool:
        record = self._live(public_id, timeouts, now).record
        if record is None:
            return False
        self._records[public_id] = replace(record, data=data)
        return True

    async def claim(
        self, public_id: str, by: Device, *, exclusive: bool, timeouts: Timeouts, now: int
    ) -> Claim | Lookup:
        found = await self.load(public_id, timeouts=timeouts, now=now)
        record = found.record
        if record is None:
            return found
        device = record.device
        same = (by.browser, by.os, by.place) == (
            device.get("browser"),
            device.get("os"),
            device.get("place"),
        )
        claimer = replace(by, same_browser=same).to_json()
        claimed = replace(record, gen=record.gen + 1, claimed_by=claimer)
        self._records[public_id] = claimed
        if exclusive:  # a takeover: recorded, the claimer marked as claim.lua does
            marks = self.trail.novelty(record.user, claimer, now)
            told = {**claimer, **(marks or {})}
            self._publish_session(public_id, "superseded", gen=claimed.gen, by=told)
            self.trail.append(
                "superseded",
                public_id,
                record.user,
                record.device,
                now,
                "user",
                gen=str(claimed.gen),
                by=json.dumps(told, separators=(",", ":")),
                **_flags(marks),
            )
        return Claim(claimed.gen, claimed.tab_key, claimed.expires_at(timeouts.idle), claimed)

    async def login(
        self,
        old_id: str | None,
        record: SessionRecord,
        *,
        limit: int | None,
        deny: bool,
        timeouts: Timeouts,
        now: int,
        ceiling: int | None = None,
        actor: str = "user",
    ) -> list[str]:
        user = record.user
        if not user:
            raise ValueError("login needs a user id")
        limit, deny = bounded_limit(limit, deny, ceiling)
        old = self._live(old_id, timeouts, now).record if old_id else None
        existing = []
        for public_id in list(self._users.get(user, {})):
            if public_id == old_id:
                continue
            live = self._live(public_id, timeouts, now).record
            if live is not None:
                existing.append((public_id, live.created))
        evictions = select_evictions(existing, limit)
        if evictions and deny:
            self.trail.append(
                "limit_denied", old_id or "", user, record.device, now, actor,
                reason="session_limit",
            )  # fmt: skip
            raise SessionLimitReached(user, limit or 0)
        if old is not None:  # the record's claim generation and tab key are new ones
            self._end_family_of(old)  # a sign-in decides remember-me anew
            self._forget(old.id)
            self._publish_session(old.id, "rotated")
        by: dict[str, Any] = {**record.device, "at": now, "same_browser": False}
        marks = self.trail.novelty(user, by, now)
        by.update(marks or {})
        by_json = json.dumps(by, separators=(",", ":"))
        for public_id in evictions:
            self._finish(
                public_id, "evicted", timeouts, now, {"by": by},
                actor="session:" + record.id, by=by_json,
            )  # fmt: skip
        self._tombstones.pop(record.id, None)
        self._store(record, timeouts)
        self._publish(self.names.user_channel(user), Event("signed_in", record.id, {"by": by}))
        self.trail.append(
            "signed_in", record.id, user, record.device, now, actor, by=by_json, **_flags(marks)
        )
        return evictions

    async def put_pending(self, pending: PendingLogin, *, now: int) -> None:
        self._pending[pending.id] = pending

    async def get_pending(self, pending_id: str, *, now: int) -> PendingLogin | None:
        pending = self._pending.get(pending_id)
        if pending is None or pending.expires_at + EXPIRY_GRACE_MS <= now:
            return None
        return pending

    async def complete_login(
        self,
        pending: PendingLogin,
        old_id: str | None,
        record: SessionRecord,
        *,
        evict: Sequence[str],
        limit: int | None,
        timeouts: Timeouts,
        now: int,
        ceiling: int | None = None,
    ) -> list[str]:
        # No await from the checks to the sign-in: one atomic step, as complete.lua.
        user = record.user or ""
        stored = await self.get_pending(pending.id, now=now)
        refused = None
        if stored is None:
            refused = "unknown"
        elif stored.used:
            refused = "used"
        elif now >= stored.expires_at:
            refused = "expired"
        elif stored.bound != (old_id or "") or stored.user != user:
            refused = "foreign"
        if refused is not None or stored is None:
            raise PendingLoginRefused(PENDING_REFUSALS[refused or "unknown"])
        limit, _ = bounded_limit(limit, True, ceiling)
        chosen, staying, leaving = set(evict), 0, []
        for public_id in list(self._users.get(user, {})):
            if public_id != old_id and self._live(public_id, timeouts, now).record is not None:
                if public_id in chosen:
                    leaving.append(public_id)
                else:
                    staying += 1
        if limit is not None and staying >= limit:
            raise SessionLimitReached(user, limit)
        self._pending[pending.id] = replace(stored, used=True)
        by = {**record.device, "at": now, "same_browser": False}
        by_json = json.dumps(by, separators=(",", ":"))
        for public_id in leaving:  # recorded as the new session's evictions
            self._finish(
                public_id, "evicted", timeouts, now, {"by": by},
                actor="session:" + record.id, by=by_json,
            )  # fmt: skip
        evicted = await self.login(
            old_id, record, limit=limit, deny=True, timeouts=timeouts, now=now
        )
        return leaving + evicted

    async def reauthenticated(self, public_id: str, *, timeouts: Timeouts, now: int) -> bool:
        record = self._live(public_id, timeouts, now).record
        if record is None:
            return False
        self._records[public_id] = replace(record, authenticated_at=now)
        return True

    async def end(
        self,
        public_id: str,
        reason: EndReason,
        *,
        timeouts: Timeouts,
        now: int,
        user: str | None = None,
        detail: str | None = None,
        actor: str = "user",
    ) -> bool:
        record = self._live(public_id, timeouts, now).record
        if record is None or (user is not None and record.user != user):
            return False
        fields = {"reason": detail or "revoked"} if reason == "revoked" else None
        self._finish(public_id, reason, timeouts, now, fields, actor=actor, **(fields or {}))
        return True

    async def end_user(
        self,
        user: str,
        *,
        except_id: str | None,
        detail: str,
        timeouts: Timeouts,
        now: int,
        actor: str = "app",
    ) -> int:
        count = 0
        for public_id in list(self._users.get(user, {})):
            if public_id == except_id:
                continue
            if self._live(public_id, timeouts, now).record is not None:
                self._finish(
                    public_id, "revoked", timeouts, now, {"reason": detail},
                    actor=actor, reason=detail,
                )  # fmt: skip
                count += 1
        kept = self._records.get(except_id) if except_id else None
        for family in list(self._user_families.get(user, ())):
            if kept is None or family != kept.family:
                self._end_family(family)
        return count

    async def remember_start(
        self,
        record: SessionRecord,
        family: str,
        hashed: str,
        *,
        lifetime: int,
        timeouts: Timeouts,
        now: int,
    ) -> bool:
        public_id, user = record.id, record.user
        found = self._live(public_id, timeouts, now).record
        if found is None or user is None or found.user != user:
            return False
        self._end_family_of(found)
        self._families[family] = {
            "uid": user,
            "sid": public_id,
            "gen": 1,
            "cur": hashed,
            "prev": "",
            "prev_until": 0,
            "until": now + lifetime,
        }
        families = self._user_families[user]
        for lapsed in [f for f, end in families.items() if end <= now]:
            families.pop(lapsed)  # as remember_start.lua: scored by their end
        families[family] = now + lifetime
        for oldest in sorted(families, key=families.__getitem__)[:-MAX_FAMILIES_PER_USER]:
            self._end_family(oldest)
        self._records[public_id] = replace(found, family=family)
        return True

    async def remember_owner(self, family: str) -> tuple[str, str] | None:
        fields = self._families.get(family)
        return (fields["uid"], fields["sid"]) if fields is not None else None

    async def remember_restore(self, step: RestoreStep, *, timeouts: Timeouts, now: int) -> Restore:
        record, user = step.record, step.record.user
        if not user:
            raise ValueError("a restore needs the family's user id")
        f = self._family(step.family, now)
        if f is None or f["uid"] != user:
            return Restore("unknown", user)
        if step.gen == f["gen"] and step.token_hash == f["cur"]:
            if f["sid"] != step.old_id:
                return Restore("busy", user)
            self._keep_family = step.family  # the family's last session is replaced
            try:
                # No await inside suspends: atomic on this loop, as the Lua script is.
                evicted = await self.login(
                    step.old_id or None,
                    record,
                    limit=step.limit,
                    deny=step.deny,
                    timeouts=timeouts,
                    now=now,
                    ceiling=step.ceiling,
                )
            except SessionLimitReached:
                return Restore("denied", user)
            finally:
                self._keep_family = None
            f.update(
                gen=step.gen + 1,
                cur=step.successor_hash,
                prev=step.token_hash,
                prev_until=now + step.grace,
                sid=record.id,
            )
            return Restore("rotated", user, tuple(evicted))
        if (
            step.gen == f["gen"] - 1
            and step.token_hash == f["prev"]
            and now < f["prev_until"]
            and step.successor_hash == f["cur"]
            and record.id == f["sid"]
        ):
            again = self._live(record.id, timeouts, now).record is not None
            return Restore("again" if again else "gone", user)
        sid = self._end_family(step.family)
        if sid and self._live(sid, timeouts, now).record is not None:
            self._finish(
                sid, "revoked", timeouts, now, {"reason": "token_reuse"},
                actor="system", reason="token_reuse",
            )  # fmt: skip
            return Restore("reuse", user, ended=sid)
        return Restore("reuse", user)

    async def list_sessions(
        self,
        user: str,
        *,
        timeouts: Timeouts,
        now: int,
        after: PageCursor | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> SessionPage:
        limit = page_size(limit)  # 1 to MAX_PAGE_SIZE
        # The index in (created, id) order, as Redis keeps a sorted set (ids are ASCII:
        # Python's order is the bytes' order).
        ordered = sorted(
            PageCursor(created, public_id)
            for public_id, created in self._users.get(user, {}).items()
        )
        if after is not None:
            ordered = [position for position in ordered if position > after]
        records: list[SessionRecord] = []
        examined = 0
        for position in ordered[: limit * LIST_SCAN_FACTOR]:
            examined += 1
            record = self._live(position.public_id, timeouts, now).record
            if record is not None:
                records.append(record)
                if len(records) == limit:
                    break
        more = examined < len(ordered)
        return SessionPage(records, ordered[examined - 1] if more else None)

    async def list_users(
        self, *, cursor: str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> UserPage:
        after = decode_cursor(cursor) if cursor is not None else None
        # In name order (one process's memory: sorting is the whole cost).
        names = sorted(user for user in self._users if after is None or user > after)
        page = names[: page_size(limit)]
        more = len(names) > len(page)
        return UserPage(page, encode_cursor(page[-1]) if more else None)

    def _live_sockets(self, public_id: str, now: int) -> int:
        sockets = self._presence.get(public_id)
        if not sockets:
            self._presence.pop(public_id, None)
            return 0
        for socket_id, until in list(sockets.items()):
            if until <= now:
                del sockets[socket_id]
        if not sockets:
            del self._presence[public_id]
        return len(sockets)

    async def set_presence(
        self, sockets: Sequence[tuple[str, str]], *, until: int | None, now: int
    ) -> None:
        for public_id, socket_id in sockets:
            if until is None:
                self._presence.get(public_id, {}).pop(socket_id, None)
            elif public_id in self._records:
                self._presence[public_id][socket_id] = until

    async def count_presence(self, public_ids: list[str], *, now: int) -> dict[str, int]:
        return {public_id: self._live_sockets(public_id, now) for public_id in public_ids}
