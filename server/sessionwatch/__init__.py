"""sessionwatch: real-time, server-enforced session control for Quart apps.

Server-side sessions behind a signed opaque cookie, fenced tab claims (the newest tab
wins, older tabs get 409 and a live notice), per-user session limits, and revocation
that really revokes. See README.md and docs/.
"""

from __future__ import annotations

from .backends import Backend, backend_from_url
from .config import Settings
from .events import CloseCode, Device, Event
from .exceptions import (
    BackendUnavailable,
    ConfigurationError,
    InvalidUserId,
    OriginForbidden,
    ProtocolError,
    RateLimited,
    SessionLimitReached,
    SessionNotFound,
    SessionWatchError,
)
from .extension import SessionInfo, SessionWatch, TabStatus
from .policy import Policy

__all__ = [
    "Backend",
    "BackendUnavailable",
    "CloseCode",
    "ConfigurationError",
    "Device",
    "Event",
    "InvalidUserId",
    "OriginForbidden",
    "Policy",
    "ProtocolError",
    "RateLimited",
    "SessionInfo",
    "SessionLimitReached",
    "SessionNotFound",
    "SessionWatch",
    "SessionWatchError",
    "Settings",
    "TabStatus",
    "backend_from_url",
]

__version__ = "0.1.0"
