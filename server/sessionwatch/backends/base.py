"""The backend contract: session records, atomic transitions and event channels.

Every method that changes state is one atomic step that also publishes the event of
``docs/protocol.md`` §4, so state and events never disagree. Times are epoch
milliseconds, passed in by the caller (the extension's injectable clock), never read
from the backend's own clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeAlias, runtime_checkable

from ..core import jsonlimits
from ..core.codes import Code
from ..core.events import Device
from ..core.limits import RateCheck
from ..core.paging import MAX_PAGE_SIZE, PageCursor
from ..core.trail import AuditRecord
from .keys import session_channel, user_channel
from .user_scan import UserPage

__all__ = [
    "EXPIRY_GRACE_MS",
    "LIST_SCAN_FACTOR",
    "MAX_LINKED",
    "PENDING_REFUSALS",
    "Backend",
    "ChannelMessage",
    "Claim",
    "EndReason",
    "Listenable",
    "Lookup",
    "PendingLogin",
    "Restore",
    "RestoreStep",
    "SessionPage",
    "SessionRecord",
    "Subscription",
    "Timeouts",
    "UserPage",
    "session_channel",
    "user_channel",
]

# A record outlives its deadline this long, so a late request learns "expired" rather
# than "no session"; the hub's timers and the next request turn it into a tombstone.
EXPIRY_GRACE_MS = 5 * 60 * 1000

# A listing examines at most this many index entries per session it may return: dead
# members met on the way are pruned and count against it, so one call's work is bounded
# even when most of the index has lapsed (a page may then be short yet not the last).
LIST_SCAN_FACTOR = 2

# The most sessions one provider link names: a user's sessions are capped at 100 by
# default (max_sessions_per_user); the bound keeps a link's set from growing unseen.
MAX_LINKED = 1000

EndReason: TypeAlias = Literal["expired", "revoked", "evicted", "logged_out"]

# Why a backend refuses to complete a pending sign-in (PendingLoginRefused), by the word
# its atomic step answers: the code each stands for.
PENDING_REFUSALS: Final = {
    "unknown": Code.PENDING_LOGIN_UNKNOWN,
    "expired": Code.PENDING_LOGIN_EXPIRED,
    "used": Code.PENDING_LOGIN_USED,
    "foreign": Code.PENDING_LOGIN_FOREIGN,
}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Lifetimes in milliseconds, fixed at start-up from the settings."""

    idle: int
    absolute: int
    refresh: int
    tombstone: int

    @classmethod
    def from_settings(cls, settings: Any) -> Timeouts:
        """The lifetimes of :class:`~sessionwatch.core.config.Settings` (seconds)."""
        return cls(
            idle=int(settings.idle_timeout * 1000),
            absolute=int(settings.absolute_timeout * 1000),
            refresh=int(settings.refresh_every * 1000),
            tombstone=int(settings.tombstone_ttl * 1000),
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One server-side session as stored (``data`` is the app's serialised session)."""

    id: str  # public id
    user: str | None
    created: int
    seen: int
    absolute_expiry: int
    gen: int
    tab_key: str
    device: dict[str, Any]
    claimed_by: dict[str, Any] | None = None
    data: str = ""
    # When the user last proved who they are (a sign-in or watch.reauthenticated()),
    # epoch ms; 0 for an anonymous session. Step-up (recent_login_required) reads it.
    authenticated_at: int = 0
    family: str | None = None  # the remember-me token family it was born of

    def expires_at(self, idle_ms: int) -> int:
        """When the session ends unless it sees activity first."""
        return min(self.seen + idle_ms, self.absolute_expiry)

    def to_fields(self) -> dict[str, str]:
        """The flat string form (a Redis hash)."""
        return {
            "uid": self.user or "",
            "created": str(self.created),
            "seen": str(self.seen),
            "abs": str(self.absolute_expiry),
            "gen": str(self.gen),
            "tk": self.tab_key,
            "dev": json.dumps(self.device, separators=(",", ":")),
            "cby": json.dumps(self.claimed_by, separators=(",", ":")) if self.claimed_by else "",
            "data": self.data,
            "auth": str(self.authenticated_at),
            **({"fam": self.family} if self.family else {}),
        }

    @classmethod
    def from_fields(cls, public_id: str, fields: Mapping[str, str]) -> SessionRecord:
        """Inverse of :meth:`to_fields`."""
        claimed_by = fields.get("cby") or ""
        return cls(
            id=public_id,
            user=fields.get("uid") or None,
            created=int(fields["created"]),
            seen=int(fields["seen"]),
            absolute_expiry=int(fields["abs"]),
            gen=int(fields.get("gen") or 0),
            tab_key=fields["tk"],
            device=jsonlimits.loads(fields.get("dev") or "{}"),
            claimed_by=jsonlimits.loads(claimed_by) if claimed_by else None,
            data=fields.get("data", ""),
            authenticated_at=int(fields.get("auth") or 0),
            family=fields.get("fam") or None,
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer to :meth:`Backend.load`: a live record, or why there is none.

    ``ended`` is ``None`` when the id is simply unknown (never issued, or forgotten).
    ``extended`` is true when this lookup refreshed the idle deadline.
    """

    record: SessionRecord | None
    ended: EndReason | None = None
    extended: bool = False


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a user's live sessions (:meth:`Backend.list_sessions`), oldest first;
    ``next`` is where the next page starts, ``None`` when nothing follows."""

    records: list[SessionRecord]
    next: PageCursor | None = None


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A sign-in waiting for the user's choice (``on_limit="ask"``), as stored in the
    user's slot: ``id`` is the public id of its token (the token itself is never
    stored), ``bound`` the public id of the browser session it was issued to (``""``:
    none, a session-API login without a cookie)."""

    id: str
    user: str
    bound: str
    expires_at: int
    used: bool = False


@dataclass(frozen=True, slots=True)
class Claim:
    """A successful tab claim: the new generation and the session as it is now."""

    gen: int
    tab_key: str
    expires_at: int
    record: SessionRecord


RestoreOutcome: TypeAlias = Literal[
    "rotated", "again", "unknown", "reuse", "denied", "gone", "busy"
]


@dataclass(frozen=True, slots=True)
class Restore:
    """The answer to :meth:`Backend.remember_restore`.

    ``rotated``: a new session of ``user`` (the evicted public ids in ``evicted``);
    ``again``: the token just rotated away, within the grace window: the session that
    rotation created is still live (the same successor is answered); ``unknown``: no
    such family (ended, expired, never issued); ``gone``: ``again`` but that session
    has ended meanwhile; ``denied``: the policy denies at the limit (nothing changed);
    ``reuse``: a token used twice: the family and its session ended (``ended``: the
    public id of that session, if it was live); ``busy``: the family moved on since
    :meth:`Backend.remember_owner` was read (ask again).
    """

    outcome: RestoreOutcome
    user: str | None = None
    evicted: tuple[str, ...] = ()
    ended: str | None = None


@dataclass(frozen=True, slots=True)
class RestoreStep:
    """One restore from a remember token (:meth:`Backend.remember_restore`): the
    presented token (its family, generation and hash), its successor's hash, the
    family's last session (``old_id``, as :meth:`Backend.remember_owner` said), the new
    session's ``record`` (born of ``family``), the policy's ``limit``, ``deny`` and
    ``ceiling`` as :meth:`Backend.login` takes them, and the ``grace`` window (ms)."""

    family: str
    gen: int
    token_hash: str
    successor_hash: str
    old_id: str
    record: SessionRecord
    limit: int | None
    deny: bool
    grace: int
    ceiling: int | None = None


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A payload received on a subscribed channel; ``resync`` marks a reconnect."""

    channel: str
    payload: str
    resync: bool = False


@runtime_checkable
class Subscription(Protocol):
    """One process's live view of some channels (the hub holds exactly one).

    Iterating yields messages in order. After a lost connection is re-established and
    every channel re-subscribed, it yields one ``ChannelMessage(resync=True)`` so the
    consumer can re-check what it may have missed. It never ends until closed.
    """

    async def subscribe(self, *channels: str) -> None: ...

    async def unsubscribe(self, *channels: str) -> None: ...

    def __aiter__(self) -> AsyncIterator[ChannelMessage]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Listenable(Protocol):
    """A subscription that can also hand each message to a callback the moment it is
    read, skipping the consumer's wake-up through the iterator (on a busy loop the
    reader task waits behind other ready work: ~40-250 µs per push measured at 100-1,000
    pushes/s). With a listener the iterator yields only the resync markers."""

    def listen(self, listener: Callable[[ChannelMessage], None]) -> None: ...


@runtime_checkable
class Backend(Protocol):
    """Storage and transport of sessions. See the module docstring for the rules.

    Every method raises :class:`~sessionwatch.BackendUnavailable` when the backend
    cannot be reached; none ever lets an operation through unchecked.
    """

    key_prefix: str

    async def connect(self) -> None:
        """Warm up (the Redis backend loads its scripts). Never a precondition of the
        other methods: it may raise :class:`~sessionwatch.BackendUnavailable`, and is
        then retried in the background while calls raise it too or already work
        (:mod:`~sessionwatch.backends.connector`)."""

    async def disconnect(self) -> None: ...

    async def ping(self) -> None: ...

    async def create(self, record: SessionRecord, *, timeouts: Timeouts, now: int) -> None:
        """Store a new anonymous session."""

    async def load(
        self, public_id: str, *, timeouts: Timeouts, now: int, touch: bool = True
    ) -> Lookup:
        """Read a session. With ``touch``, refresh ``seen`` when ``timeouts.refresh`` has
        passed (publishing ``extended``). A session found past its deadline is ended
        (tombstone ``expired``, publishing ``expired``)."""

    async def extend(self, public_id: str, *, timeouts: Timeouts, now: int) -> Lookup:
        """Refresh ``seen`` now, whatever ``timeouts.refresh`` says."""

    async def save_data(self, public_id: str, data: str, *, timeouts: Timeouts, now: int) -> bool:
        """Replace the app data of a live session; ``False`` if it has ended (a revoked
        session is never resurrected by a late save)."""

    async def claim(
        self, public_id: str, by: Device, *, exclusive: bool, timeouts: Timeouts, now: int
    ) -> Claim | Lookup:
        """Increment the claim generation. With ``exclusive``, publish ``superseded``.

        A claim is activity: like ``load(touch=True)`` it refreshes the idle deadline
        when a refresh is due (publishing ``extended``), so a claim needs no load before
        it. ``by.same_browser`` is decided here: true when the claimer's browser, OS and
        place equal the device the session was created on (a copied cookie in another
        browser is not the same browser). Returns the :class:`Claim`, or a
        :class:`Lookup` saying why the session is gone."""

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
        """Replace session ``old_id`` (if live) by ``record`` (a fresh id for user
        ``record.user``, with the caller's current data, claim generation, new tab key
        and claimer: nothing of the old claim is carried over);
        apply the session limit; publish ``rotated``, ``evicted`` and ``signed_in``.

        ``ceiling`` is the hard maximum of live sessions per user whatever the policy
        (:func:`~sessionwatch.core.policy.bounded_limit`: beyond a policy limit within
        it, the oldest are evicted), applied in the same atomic step.

        Every change is recorded in the audit trail in the same step (docs/audit.md):
        ``signed_in`` (``actor``), each ``evicted`` (actor ``session:<new id>``), or
        ``limit_denied`` alone when refused; the new device and place are judged.

        Returns the evicted public ids. Raises
        :class:`~sessionwatch.SessionLimitReached` (changing nothing) when ``deny`` and
        the user is at ``limit``."""

    async def put_pending(self, pending: PendingLogin, *, now: int) -> None:
        """Store a pending sign-in; it is kept until ``EXPIRY_GRACE_MS`` after it
        expires (so that an expired or used one is told apart from an unknown one)."""

    async def get_pending(self, pending_id: str, *, now: int) -> PendingLogin | None:
        """The pending sign-in with public id ``pending_id`` as stored, or ``None``."""

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
        """Complete ``pending`` (issued to ``pending.bound``, the session ``old_id`` of
        the completing request) as :meth:`login` of ``record`` would, in one atomic
        step with the re-check: the pending sign-in must be stored, unused, unexpired,
        bound to ``old_id`` and for ``record.user``; of ``evict``, the ids that are
        still live sessions of the user are evicted (``evicted{by}``), any other id is
        ignored; the sessions left must then be under the limit. Marks it used.

        Returns the evicted public ids. Raises
        :class:`~sessionwatch.PendingLoginRefused` or
        :class:`~sessionwatch.SessionLimitReached` (still at the limit), changing
        nothing."""

    async def reauthenticated(self, public_id: str, *, timeouts: Timeouts, now: int) -> bool:
        """Set the live session's ``authenticated_at`` to ``now`` (nothing else
        changes); ``False`` when it has ended."""

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
        """Start remember-me family ``family`` (``hashed``: its first token's hash) for
        the signed-in session ``record`` if still live, ending the family it had; the
        family lives ``lifetime`` ms. ``False`` (nothing stored) when it is not live."""

    async def remember_owner(self, family: str) -> tuple[str, str] | None:
        """The user and current session public id of ``family`` (a hint, read before
        :meth:`remember_restore` to name its keys and apply the user's policy), or
        ``None`` when there is no such family."""

    async def remember_restore(self, step: RestoreStep, *, timeouts: Timeouts, now: int) -> Restore:
        """Restore a session from a remember token (:class:`RestoreStep`), atomically:
        the current token rotates to its successor and the step's record replaces the
        family's last session as :meth:`login` would; the token just rotated away is
        answered ``again`` for ``grace`` ms; any other token of the family is a
        reuse: the family and its session end (``revoked{reason: "token_reuse"}``),
        durably. See :class:`Restore`."""

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
        """End one session (``revoked`` or ``logged_out``) and its remember-me family
        (every end but expiry ends it). With ``user``, only if it belongs to that user.
        ``detail`` is the app's reason code for ``revoked``; ``actor`` who ended it (its
        trail record's). Returns whether a live session was ended."""

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
        """Revoke every live session of ``user`` but ``except_id`` and end every
        remember-me family of the user but the one of ``except_id``; returns how many
        sessions."""

    async def list_sessions(
        self,
        user: str,
        *,
        timeouts: Timeouts,
        now: int,
        after: PageCursor | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> SessionPage:
        """At most ``limit`` (1 to ``MAX_PAGE_SIZE``) of the user's live sessions that
        come after ``after`` in the order ``(created, public id)``, oldest first; dead
        members met are pruned. One call examines at most ``LIST_SCAN_FACTOR * limit``
        members of the user's index, whatever the user holds."""

    async def list_users(
        self, *, cursor: str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> UserPage:
        """About ``limit`` users whose index exists (they have or recently had sessions),
        from ``cursor`` (the ``next`` of the page before; ``None``: the start), for the
        admin tools. One call's cost is bounded whatever the deployment holds
        (:mod:`.user_scan`); a page may be short, even empty, and not the last.
        Raises :class:`~sessionwatch.core.exceptions.InvalidPage` for a bad cursor."""

    async def set_presence(
        self, sockets: Sequence[tuple[str, str]], *, until: int | None, now: int
    ) -> None:
        """Record (``until`` set) or drop (``None``) connected sockets, each given as
        ``(session public id, socket id)``; one round trip for the whole batch."""

    async def count_presence(self, public_ids: list[str], *, now: int) -> dict[str, int]:
        """Live sockets per session, across every process."""

    def subscription(self) -> Subscription:
        """A new subscription (the hub keeps one per process)."""

    async def epoch(self) -> str:
        """The identity of the stored state: a random value kept with the sessions and
        created when missing. A different answer than before means the stored state was
        lost (``FLUSHALL``, a restart without persistence): every session may be gone."""

    async def take_rates(self, checks: Sequence[RateCheck], *, now: int) -> int:
        """Count one event of each ``(rule, subject)`` (a client address or a user id,
        as ``rule.per`` says) against its deployment-wide rate at ``now``, shared by
        every process and host, all or nothing: 0 when every bucket had room (each
        counted), else the milliseconds until all would have (nothing counted). One
        atomic step, on Redis one small script; on a Cluster one per slot (then a
        refusal in one slot leaves the other slots' counts taken)."""

    async def link(self, links: Sequence[str], public_id: str, *, until: int, now: int) -> None:
        """Add session ``public_id`` to each provider link (an opaque digest naming a
        provider session or user, docs/sso.md) until ``until``; members past their time
        are pruned, and a link holds at most :data:`MAX_LINKED` sessions (the newest)."""

    async def linked(self, link: str, *, now: int) -> list[str]:
        """The public ids linked to ``link`` whose time has not passed (they may have
        ended since: ending one again changes nothing)."""

    async def first_use(self, token: str, *, until: int, now: int) -> bool:
        """Remember ``token`` (a digest of a logout token's ``jti``) until ``until``:
        ``True`` the first time, ``False`` while it is remembered — one atomic step, so
        of two workers given the same token exactly one sees ``True``."""

    async def forget_use(self, token: str) -> None:
        """Forget ``token`` (its logout failed: the provider may send it again)."""

    # -- the audit trail (docs/audit.md): written by the operations above -------------

    async def audit_read(self, group: str, consumer: str, *, count: int = 100) -> list[AuditRecord]:
        """Records no consumer of ``group`` was given yet, oldest first (at most
        ``count`` per stream shard), now pending for ``consumer`` until acknowledged."""

    async def audit_reclaim(
        self, group: str, consumer: str, *, idle_ms: int, count: int = 100
    ) -> list[AuditRecord]:
        """Records of ``group`` given out at least ``idle_ms`` ago and never
        acknowledged (their consumer died), now pending for ``consumer``."""

    async def audit_ack(self, group: str, ids: Sequence[str]) -> None:
        """Acknowledge records of ``group`` by id: never given out again."""

    async def audit_latest(self, count: int) -> tuple[list[AuditRecord], dict[str, str]]:
        """The newest ``count`` records, oldest first, and a cursor after them."""

    async def audit_after(
        self, cursor: dict[str, str], count: int = 1000
    ) -> tuple[list[AuditRecord], dict[str, str]]:
        """Records after ``cursor``, oldest first, and the cursor after them."""

    async def publish(self, channel: str, payload: str) -> None:
        """Publish a raw payload on a channel (for tests and tools: every state change
        publishes its own event, atomically with the change)."""
