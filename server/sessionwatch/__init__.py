"""sessionwatch: real-time, server-enforced session control for Quart apps.

Server-side sessions behind a signed opaque cookie, fenced tab claims (the newest tab
wins, older tabs get 409 and a live notice), per-user session limits, and revocation
that really revokes. See README.md and docs/.
"""

from __future__ import annotations

from .backends import Backend, backend_from_url
from .core.audit import security_log
from .core.codes import Code
from .core.config import Settings, settings_from_env
from .core.events import CloseCode, Device, Event
from .core.exceptions import (
    BackendUnavailable,
    ConfigurationError,
    CookieConflict,
    InvalidPage,
    InvalidUserId,
    OriginForbidden,
    PendingLoginRefused,
    ProtocolError,
    ProviderTokenInvalid,
    ProviderUnavailable,
    RateLimited,
    ReauthRequired,
    SessionChoiceRequired,
    SessionLimitReached,
    SessionWatchError,
)
from .core.oidc import ProviderIdentity
from .core.policy import LIMIT_ACTIONS, LimitAction, Policy, policy_from_env
from .core.trail import AuditRecord
from .web.extension import (
    AuditFeed,
    Roster,
    SessionInfo,
    SessionList,
    SessionWatch,
    TabStatus,
    UserSessions,
)
from .web.headers import SecurityHeaders
from .web.jsonprovider import BoundedJSONProvider

__all__ = [
    "LIMIT_ACTIONS",
    "AuditFeed",
    "AuditRecord",
    "Backend",
    "BackendUnavailable",
    "BoundedJSONProvider",
    "CloseCode",
    "Code",
    "ConfigurationError",
    "CookieConflict",
    "Device",
    "Event",
    "InvalidPage",
    "InvalidUserId",
    "LimitAction",
    "OriginForbidden",
    "PendingLoginRefused",
    "Policy",
    "ProtocolError",
    "ProviderIdentity",
    "ProviderTokenInvalid",
    "ProviderUnavailable",
    "RateLimited",
    "ReauthRequired",
    "Roster",
    "SecurityHeaders",
    "SessionChoiceRequired",
    "SessionInfo",
    "SessionLimitReached",
    "SessionList",
    "SessionWatch",
    "SessionWatchError",
    "Settings",
    "TabStatus",
    "UserSessions",
    "backend_from_url",
    "policy_from_env",
    "security_log",
    "settings_from_env",
]

__version__ = "0.1.0"
