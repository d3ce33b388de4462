"""May this request pass? One decision for every door.

:func:`check_request` takes a request's facts and its loaded session and answers
:class:`Pass` or a :class:`~sessionwatch.core.refusals.Refusal`. The Quart decorator,
``protect_blueprint`` and the doors-agree suite (tests/web/test_doors_agree.py) all ask
here; :func:`handshake_origin` is the WebSocket handshake's origin rule.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final, Literal

from ..backends.base import SessionRecord
from ..core.audit import security_event
from ..core.codes import Code
from ..core.exceptions import ConfigurationError
from ..core.origins import OriginRule
from ..core.refusals import (
    BACKEND_UNAVAILABLE,
    ORIGIN_FORBIDDEN,
    Refusal,
    ended_refusal,
    reauth_refusal,
)
from ..core.tabs import TabStatus, tab_status, verify_tab_token
from .facts import RequestFacts

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_REAUTH_AGE",
    "Pass",
    "Requirement",
    "check_recent_login",
    "check_request",
    "check_tab",
    "handshake_origin",
    "parse_max_age",
]

# The longest step-up window a route may ask for (seconds): a day. A larger one is a
# configuration mistake (it would pass sessions signed in long ago), refused.
MAX_REAUTH_AGE: Final = 86_400
_MAX_AGE_RE: Final = re.compile(r"[0-9]{1,6}")

# What a request needs: ``tab`` the session's active tab (``@active_tab_required``),
# ``session`` a live session, ``auto`` the active tab for unsafe methods and a session
# for safe ones, ``none`` nothing (only says who it is).
Requirement = Literal["auto", "session", "tab", "none"]


@dataclass(frozen=True, slots=True)
class Pass:
    """The request may pass: its session (``None``: anonymous, ``require=none``) and
    the calling tab's status (``"none"`` without a session)."""

    record: SessionRecord | None
    tab: TabStatus | Literal["none"]


def check_tab(record: SessionRecord, token: str | None, *, exclusive: bool) -> TabStatus:
    """Whether ``token`` is the current tab of ``record`` (constant-time MAC check, then
    the supersede rule of :mod:`sessionwatch.core.tabs`)."""
    if not token:
        return "missing"
    return tab_status(verify_tab_token(token, record.tab_key), record.gen, exclusive=exclusive)


def check_request(
    facts: RequestFacts,
    record: SessionRecord | None,
    ended: str | None,
    *,
    origins: OriginRule,
    exclusive: bool,
    requirement: Requirement = "tab",
    unavailable: bool = False,
) -> Pass | Refusal:
    """Decide a request: an unsafe one from a foreign page is refused first (403
    ``origin_forbidden``, valid token or not; without ``Origin``, ``Sec-Fetch-Site``
    ``cross-site`` or ``same-site`` is foreign, and so is no ``Origin`` at all when
    ``requirement`` is ``session``, where no tab token proves the page, unless
    ``allow_missing_origin``), then a gone session (401, by why it
    ended), then a tab that is not the active one when the requirement asks for it
    (409 ``tab_superseded`` with ``by``, ``tab_invalid``, ``tab_missing``). Costs no
    backend round trip: ``record`` is the session as opened (``ended``: why not;
    ``unavailable``: the backend could not be reached to open it, a 503 after the
    origin check)."""
    if facts.unsafe and requirement != "none":
        why = origins.foreign(facts.origin, facts.fetch_site, facts.own_origin)
        if why is None and facts.origin is None and requirement == "session":
            # No tab token proves the page (a form post), so a browser's Origin must:
            # without one only where missing origins are allowed.
            why = None if origins.allow_missing else "no Origin and no tab token"
        if why is not None:
            security_event(
                "origin_refused", logging.WARNING, method=facts.method, uri=facts.path, why=why
            )
            return ORIGIN_FORBIDDEN
    if unavailable:
        logger.error("backend unavailable: the session could not be opened")
        return BACKEND_UNAVAILABLE
    if record is None:
        return Pass(None, "none") if requirement == "none" else ended_refusal(ended)
    status = check_tab(record, facts.tab, exclusive=exclusive)
    needed = requirement == "tab" or (requirement == "auto" and facts.unsafe)
    if not needed or status == "active":
        return Pass(record, status)
    if status == "superseded":
        return Refusal(409, Code.TAB_SUPERSEDED, {"by": record.claimed_by})
    if status == "invalid":
        security_event("tab_refused", logging.WARNING, session=record.id)
        return Refusal(409, Code.TAB_INVALID)
    return Refusal(409, Code.TAB_MISSING)


def handshake_origin(facts: RequestFacts, origins: OriginRule) -> Refusal | None:
    """The WebSocket handshake's origin rule: browsers always send ``Origin`` on a
    handshake, so it must be allowed (a missing one only with ``allow_missing_origin``)."""
    if origins.allows(facts.origin, facts.own_origin):
        return None
    security_event("origin_refused", logging.WARNING, action="websocket", why=facts.origin)
    return ORIGIN_FORBIDDEN


def parse_max_age(value: object) -> int:
    """A step-up window: a whole number of seconds from 1 to :data:`MAX_REAUTH_AGE`,
    given as an ``int`` or its ASCII digits. Raises :class:`ConfigurationError`
    (a ``ValueError``) for anything else: a bad window fails closed."""
    if isinstance(value, str) and _MAX_AGE_RE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REAUTH_AGE:
        raise ConfigurationError(
            f"max_age must be a whole number of seconds from 1 to {MAX_REAUTH_AGE}, got {value!r}"
        )
    return value


def check_recent_login(
    record: SessionRecord | None, ended: str | None, max_age: int, now_ms: int
) -> Refusal | None:
    """Step-up: ``None`` when the session's user signed in or re-authenticated
    (``watch.reauthenticated()``) within the last ``max_age`` seconds; else 401
    ``reauth_required`` with ``max_age``. A gone session is refused as by
    :func:`check_request`, an anonymous one 401 ``not_signed_in``."""
    if record is None:
        return ended_refusal(ended)
    if record.user is None:
        return Refusal(401, Code.NOT_SIGNED_IN, message="Sign in to continue.")
    if now_ms - record.authenticated_at > max_age * 1000:
        return reauth_refusal(max_age)
    return None
