"""A refusal as data, and the one table from exceptions to refusals.

Every door (the Quart routes and decorators, the raw ASGI paths, the WebSocket
handshake, forward-auth, the session API) answers a failure with a :class:`Refusal`
from here and writes it in its own form (JSON, an HTML page, a header); none maps an
exception or spells a code itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .codes import MESSAGES, Code
from .exceptions import (
    BackendUnavailable,
    CookieConflict,
    InvalidPage,
    InvalidUserId,
    OriginForbidden,
    PendingLoginRefused,
    RateLimited,
    ReauthRequired,
    SessionChoiceRequired,
    SessionLimitReached,
    SessionWatchError,
)

__all__ = [
    "BACKEND_UNAVAILABLE",
    "BUSY",
    "ORIGIN_FORBIDDEN",
    "REFUSED_ERRORS",
    "Refusal",
    "ended_refusal",
    "reauth_refusal",
    "refusal_for",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not pass: an HTTP status, a stable code, extra JSON fields, a
    message (default: the code's) and, for a 429, the seconds to wait."""

    status: int
    code: Code
    fields: Mapping[str, Any] = field(default_factory=dict)
    message: str | None = None
    retry_after: float | None = None

    @property
    def text(self) -> str:
        """The human message of the answer."""
        return self.message or MESSAGES.get(self.code, str(self.code))

    def with_fields(self, **fields: Any) -> Refusal:
        return replace(self, fields={**self.fields, **fields})

    def to_json(self) -> dict[str, Any]:
        """The JSON body: ``{"error": code, "message": text, **fields}``."""
        return {"error": str(self.code), "message": self.text, **self.fields}


BACKEND_UNAVAILABLE: Final = Refusal(503, Code.BACKEND_UNAVAILABLE)
BUSY: Final = Refusal(503, Code.BUSY)
ORIGIN_FORBIDDEN: Final = Refusal(403, Code.ORIGIN_FORBIDDEN)

# Exceptions a door answers as a refusal (anything else is an unexpected error, a 500).
# BackendUnavailable covers its subclass EndNotDurable: an end no replica confirmed.
REFUSED_ERRORS: Final[tuple[type[SessionWatchError], ...]] = (
    BackendUnavailable,
    CookieConflict,
    InvalidPage,
    SessionLimitReached,
    OriginForbidden,
    RateLimited,
    InvalidUserId,
    PendingLoginRefused,
    ReauthRequired,
)

# A refused pending sign-in's status, by code: gone for good (410) when expired, a
# conflict (409) when completed already, not this browser's (403), unknown (400).
_PENDING_STATUS: Final = {
    Code.PENDING_LOGIN_EXPIRED: 410,
    Code.PENDING_LOGIN_USED: 409,
    Code.PENDING_LOGIN_FOREIGN: 403,
}


def refusal_for(error: BaseException) -> Refusal | None:
    """The refusal that answers ``error``, or ``None`` when it is not one of
    :data:`REFUSED_ERRORS`."""
    if isinstance(error, BackendUnavailable):
        return BACKEND_UNAVAILABLE
    if isinstance(error, SessionChoiceRequired):
        return Refusal(
            409,
            Code.SESSION_CHOICE_REQUIRED,
            {
                "limit": error.limit,
                "pending": error.pending,
                "expires_at": error.expires_at,
                "sessions": [info.to_json() for info in error.sessions],
            },
        )
    if isinstance(error, SessionLimitReached):
        return Refusal(403, Code.SESSION_LIMIT_REACHED, {"limit": error.limit})
    if isinstance(error, OriginForbidden):
        return ORIGIN_FORBIDDEN
    if isinstance(error, RateLimited):
        return Refusal(429, Code.RATE_LIMITED, retry_after=error.retry_after)
    if isinstance(error, CookieConflict):
        return Refusal(401, Code.COOKIE_CONFLICT)
    if isinstance(error, InvalidPage):
        return Refusal(400, Code.BAD_PAGE, message=str(error) or None)
    if isinstance(error, PendingLoginRefused):
        code = Code(error.code)
        return Refusal(_PENDING_STATUS.get(code, 400), code)
    if isinstance(error, ReauthRequired):
        return reauth_refusal(error.max_age)
    if isinstance(error, InvalidUserId):
        return Refusal(400, Code.BAD_USER_ID, message=str(error) or None)
    return None


def reauth_refusal(max_age: int) -> Refusal:
    """The step-up refusal: 401 ``reauth_required`` with ``max_age`` (seconds)."""
    return Refusal(401, Code.REAUTH_REQUIRED, {"max_age": max_age})


def ended_refusal(ended: str | None) -> Refusal:
    """The 401 of a request whose session is gone, by why it ended: ``expired``;
    ``revoked`` with ``reason`` ``"revoked"`` or ``"evicted"``; ``cookie_conflict`` for
    copies of several live sessions; else ``no_session`` (unknown, forged, or logged out:
    the user ended it and the cookie was cleared)."""
    if ended == Code.COOKIE_CONFLICT:
        return Refusal(401, Code.COOKIE_CONFLICT)
    if ended == "expired":
        return Refusal(401, Code.EXPIRED)
    if ended in ("revoked", "evicted"):
        return Refusal(401, Code.REVOKED, {"reason": ended})
    return Refusal(401, Code.NO_SESSION)
