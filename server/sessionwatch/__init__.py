"""sessionwatch: real-time, server-enforced session control for Quart apps.

Server-side sessions behind a signed opaque cookie, fenced tab claims (the newest tab
wins, older tabs get 409 and a live notice), per-user session limits, and revocation
that really revokes. See README.md and docs/.
"""

from __future__ import annotations

from .backends import Backend, backend_from_url
from .core.config import Settings, settings_from_env
from .core.events import CloseCode, Device, Event
from .core.exceptions import (
    BackendUnavailable,
    ConfigurationError,
    CookieConflict,
    InvalidPage,
    InvalidUserId,
    OriginForbidden,
    ProtocolError,
    RateLimited,
    SessionLimitReached,
    SessionWatchError,
)
from .core.policy import Policy, policy_from_env
from .core.trail import AuditRecord
from .web.extension import SessionInfo, SessionList, SessionWatch, TabStatus
from .web.headers import SecurityHeaders
from .web.jsonprovider import BoundedJSONProvider

__all__ = [
    "AuditRecord",
    "Backend",
    "BackendUnavailable",
    "BoundedJSONProvider",
    "CloseCode",
    "ConfigurationError",
    "CookieConflict",
    "Device",
    "Event",
    "InvalidPage",
    "InvalidUserId",
    "OriginForbidden",
    "Policy",
    "ProtocolError",
    "RateLimited",
    "SecurityHeaders",
    "SessionInfo",
    "SessionLimitReached",
    "SessionList",
    "SessionWatch",
    "SessionWatchError",
    "Settings",
    "TabStatus",
    "backend_from_url",
    "policy_from_env",
    "settings_from_env",
]

__version__ = "0.1.0"
