"""Exceptions raised by sessionwatch.

Every error derives from :class:`SessionWatchError`; the subclasses that describe bad
input also derive from the matching builtin, so ``except ValueError`` keeps working::

    SessionWatchError
    ├── ConfigurationError (ValueError)        bad option, URL or environment value
    ├── BackendUnavailable (ConnectionError)   the backend cannot be reached
    │   └── EndNotDurable                      an end no replica confirmed in time
    ├── SessionLimitReached                    login denied by ``on_limit="deny"``
    │   └── SessionChoiceRequired              ``on_limit="ask"``: choose whom to sign out
    ├── PendingLoginRefused (PermissionError)  a pending sign-in unknown, expired, used, foreign
    ├── ReauthRequired (PermissionError)       step-up: the sign-in is older than allowed
    ├── ProtocolError (ValueError)             a malformed frame or event payload
    ├── InvalidUserId (ValueError)             a user id that could forge log lines
    ├── InvalidPage (ValueError)               a listing's cursor or limit is malformed
    ├── OriginForbidden (PermissionError)      a request sent by a foreign page
    ├── CookieConflict (PermissionError)       several live copies of the session cookie
    ├── RateLimited                            a client address over a rate
    ├── ProviderUnavailable (ConnectionError)  the OpenID provider cannot be reached
    └── ProviderTokenInvalid (ValueError)      a provider's token or answer is refused

Each carries a stable ``code`` (the ``error`` field of HTTP answers).
"""

from __future__ import annotations

from typing import Any

from .codes import Code

__all__ = [
    "BackendUnavailable",
    "ConfigurationError",
    "CookieConflict",
    "EndNotDurable",
    "InvalidPage",
    "InvalidUserId",
    "OriginForbidden",
    "PendingLoginRefused",
    "ProtocolError",
    "ProviderTokenInvalid",
    "ProviderUnavailable",
    "RateLimited",
    "ReauthRequired",
    "SessionChoiceRequired",
    "SessionLimitReached",
    "SessionWatchError",
]


class SessionWatchError(Exception):
    """Root of every sessionwatch error."""

    code: str = Code.SESSIONWATCH_ERROR


class ConfigurationError(SessionWatchError, ValueError):
    """An option, backend URL or environment value is invalid; the message names it."""

    code: str = Code.CONFIGURATION_ERROR


class BackendUnavailable(SessionWatchError, ConnectionError):
    """The session backend could not be reached; callers must fail closed."""

    code: str = Code.BACKEND_UNAVAILABLE


class EndNotDurable(BackendUnavailable):
    """A logout, revocation or eviction ran on the Redis primary, but fewer replicas
    than ``durable_ends`` confirmed it in time: a failover could undo it. Answered like
    :class:`BackendUnavailable` (503 ``backend_unavailable``); repeating it is safe."""


class SessionLimitReached(SessionWatchError):
    """``login`` was refused because the user is at their session limit (``deny``)."""

    code: str = Code.SESSION_LIMIT_REACHED

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(f"user already has {limit} active session(s)")
        self.user_id = user_id
        self.limit = limit


class SessionChoiceRequired(SessionLimitReached):
    """``login`` at the limit under ``on_limit="ask"``: nothing changed, the session
    stays anonymous, and a short-lived single-use pending sign-in bound to this
    browser's session waits for :meth:`~sessionwatch.SessionWatch.complete_login`.

    Attributes:
        pending: the pending sign-in's token (useless in another browser's session).
        expires_at: when it expires (epoch ms).
        sessions: the user's live sessions to choose from (``SessionInfo``, oldest
            first), each with the public id that ``complete_login(evict=...)`` takes.
    """

    code: str = Code.SESSION_CHOICE_REQUIRED

    def __init__(
        self, user_id: str, limit: int, pending: str, expires_at: int, sessions: list[Any]
    ) -> None:
        super().__init__(user_id, limit)
        self.pending = pending
        self.expires_at = expires_at
        self.sessions = sessions


class PendingLoginRefused(SessionWatchError, PermissionError):
    """``complete_login`` refused the pending sign-in and changed nothing: ``code`` is
    ``pending_login_unknown`` (never issued, malformed, or forgotten), ``_expired``,
    ``_used`` (completed already: a replay) or ``_foreign`` (issued to another
    browser's session)."""

    def __init__(self, code: Code) -> None:
        super().__init__(code.value)
        self.code = code


class ReauthRequired(SessionWatchError, PermissionError):
    """Step-up: the session's sign-in (or last re-authentication) is older than
    ``max_age`` seconds (answered 401 ``reauth_required`` with ``max_age``, or a
    redirect to the re-authentication page for a navigation)."""

    code: str = Code.REAUTH_REQUIRED

    def __init__(self, max_age: int) -> None:
        super().__init__(f"re-authentication required (max_age {max_age} s)")
        self.max_age = max_age


class ProtocolError(SessionWatchError, ValueError):
    """A WebSocket frame or a channel payload does not follow the protocol.

    ``close_code`` is the WebSocket close code the endpoint answers it with.
    """

    code: str = Code.PROTOCOL_ERROR

    def __init__(self, message: str, close_code: int = 1008) -> None:
        super().__init__(message)
        self.close_code = close_code


class OriginForbidden(SessionWatchError, PermissionError):
    """The request was sent by a page of a foreign origin (answered 403
    ``origin_forbidden``)."""

    code: str = Code.ORIGIN_FORBIDDEN


class CookieConflict(SessionWatchError, PermissionError):
    """The request carries copies of the session cookie naming several live sessions
    (one tossed by a sibling subdomain next to the user's): no session is chosen, none is
    started over them, nothing is cleared (answered 401 ``cookie_conflict``)."""

    code: str = Code.COOKIE_CONFLICT


class RateLimited(SessionWatchError):
    """The client's address exceeded a rate (answered 429 ``rate_limited``);
    ``retry_after`` is in seconds."""

    code: str = Code.RATE_LIMITED

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited; retry after {retry_after:.1f} s")
        self.retry_after = retry_after


class InvalidUserId(SessionWatchError, ValueError):
    """A user id that is empty, too long, not a string, or holds characters that could
    forge log lines or fool a reader (control, format, separator characters)."""

    code: str = Code.BAD_USER_ID


class InvalidPage(SessionWatchError, ValueError):
    """A listing's ``cursor`` is not one a listing returned, or its ``limit`` is not a
    whole number of at least 1 (answered 400 ``bad_page``)."""

    code: str = Code.BAD_PAGE


class ProviderUnavailable(SessionWatchError, ConnectionError):
    """The OpenID provider (discovery, keys, token endpoint) did not answer in time or
    answered with an error; nothing was signed in or revoked."""

    code: str = Code.PROVIDER_UNAVAILABLE


class ProviderTokenInvalid(SessionWatchError, ValueError):
    """A token (ID token, logout token) or an answer of the OpenID provider failed a
    check; the message says which (it is the ``error_description``)."""

    code: str = Code.INVALID_REQUEST
