"""The stable error codes of every answer (the ``error`` field), spelled once.

A door writes a :class:`Code` member, never the string: two spellings of one code are
two codes the day one of them changes. ``MESSAGES`` holds the default human text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["MESSAGES", "Code"]


class Code(StrEnum):
    """Every stable ``error`` code sessionwatch answers with (docs/protocol.md §2)."""

    NO_SESSION = "no_session"
    EXPIRED = "expired"
    REVOKED = "revoked"
    COOKIE_CONFLICT = "cookie_conflict"
    TAB_MISSING = "tab_missing"
    TAB_INVALID = "tab_invalid"
    TAB_SUPERSEDED = "tab_superseded"
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BUSY = "busy"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_LIMIT_REACHED = "session_limit_reached"
    SESSION_CHOICE_REQUIRED = "session_choice_required"
    PENDING_LOGIN_UNKNOWN = "pending_login_unknown"
    PENDING_LOGIN_EXPIRED = "pending_login_expired"
    PENDING_LOGIN_USED = "pending_login_used"
    PENDING_LOGIN_FOREIGN = "pending_login_foreign"
    REAUTH_REQUIRED = "reauth_required"
    BAD_REQUEST = "bad_request"
    BAD_USER_ID = "bad_user_id"
    BAD_HOST = "bad_host"
    BAD_PAGE = "bad_page"
    NOT_FOUND = "not_found"
    ORIGIN_FORBIDDEN = "origin_forbidden"
    NOT_SIGNED_IN = "not_signed_in"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    REQUEST_TIMEOUT = "request_timeout"
    API_DISABLED = "api_disabled"
    API_KEY_MISSING = "api_key_missing"
    API_KEY_INVALID = "api_key_invalid"
    API_BROWSER_FORBIDDEN = "api_browser_forbidden"
    ADMIN_DISABLED = "admin_disabled"
    ADMIN_KEY_REQUIRED = "admin_key_required"
    BAD_SESSION_ID = "bad_session_id"
    BAD_REASON = "bad_reason"
    CONFIGURATION_ERROR = "configuration_error"
    PROTOCOL_ERROR = "protocol_error"
    # Single sign-on (docs/sso.md). invalid_request is the OAuth 2.0 error of a refused
    # back-channel logout token (Back-Channel Logout 1.0 §2.8).
    SIGN_IN_FAILED = "sign_in_failed"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    INVALID_REQUEST = "invalid_request"
    LOGOUT_FAILED = "logout_failed"
    SESSIONWATCH_ERROR = "sessionwatch_error"


MESSAGES: Final[dict[str, str]] = {
    Code.NO_SESSION: "You are not signed in, or your session is no longer valid.",
    Code.EXPIRED: "Your session has expired.",
    Code.REVOKED: "Your session was ended.",
    Code.COOKIE_CONFLICT: "This request carries several session cookies; none was used. "
    "Clear this site's cookies, then sign in again.",
    Code.TAB_MISSING: "This request did not come from an active tab of this app.",
    Code.TAB_INVALID: "This tab's token is not valid. Reload the page.",
    Code.TAB_SUPERSEDED: "This app is open in another tab.",
    Code.BACKEND_UNAVAILABLE: "The session service is unavailable. Try again shortly.",
    Code.BUSY: "Too many connections are opening at once. Try again shortly.",
    Code.SESSION_NOT_FOUND: "No such session.",
    Code.SESSION_LIMIT_REACHED: "You have reached the maximum number of active sessions.",
    Code.SESSION_CHOICE_REQUIRED: "You are signed in on too many devices: "
    "sign out one of them to continue.",
    Code.PENDING_LOGIN_UNKNOWN: "This sign-in is not known. Sign in again.",
    Code.PENDING_LOGIN_EXPIRED: "This sign-in waited too long. Sign in again.",
    Code.PENDING_LOGIN_USED: "This sign-in was already completed.",
    Code.PENDING_LOGIN_FOREIGN: "This sign-in was started in another browser.",
    Code.REAUTH_REQUIRED: "Confirm it's you: enter your password again.",
    Code.BAD_REQUEST: "The request was malformed.",
    Code.BAD_USER_ID: "The user id is empty, too long or holds characters that are not allowed.",
    Code.BAD_HOST: "The request's Host header is not a valid host name.",
    Code.BAD_PAGE: "The listing's cursor or limit is not valid.",
    Code.ORIGIN_FORBIDDEN: "This request's origin is not allowed.",
    Code.NOT_SIGNED_IN: "Sign in to see your sessions.",
    Code.UNAUTHORIZED: "This endpoint needs a valid bearer token.",
    Code.RATE_LIMITED: "Too many new sessions from your address. Try again shortly.",
    Code.API_DISABLED: "The session API is off: set SESSIONWATCH_API_KEYS.",
    Code.API_KEY_MISSING: "The session API needs Authorization: Bearer <key>.",
    Code.API_KEY_INVALID: "This API key is not valid.",
    Code.SIGN_IN_FAILED: "The sign-in through your identity provider could not be completed. "
    "Start it again.",
    Code.PROVIDER_UNAVAILABLE: "The identity provider cannot be reached. Try again shortly.",
    Code.INVALID_REQUEST: "The logout token is not valid.",
    Code.LOGOUT_FAILED: "The logout could not be carried out; send it again.",
    Code.API_BROWSER_FORBIDDEN: "The session API is for servers: requests with Cookie, "
    "Origin, Sec-Fetch-Site or Sec-Fetch-Dest headers are refused.",
    Code.ADMIN_DISABLED: "The admin API is off: set SESSIONWATCH_ADMIN_KEYS.",
    Code.ADMIN_KEY_REQUIRED: "This key is not an admin key: the admin API needs one of "
    "SESSIONWATCH_ADMIN_KEYS.",
    Code.BAD_SESSION_ID: "That is not a session's public id.",
    Code.BAD_REASON: "The reason must be a lowercase code: a letter, then up to 31 "
    "letters, digits or underscores.",
}
