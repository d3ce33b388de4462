"""The audit trail's vocabulary: events, actors, settings and one record's shape.

A backend writes a record inside the same atomic step as the change it records (on
Redis the Lua script's ``XADD``, see ``docs/audit.md``); this module says what a record
holds and parses one back. A record never holds a secret: no session id, token or
cookie, only the public id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from . import jsonlimits
from .exceptions import ConfigurationError

__all__ = [
    "ACTOR_RE",
    "AUDIT_EVENTS",
    "DEFAULT_GROUPS",
    "AuditEvent",
    "AuditRecord",
    "AuditSettings",
    "check_actor",
    "entry_order",
]

AuditEvent: TypeAlias = Literal[
    "superseded",  # a tab claimed the session exclusively (a takeover)
    "signed_in",
    "evicted",  # ended by the session limit at another session's sign-in
    "limit_denied",  # a sign-in refused at the limit (nothing else changed)
    "revoked",
    "logged_out",
    "expired",
]
AUDIT_EVENTS: Final[frozenset[str]] = frozenset(AuditEvent.__args__)  # type: ignore[attr-defined]

# Who caused a change. The engine's ending and sign-in operations take it as ``actor=``:
#   "user"               the session's own user (a logout, a sign-in, a tab's claim)
#   "session:<public id>" another session (the sign-in that evicted this one, a user
#                        revoking their other sessions from one of them)
#   "admin:<name>"       an administrator (the admin API key's or CLI user's name)
#   "provider:<issuer>"  an identity provider (an OIDC back-channel logout, a sign-in)
#   "app"                the host app's own call (revoke_session/revoke_user without one)
#   "system"             sessionwatch itself (an expiry)
# Printable ASCII without spaces, at most 200 characters: it goes into JSON lines.
ACTOR_RE: Final = re.compile(r"(?:user|app|system|(?:session|admin|provider):[!-~]{1,190})")

# The consumer groups every stream shard is created with (the Lua script makes them
# with its first record, so no reader can miss one): hooks and the SIEM export.
DEFAULT_GROUPS: Final = ("hooks", "export")


def check_actor(actor: str) -> str:
    """Return ``actor`` when it has one of the shapes of :data:`ACTOR_RE`, else raise
    :class:`ConfigurationError` (fail closed: a record's actor is never guessed)."""
    if not isinstance(actor, str) or not ACTOR_RE.fullmatch(actor):
        raise ConfigurationError(
            "actor must be user, app, system, session:<public id>, admin:<name> or "
            f"provider:<issuer> (printable ASCII, no spaces), got {actor!r}"
        )
    return actor


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """How the trail is kept: ``enabled`` (off: no record is written), ``retention_ms``
    (records older are trimmed, approximately; also the window of new device/place),
    ``max_records`` (approximate ``MAXLEN`` per stream shard) and the consumer groups
    created with each shard."""

    enabled: bool = True
    retention_ms: int = 30 * 24 * 3_600_000
    max_records: int = 100_000
    groups: tuple[str, ...] = DEFAULT_GROUPS

    def __post_init__(self) -> None:
        if self.retention_ms <= 0 or self.max_records <= 0:
            raise ConfigurationError("audit retention and max records must be positive")

    @classmethod
    def of(cls, settings: Any) -> AuditSettings:
        """From the :class:`~sessionwatch.core.config.Settings` ``audit_*`` fields."""
        return cls(
            enabled=settings.audit_trail,
            retention_ms=int(settings.audit_retention * 1000),
            max_records=settings.audit_max_records,
        )

    def script_context(self, stream: str, actor: str) -> str:
        """The JSON a Lua script reads its audit context from (``_prelude.lua``)."""
        if not self.enabled:
            return ""
        return json.dumps(
            {
                "stream": stream,
                "max": self.max_records,
                "keep": self.retention_ms,
                "actor": actor,
                "groups": list(self.groups),
            },
            separators=(",", ":"),
        )


def _flag(value: str | None) -> bool | None:
    return None if value in (None, "") else value == "1"


def _json(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    parsed = jsonlimits.loads(value)
    return parsed if isinstance(parsed, dict) else None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record of the trail. ``id`` is unique across the deployment (the stream
    entry's id, with its shard on a Cluster): the key to de-duplicate deliveries.
    ``by`` is the device of the tab or session that caused a takeover, an eviction or a
    sign-in. ``new_device``/``new_place``: ``None`` when not judged (anonymous)."""

    id: str
    event: str
    session: str
    user: str | None
    device: dict[str, Any]
    actor: str
    at: int
    reason: str | None = None
    by: dict[str, Any] | None = None
    new_device: bool | None = None
    new_place: bool | None = None

    @property
    def place(self) -> str:
        return str(self.device.get("place", ""))

    @classmethod
    def from_fields(cls, record_id: str, fields: Mapping[str, str]) -> AuditRecord:
        """Parse a stream entry's fields (as the scripts and the memory backend write)."""
        return cls(
            id=record_id,
            event=fields.get("event", ""),
            session=fields.get("session", ""),
            user=fields.get("user") or None,
            device=_json(fields.get("device")) or {},
            actor=fields.get("actor", ""),
            at=int(fields.get("at") or 0),
            reason=fields.get("reason") or None,
            by=_json(fields.get("by")),
            new_device=_flag(fields.get("new_device")),
            new_place=_flag(fields.get("new_place")),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form (``sessionwatch audit export``, hook payloads)."""
        return {
            "id": self.id,
            "event": self.event,
            "at": self.at,
            "user": self.user,
            "session": self.session,
            "device": self.device,
            "place": self.place,
            "actor": self.actor,
            "reason": self.reason,
            "by": self.by,
            "new_device": self.new_device,
            "new_place": self.new_place,
        }


def entry_order(record_id: str) -> tuple[int, int, int]:
    """Sort key of a record id: time, sequence, then shard (a Cluster's ``@slot``)."""
    entry, _, slot = record_id.partition("@")
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0), int(slot or 0)
