"""The session engine: every session operation and every request decision, once, with
no web framework in it (between ``backends`` and the doors; docs/architecture.md)."""

from .check import (
    MAX_REAUTH_AGE,
    Pass,
    Requirement,
    check_recent_login,
    check_request,
    check_tab,
    handshake_origin,
    parse_max_age,
)
from .facts import SAFE_METHODS, RequestFacts, client_address, is_unsafe
from .operations import REASON_RE, ClaimSlot, Restored, SessionEngine, SessionInfo, SessionList

__all__ = [
    "MAX_REAUTH_AGE",
    "REASON_RE",
    "SAFE_METHODS",
    "ClaimSlot",
    "Pass",
    "RequestFacts",
    "Requirement",
    "Restored",
    "SessionEngine",
    "SessionInfo",
    "SessionList",
    "check_recent_login",
    "check_request",
    "check_tab",
    "client_address",
    "handshake_origin",
    "is_unsafe",
    "parse_max_age",
]
