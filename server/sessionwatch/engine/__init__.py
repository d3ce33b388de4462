"""The session engine: every session operation and every request decision, once, with
no web framework in it (between ``backends`` and the doors; docs/architecture.md)."""

from .check import Pass, Requirement, check_request, check_tab, handshake_origin
from .facts import SAFE_METHODS, RequestFacts, client_address, is_unsafe
from .operations import REASON_RE, ClaimSlot, Restored, SessionEngine, SessionInfo, SessionList

__all__ = [
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
    "check_request",
    "check_tab",
    "client_address",
    "handshake_origin",
    "is_unsafe",
]
