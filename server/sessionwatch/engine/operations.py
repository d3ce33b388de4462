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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from ..backends.base import Backend, Claim, Lookup, SessionRecord, Timeouts
from ..core import devices
from ..core.audit import check_user_id, security_event
from ..core.codes import Code
from ..core.events import Device
from ..core.exceptions import BackendUnavailable, ConfigurationError, CookieConflict, RateLimited
from ..core.limits import AddressLimits, LoginLimits
from ..core.paging import PageCursor, page_size
from ..core.policy import Policy
from ..core.tabs import TabStatus, make_tab_token, new_tab_key
from ..core.tokens import new_session_id, public_id, user_tag
from ..core.trail import check_actor
from .check import check_tab
from .shared_limits import DeploymentLimits

__all__ = ["REASON_RE", "ClaimSlot", "SessionEngine", "SessionInfo", "SessionList"]

REASON_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


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
        session_id = new_session_id(user_tag(user_id))  # the user's slot on a Cluster
        record = self.new_record(session_id, user_id, data, device)
        # The sign-in is the calling tab's claim, under a new tab key and the next
        # generation: no token issued before it (a planted session's, say) is accepted
        # afterwards. The backend stores them as given.
        by = {**record.device, "at": record.created, "same_browser": True}
        record = replace(record, gen=(old.gen if old is not None else 0) + 1, claimed_by=by)
        policy = self.policy
        evicted = await self.backend.login(
            old.id if old is not None else None,
            record,
            limit=policy.session_limit(user_id),
            deny=policy.on_limit == "deny",
            timeouts=self.timeouts,
            now=record.created,
            ceiling=self.max_sessions_per_user,
            actor=actor,
        )
        security_event(
            "login",
            session=record.id,
            user=user_id,
            rotated_from=old.id if old is not None else None,
            evicted=evicted,
        )
        return session_id, record, evicted

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
        security_event("revoke_user", user=user_id, sessions=count, reason=reason, **_via(via))
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
