"""Every session operation, once: open, login, logout, revoke, list, claim, extend.

:class:`SessionEngine` is built with what it uses (the backend, the timeouts, the
policy, a clock, the address limits, a place resolver) and nothing of a web framework;
each door (the Quart extension, the raw claim path, the session API) calls the same
method. Every operation that changes a session writes its audit line here; the backend
writes its audit-trail record in the change's own atomic step (docs/audit.md).

Who caused a change — the record's ``actor`` — is an argument of :meth:`SessionEngine.login`,
:meth:`~SessionEngine.logout`, :meth:`~SessionEngine.revoke_session` and
:meth:`~SessionEngine.revoke_user`, so each door names itself: ``"user"`` (the default
of login and logout), ``"app"`` (of the revocations), ``"session:<public id>"`` (another
session of the user), ``"admin:<key name>"`` (the admin API and CLI),
``"provider:<issuer>"`` (an identity provider's sign-in or back-channel logout); see
:data:`~sessionwatch.core.trail.ACTOR_RE`. A malformed actor raises
:class:`ConfigurationError` before anything changes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from ..backends.base import (
    Backend,
    Claim,
    Lookup,
    PendingLogin,
    Restore,
    RestoreStep,
    SessionRecord,
    Timeouts,
)
from ..core import devices
from ..core.audit import check_user_id, security_event
from ..core.codes import Code
from ..core.events import Device
from ..core.exceptions import (
    BackendUnavailable,
    ConfigurationError,
    CookieConflict,
    PendingLoginRefused,
    RateLimited,
    SessionChoiceRequired,
    SessionLimitReached,
)
from ..core.limits import AddressLimits, LoginLimits
from ..core.paging import MAX_PAGE_SIZE, PageCursor, page_size
from ..core.policy import Policy
from ..core.remember import RememberSigner, RememberToken, new_family_id, token_hash
from ..core.tabs import TabStatus, make_tab_token, new_tab_key
from ..core.tokens import new_session_id, public_id, user_tag
from ..core.trail import check_actor
from .check import check_tab
from .shared_limits import DeploymentLimits

__all__ = ["REASON_RE", "ClaimSlot", "Restored", "SessionEngine", "SessionInfo", "SessionList"]

REASON_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PENDING_RE: Final = re.compile(r"[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{43}")  # tagged, as minted
_PUBLIC_ID_RE: Final = re.compile(r"(?:[A-Za-z0-9_-]{4}\.)?[A-Za-z0-9_-]{22}")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of a user's sessions, as the sessions API shows it (no secrets)."""

    id: str
    user: str | None
    browser: str
    os: str
    place: str
    created: int
    last_seen: int
    expires_at: int
    live_tabs: int
    current: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "current": self.current,
            "browser": self.browser,
            "os": self.os,
            "place": self.place,
            "created": self.created,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "live_tabs": self.live_tabs,
        }


@dataclass(frozen=True, slots=True)
class SessionList:
    """One page of a user's sessions (:meth:`SessionEngine.list_sessions`), oldest
    first; ``next_cursor`` asks for the next page, ``None`` when this is the last."""

    sessions: list[SessionInfo]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Restored:
    """What a remember cookie gave (:meth:`SessionEngine.restore`): a session (its
    secret id and record) and the cookie's next value; or no session, and ``clear``
    when the cookie is of no further use (forged, ended, reused)."""

    session_id: str | None = None
    record: SessionRecord | None = None
    cookie: str | None = None
    clear: bool = False
    evicted: tuple[str, ...] = ()


class ClaimSlot(Protocol):
    """The request's session as a claim changes it (the web layer's ``ServerSession``)."""

    ended: Any  # why its cookie was not adopted (an end reason, a conflict) or None

    @property
    def conflict(self) -> bool: ...

    @property
    def public_id(self) -> str | None: ...

    @property
    def pending(self) -> str | None: ...

    def bind(self, session_id: str, record: SessionRecord) -> None: ...

    def claimed(self, record: SessionRecord) -> None: ...

    def unbind(self) -> None: ...


def check_reason(reason: str) -> None:
    """Raise :class:`ConfigurationError` unless ``reason`` matches :data:`REASON_RE`."""
    if not isinstance(reason, str) or not REASON_RE.fullmatch(reason):
        raise ConfigurationError(f"reason must match {REASON_RE.pattern}, got {reason!r}")


def _check_user_id(user_id: object) -> None:
    try:
        check_user_id(user_id)
    except ValueError:
        security_event("login_refused", logging.WARNING, reason="bad_user_id")
        raise


def _via(door: str | None) -> dict[str, str]:
    """The ``via`` field of an audit line (only when a door names itself)."""
    return {"via": door} if door else {}


def _login_event(record: SessionRecord, old: SessionRecord | None, evicted: list[str]) -> None:
    security_event(
        "login",
        session=record.id,
        user=record.user,
        rotated_from=old.id if old is not None else None,
        evicted=evicted,
    )


class SessionEngine:
    """The session operations of one app.

    Args:
        backend: where sessions live.
        timeouts: idle, absolute, refresh and tombstone times.
        policy: the session policy, read at every use (it may change at run time).
        now_ms: the clock, epoch milliseconds.
        address_limits: the per-address rate of new sessions (``None``: unlimited).
        login_limits: the sign-in rates per user and per address (``None``: unlimited).
        max_sessions_per_user: the ceiling of a user's sessions, whatever the policy
            (``None``: the backend's default).
        place_resolver: ``ip -> "City, Country"`` for device descriptions.
        deployment_limits: the same rates counted for every process of the deployment
            on the backend (``None``: per process only).
        remember: signs remember cookies (``None``: remember-me is off).
        remember_lifetime: a token family's lifetime, ms.
        remember_grace: how long the token just rotated away yields the same
            successor, ms (docs/policies.md, "Remember-me").
    """

    def __init__(
        self,
        backend: Backend,
        *,
        timeouts: Timeouts,
        policy: Policy,
        now_ms: Callable[[], int],
        address_limits: AddressLimits | None = None,
        login_limits: LoginLimits | None = None,
        max_sessions_per_user: int | None = None,
        place_resolver: devices.PlaceResolver | None = None,
        deployment_limits: DeploymentLimits | None = None,
        remember: RememberSigner | None = None,
        remember_lifetime: int = 30 * 86_400_000,
        remember_grace: int = 10_000,
    ) -> None:
        self.backend = backend
        self.timeouts = timeouts
        self.policy = policy
        self.now_ms = now_ms
        self.address_limits = address_limits
        self.login_limits = login_limits
        self.max_sessions_per_user = max_sessions_per_user
        self.place_resolver = place_resolver
        self.deployment_limits = deployment_limits
        self.remember_signer = remember
        self.remember_lifetime = remember_lifetime
        self.remember_grace = remember_grace
        self.on_claim: Callable[[], None] | None = None  # called on every claim served

    # -- reading -------------------------------------------------------------------------

    def describe(self, user_agent: str | None, address: str | None) -> Device:
        """The :class:`Device` of a request with this User-Agent from ``address``."""
        return devices.describe_device(
            user_agent, address, self.now_ms(), resolver=self.place_resolver
        )

    async def load(self, session_id: str) -> Lookup:
        """Load the session with public id ``session_id`` (refreshing its idle expiry
        when due). Raises :class:`BackendUnavailable`."""
        return await self.backend.load(session_id, timeouts=self.timeouts, now=self.now_ms())

    def tab_status(self, record: SessionRecord, token: str | None) -> TabStatus:
        """Whether ``token`` is the current tab of ``record`` (policy read now)."""
        return check_tab(record, token, exclusive=self.policy.exclusive_tabs)

    async def list_sessions(
        self,
        user_id: str,
        *,
        current: str | None = None,
        cursor: str | None = None,
        limit: str | int | None = None,
    ) -> SessionList:
        """One page of the user's live sessions, oldest first, with their live tab
        counts: at most ``limit`` (default 50, at most 100) after ``cursor`` (the
        ``next_cursor`` of the page before; ``None``: the first page). ``current``: the
        public id of the asking session.

        Raises:
            InvalidPage: ``cursor`` or ``limit`` is malformed (answered 400 ``bad_page``).
        """
        after = PageCursor.decode(cursor) if cursor is not None else None
        now = self.now_ms()
        page = await self.backend.list_sessions(
            user_id, timeouts=self.timeouts, now=now, after=after, limit=page_size(limit)
        )
        records = page.records
        live = await self.backend.count_presence([r.id for r in records], now=now)
        infos = [
            SessionInfo(
                id=r.id,
                user=r.user,
                browser=str(r.device.get("browser", "")),
                os=str(r.device.get("os", "")),
                place=str(r.device.get("place", "")),
                created=r.created,
                last_seen=r.seen,
                expires_at=r.expires_at(self.timeouts.idle),
                live_tabs=live.get(r.id, 0),
                current=r.id == current,
            )
            for r in records
        ]
        return SessionList(infos, page.next.encode() if page.next is not None else None)

    # -- opening and signing in ------------------------------------------------------------

    def new_record(
        self, session_id: str, user: str | None, data: str, device: Device
    ) -> SessionRecord:
        """A fresh record for ``session_id`` on ``device``."""
        now = self.now_ms()
        return SessionRecord(
            id=public_id(session_id),
            user=user,
            created=now,
            seen=now,
            absolute_expiry=now + self.timeouts.absolute,
            gen=0,
            tab_key=new_tab_key(),
            device={"browser": device.browser, "os": device.os, "place": device.place},
            data=data,
        )

    async def open(
        self, data: str, user_agent: str | None, address: str | None, *, conflict: bool = False
    ) -> tuple[str, SessionRecord]:
        """Store a new anonymous session; returns its (secret) id and record.
        ``conflict``: the request carries copies of several live sessions.

        Raises:
            CookieConflict: ``conflict``: a new session's cookie would replace the user's.
            RateLimited: ``address`` started ``max_new_sessions_per_second`` already.
            BackendUnavailable: the backend cannot be reached.
        """
        if conflict:
            raise CookieConflict(Code.COOKIE_CONFLICT)
        limits = self.address_limits
        if limits is not None and not limits.new_session(address, time.monotonic()):
            security_event("rate_limited", logging.WARNING, limit="new_sessions", address=address)
            raise RateLimited(limits.session_retry_after(address))
        if self.deployment_limits is not None:
            await self.deployment_limits.new_session(address)  # every worker's and host's
        session_id = new_session_id()
        record = self.new_record(session_id, None, data, self.describe(user_agent, address))
        await self.backend.create(record, timeouts=self.timeouts, now=record.created)
        return session_id, record

    async def login(
        self,
        old: SessionRecord | None,
        user_id: str,
        data: str,
        device: Device,
        *,
        address: str | None = None,
        actor: str = "user",
    ) -> tuple[str, SessionRecord, list[str]]:
        """Store a new session of ``user_id`` replacing ``old`` (carrying its claim) and
        apply the policy and the ``max_sessions_per_user`` ceiling, atomically. Returns
        the new session id, its record and the public ids the limit evicted; the calling
        tab gets ``make_tab_token(record.tab_key, record.gen)``. Checks no origin (the
        doors do). ``address``: the browser's, for the sign-in rate per address.
        ``actor``: who signs in, for the trail (``"provider:<issuer>"`` from an OIDC door).

        Raises:
            InvalidUserId: a user id that could forge log lines (a ``ValueError``).
            RateLimited: the user or ``address`` signed in too often
                (``max_logins_per_*_per_second``).
            SessionLimitReached: the policy is ``deny`` and the user is at the limit.
            SessionChoiceRequired: the policy is ``ask`` and the user is at the limit:
                nothing changed but a pending sign-in for :meth:`complete_login`.
            BackendUnavailable: the backend cannot be reached.
        """
        _check_user_id(user_id)
        check_actor(actor)
        limits = self.login_limits
        wait = limits.sign_in(user_id, address, time.monotonic()) if limits else None
        if wait is not None:
            security_event(
                "rate_limited", logging.WARNING, limit="logins", user=user_id, address=address
            )
            raise RateLimited(wait)
        if self.deployment_limits is not None:
            await self.deployment_limits.sign_in(user_id, address)  # every worker's and host's
        session_id, record = self._signed_in_record(old, user_id, data, device)
        policy = self.policy
        try:
            evicted = await self.backend.login(
                old.id if old is not None else None,
                record,
                limit=policy.session_limit(user_id),
                deny=policy.refuses_at_limit,
                timeouts=self.timeouts,
                now=record.created,
                ceiling=self.max_sessions_per_user,
                actor=actor,
            )
        except SessionLimitReached as refused:
            if policy.on_limit != "ask":
                raise
            raise await self._ask(old, user_id, refused.limit, policy.ask_timeout) from None
        _login_event(record, old, evicted)
        return session_id, record, evicted

    def _signed_in_record(
        self, old: SessionRecord | None, user_id: str, data: str, device: Device
    ) -> tuple[str, SessionRecord]:
        """A new session of ``user_id`` replacing ``old``, signed in now."""
        session_id = new_session_id(user_tag(user_id))  # the user's slot on a Cluster
        record = self.new_record(session_id, user_id, data, device)
        # The sign-in is the calling tab's claim, under a new tab key and the next
        # generation: no token issued before it (a planted session's, say) is accepted
        # afterwards. The backend stores them as given.
        by = {**record.device, "at": record.created, "same_browser": True}
        gen = (old.gen if old is not None else 0) + 1
        return session_id, replace(record, gen=gen, claimed_by=by, authenticated_at=record.created)

    # -- on_limit="ask": a pending sign-in, completed by the user's choice -------------------

    async def _ask(
        self, old: SessionRecord | None, user_id: str, limit: int, timeout: float
    ) -> SessionChoiceRequired:
        """Store a pending sign-in bound to ``old`` (the browser's session) and the
        answer that carries it, with the user's sessions to choose from."""
        token = new_session_id(user_tag(user_id))  # its key in the user's slot
        now = self.now_ms()
        bound = old.id if old is not None else ""
        pending = PendingLogin(public_id(token), user_id, bound, now + int(timeout * 1000))
        await self.backend.put_pending(pending, now=now)
        security_event("login_pending", user=user_id, session=bound or None, limit=limit)
        return await self._choice(user_id, limit, token, pending.expires_at, bound)

    async def _choice(
        self, user_id: str, limit: int, token: str, expires_at: int, current: str
    ) -> SessionChoiceRequired:
        listed = await self.list_sessions(user_id, current=current, limit=MAX_PAGE_SIZE)
        return SessionChoiceRequired(user_id, limit, token, expires_at, listed.sessions)

    async def complete_login(
        self,
        old: SessionRecord | None,
        pending: str,
        evict: Sequence[str],
        data: str,
        device: Device,
    ) -> tuple[str, SessionRecord, list[str]]:
        """Complete the pending sign-in ``pending`` (the token of
        :class:`SessionChoiceRequired`) from the browser session ``old`` it was issued
        to, signing out the sessions ``evict`` (public ids) the user chose: the limit is
        checked again in the same atomic step as the sign-in (devices may have signed
        out or in meanwhile; an id that is no live session of the user is ignored).
        Returns what :meth:`login` returns.

        Raises:
            PendingLoginRefused: ``pending`` is unknown, expired, completed already or
                issued to another browser session (nothing changed).
            SessionChoiceRequired: the sessions left are still at the limit (nothing
                changed; the same pending sign-in, with the sessions as they are now).
            ValueError: ``evict`` is not a list of at most 100 public ids.
            BackendUnavailable: the backend cannot be reached.
        """
        if (
            isinstance(evict, str)
            or len(evict) > MAX_PAGE_SIZE
            or not all(isinstance(i, str) and _PUBLIC_ID_RE.fullmatch(i) for i in evict)
        ):
            raise ValueError("evict must be a list of at most 100 session ids")
        now = self.now_ms()
        stored = None
        if isinstance(pending, str) and _PENDING_RE.fullmatch(pending):
            stored = await self.backend.get_pending(public_id(pending), now=now)
        if stored is None:
            security_event("login_refused", logging.WARNING, reason="pending_unknown")
            raise PendingLoginRefused(Code.PENDING_LOGIN_UNKNOWN)
        user_id = stored.user
        session_id, record = self._signed_in_record(old, user_id, data, device)
        try:
            evicted = await self.backend.complete_login(
                stored,
                old.id if old is not None else None,
                record,
                evict=list(dict.fromkeys(evict)),
                limit=self.policy.session_limit(user_id),
                timeouts=self.timeouts,
                now=record.created,
                ceiling=self.max_sessions_per_user,
            )
        except PendingLoginRefused as refused:
            security_event("login_refused", logging.WARNING, reason=refused.code, user=user_id)
            raise
        except SessionLimitReached as refused:
            bound = old.id if old is not None else ""
            raise await self._choice(
                user_id, refused.limit, pending, stored.expires_at, bound
            ) from None
        _login_event(record, old, evicted)
        return session_id, record, evicted

    # -- step-up ---------------------------------------------------------------------------

    async def reauthenticated(self, session_id: str, *, via: str | None = None) -> bool:
        """Record that the user of session ``session_id`` (public id) proved who they
        are again now (step-up): nothing else of the session changes. Returns whether
        the session is live."""
        done = await self.backend.reauthenticated(
            session_id, timeouts=self.timeouts, now=self.now_ms()
        )
        if done:
            security_event("reauthenticated", session=session_id, **_via(via))
        return done

    # -- remember-me -----------------------------------------------------------------------

    def _signer(self) -> RememberSigner:
        if self.remember_signer is None:
            raise ConfigurationError("remember-me needs the engine's remember signer")
        return self.remember_signer

    async def remember(self, record: SessionRecord) -> str | None:
        """Start a remember-me family for the signed-in session ``record``; returns the
        remember cookie's value, or ``None`` when the session ended meanwhile (no family
        is left behind). Raises :class:`BackendUnavailable`."""
        signer = self._signer()
        if record.user is None:
            raise ValueError("remember-me needs a signed-in session")
        token = RememberToken.first(new_family_id(user_tag(record.user)))
        started = await self.backend.remember_start(
            record,
            token.family,
            token_hash(token.secret),
            lifetime=self.remember_lifetime,
            timeouts=self.timeouts,
            now=self.now_ms(),
        )
        if not started:
            return None
        security_event("remember_start", session=record.id, user=record.user)
        return signer.sign(token)

    async def restore(self, cookie: str, user_agent: str | None, address: str | None) -> Restored:
        """A new session from a remember cookie, the policy applied as at sign-in
        (docs/policies.md, "Remember-me"): the token rotates and its successor is the
        cookie's next value; within the grace window the token just rotated away yields
        the same successor and session; any other used token ends the family and its
        session (``revoked{reason: "token_reuse"}``).

        Raises:
            BackendUnavailable: the backend cannot be reached (nothing is cleared).
        """
        signer = self._signer()
        token = signer.unsign(cookie)
        if token is None:
            security_event("remember_refused", logging.WARNING, reason="bad_signature")
            return Restored(clear=True)
        successor = signer.successor(token)
        session_id = signer.session_id(token)
        device = self.describe(user_agent, address)
        result, record = Restore("busy"), None
        for _ in range(2):  # "busy": a concurrent restore moved the family on; read again
            owner = await self.backend.remember_owner(token.family)
            if owner is None:
                result = Restore("unknown")
                break
            user, old_id = owner
            record = replace(self.new_record(session_id, user, "", device), family=token.family)
            step = RestoreStep(
                token.family,
                token.gen,
                token_hash(token.secret),
                token_hash(successor.secret),
                old_id,
                record,
                limit=self.policy.session_limit(user),
                # Only evict_oldest evicts silently: a restore asks nobody, so any other
                # action at the limit (deny, or a choice the user must make) refuses.
                deny=self.policy.on_limit != "evict_oldest",
                grace=self.remember_grace,
                ceiling=self.max_sessions_per_user,
            )
            result = await self.backend.remember_restore(
                step, timeouts=self.timeouts, now=record.created
            )
            if result.outcome != "busy":
                break
        return await self._restored(result, session_id, record, signer.sign(successor))

    async def _restored(
        self, result: Restore, session_id: str, record: SessionRecord | None, cookie: str
    ) -> Restored:
        """The :class:`Restored` of a backend's answer (with its audit line)."""
        outcome = result.outcome
        if outcome == "rotated" and record is not None:
            security_event(
                "remember_restore", session=record.id, user=result.user, evicted=result.evicted
            )
            return Restored(session_id, record, cookie, evicted=result.evicted)
        if outcome == "again" and record is not None:
            found = (await self.load(record.id)).record
            if found is not None:
                return Restored(session_id, found, cookie)
        if outcome == "reuse":
            security_event(
                "remember_reuse", logging.WARNING, user=result.user, session=result.ended
            )
        else:
            security_event("remember_refused", reason=outcome)
        # Denied (the user is at a deny limit) or busy twice: the cookie may serve later.
        return Restored(clear=outcome not in ("denied", "busy"))

    # -- ending ----------------------------------------------------------------------------

    async def logout(self, session_id: str, *, via: str | None = None, actor: str = "user") -> bool:
        """End the session with public id ``session_id`` everywhere (``logged_out``).
        Returns whether a live session ended. ``via``: the door, for the audit line;
        ``actor``: who ended it, for the trail (``"provider:<issuer>"`` for a
        back-channel logout).

        Raises:
            BackendUnavailable: the backend cannot be reached, or (``EndNotDurable``) no
                replica confirmed the end in time (repeating it is safe).
        """
        ended = await self.backend.end(
            session_id,
            "logged_out",
            timeouts=self.timeouts,
            now=self.now_ms(),
            actor=check_actor(actor),
        )
        security_event("logout", session=session_id, **_via(via))
        return ended

    async def revoke_session(
        self,
        session_id: str,
        *,
        reason: str = "revoked",
        user_id: str | None = None,
        actor: str = "app",
    ) -> bool:
        """Revoke the session with public id ``session_id`` (only if it belongs to
        ``user_id``, when given); its tabs are told ``revoked{reason}``. Returns whether
        a live session was revoked. ``actor``: who revoked it, for the trail
        (``"admin:<name>"``, ``"session:<public id>"``). Raises
        :class:`ConfigurationError` for a bad ``reason`` or ``actor``."""
        check_reason(reason)
        check_actor(actor)
        ended = await self.backend.end(
            session_id,
            "revoked",
            timeouts=self.timeouts,
            now=self.now_ms(),
            user=user_id,
            detail=reason,
            actor=actor,
        )
        if ended:
            security_event("revoke", session=session_id, reason=reason, actor=actor)
        return ended

    async def revoke_user(
        self,
        user_id: str,
        *,
        except_id: str | None = None,
        reason: str = "revoked",
        via: str | None = None,
        actor: str = "app",
    ) -> int:
        """Revoke every session of ``user_id`` but ``except_id``; returns how many.
        ``via``: the door, for the audit line; ``actor``: who revoked them, for the
        trail (as :meth:`revoke_session`)."""
        check_reason(reason)
        check_actor(actor)
        count = await self.backend.end_user(
            user_id,
            except_id=except_id,
            detail=reason,
            timeouts=self.timeouts,
            now=self.now_ms(),
            actor=actor,
        )
        security_event(
            "revoke_user",
            user=user_id,
            sessions=count,
            reason=reason,
            **_via(via),
            actor=actor,
        )
        return count

    # -- tabs ------------------------------------------------------------------------------

    async def claim(
        self, slot: ClaimSlot, user_agent: str | None, address: str | None
    ) -> tuple[str, Claim]:
        """Claim a tab of ``slot``'s session (opening one if needed): the newest claim
        wins. Returns the tab token and the claim. A pending session is loaded by the
        claim itself (one backend round trip); a session that ended before or during the
        request is replaced by a new one, once.

        Raises:
            RateLimited: a new session was needed and ``address`` is over its rate.
            BackendUnavailable: the backend cannot be reached (or it ended twice).
        """
        for _ in range(2):
            session_id = slot.public_id
            if session_id is None:
                secret, record = await self.open("", user_agent, address, conflict=slot.conflict)
                slot.bind(secret, record)
                session_id = record.id
            result = await self.backend.claim(
                session_id,
                self.describe(user_agent, address),
                exclusive=self.policy.exclusive_tabs,
                timeouts=self.timeouts,
                now=self.now_ms(),
            )
            if isinstance(result, Claim):
                slot.claimed(result.record)
                if self.on_claim is not None:
                    self.on_claim()
                return make_tab_token(result.tab_key, result.gen), result
            if slot.pending is not None:  # what opening the session would have said
                security_event(
                    "cookie_refused", session=session_id, reason=result.ended or "unknown"
                )
                slot.ended = result.ended
            slot.unbind()  # ended (before or since the request began): start afresh once
        raise BackendUnavailable("could not claim a tab: the session ended twice")

    async def save_data(self, session_id: str, data: str) -> bool:
        """Replace the app data of session ``session_id``; ``False`` when it has ended
        meanwhile (a revoked session is never resurrected by a late save)."""
        return await self.backend.save_data(
            session_id, data, timeouts=self.timeouts, now=self.now_ms()
        )

    async def extend(self, session_id: str) -> Lookup:
        """Push the idle expiry of session ``session_id`` forward (the active tab asked)."""
        return await self.backend.extend(session_id, timeouts=self.timeouts, now=self.now_ms())
