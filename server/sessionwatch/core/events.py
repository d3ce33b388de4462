"""Event types and their JSON form: the one format shared by backends, hub and browser.

A backend publishes an :class:`Event` on a channel inside the same atomic step that
changes state (on Redis the Lua script builds the JSON itself, so the field names here
and in ``backends/lua/*.lua`` must agree; the contract tests check both). The hub
parses it with :func:`parse_event`, drops the routing field and sends
:meth:`Event.wire` to the affected tabs. ``docs/protocol.md`` documents every message.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from . import jsonlimits as bounded_json
from .exceptions import ProtocolError
from .jsonlimits import JSONTooDeep

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SERVER_EVENT_TYPES",
    "TERMINAL_CLOSE_CODES",
    "ClientMessage",
    "CloseCode",
    "Device",
    "Event",
    "encode",
    "ended_message",
    "expiring_message",
    "parse_client_message",
    "parse_event",
    "pong_message",
    "presence_message",
    "ready_message",
    "superseded_message",
]

PROTOCOL_VERSION: Final = 1


class CloseCode(enum.IntEnum):
    """WebSocket close codes (docs/protocol.md §3)."""

    GOING_AWAY = 1001
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    EXPIRED = 4002
    REVOKED = 4003
    LOGGED_OUT = 4004
    EVICTED = 4005
    UNSUPPORTED_VERSION = 4006
    TAB_INVALID = 4007
    HELLO_TIMEOUT = 4009
    RATE_LIMITED = 4010
    TOO_MANY_SOCKETS = 4011
    SLOW_CONSUMER = 4012
    ROTATED = 4013
    HEARTBEAT_TIMEOUT = 4014


EventType = Literal[
    "superseded",
    "evicted",
    "revoked",
    "logged_out",
    "expiring",
    "extended",
    "expired",
    "signed_in",
    "presence",
    "rotated",
]

SERVER_EVENT_TYPES: Final[frozenset[str]] = frozenset(EventType.__args__)  # type: ignore[attr-defined]

# Events after which a session's sockets are closed, and the code they close with.
TERMINAL_CLOSE_CODES: Final[dict[str, CloseCode]] = {
    "evicted": CloseCode.EVICTED,
    "revoked": CloseCode.REVOKED,
    "logged_out": CloseCode.LOGGED_OUT,
    "expired": CloseCode.EXPIRED,
    "rotated": CloseCode.ROTATED,
}

CLIENT_MESSAGE_TYPES: Final[frozenset[str]] = frozenset({"hello", "ping"})

# Routing fields a channel payload carries and the wire message does not.
_ROUTING_FIELDS: Final = ("session",)


@dataclass(frozen=True, slots=True)
class Device:
    """Who did something: shown in banners as "Chrome on Windows, just now"."""

    browser: str
    os: str
    place: str
    at: int  # epoch milliseconds
    same_browser: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``by`` object of the wire protocol."""
        return {
            "browser": self.browser,
            "os": self.os,
            "place": self.place,
            "at": self.at,
            "same_browser": self.same_browser,
        }

    @classmethod
    def from_json(cls, value: Any) -> Device:
        """Parse a ``by`` object; raises :class:`ProtocolError` when malformed."""
        if not isinstance(value, dict):
            raise ProtocolError("device must be an object")
        try:
            at = value["at"]
            if isinstance(at, bool) or not isinstance(at, (int, float)):
                raise TypeError
            return cls(
                browser=str(value.get("browser", "")),
                os=str(value.get("os", "")),
                place=str(value.get("place", "")),
                at=int(at),
                same_browser=bool(value.get("same_browser", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"malformed device: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Event:
    """A state change as published on a backend channel.

    ``session`` routes it: on a session channel the target session's public id, on a
    user channel the session that caused it (whose own tabs are not told).
    """

    type: str
    session: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """True when the session is over and its sockets must close."""
        return self.type in TERMINAL_CLOSE_CODES

    @property
    def gen(self) -> int | None:
        """The winning claim generation of a ``superseded`` event."""
        value = self.fields.get("gen")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def wire(self) -> dict[str, Any]:
        """The message sent to browser tabs (routing fields removed)."""
        return {"type": self.type, **self.fields}

    def payload(self) -> str:
        """The JSON published on a channel."""
        body: dict[str, Any] = {"type": self.type, **self.fields}
        if self.session is not None:
            body["session"] = self.session
        return encode(body)


# -- the server's messages to a tab (docs/protocol.md §3), built only here -------------


def ready_message(gen: int, expires_at: int, session: str, user: str | None) -> dict[str, Any]:
    """The answer to a ``hello`` whose token is the session's current tab."""
    return {
        "type": "ready",
        "v": PROTOCOL_VERSION,
        "gen": gen,
        "expires_at": expires_at,
        "session": session,
        "user": user,
    }


def superseded_message(gen: int, by: Any) -> dict[str, Any]:
    """A newer tab (claim ``gen``, device ``by``) took over."""
    return {"type": "superseded", "gen": gen, "by": by}


def expiring_message(expires_at: int, now: int) -> dict[str, Any]:
    """The session expires soon (``in``: seconds left)."""
    return {"type": "expiring", "in": round((expires_at - now) / 1000, 3), "expires_at": expires_at}


def presence_message(public_id: str, live_tabs: int, at: int) -> dict[str, Any]:
    """Session ``public_id`` of the user has ``live_tabs`` live tabs, counted at ``at``
    (epoch ms: of two notices about one session, the later count is the truth)."""
    return {"type": "presence", "id": public_id, "live_tabs": live_tabs, "at": at}


def pong_message() -> dict[str, Any]:
    """The answer to a ``ping``."""
    return {"type": "pong"}


def ended_message(kind: str) -> dict[str, Any]:
    """A terminal message without details (``revoked``, ``expired``, …), the fallback
    when stored state says the session is over."""
    return {"type": kind}


def encode(message: dict[str, Any]) -> str:
    """Compact JSON, the only serialisation used on channels and sockets."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_event(raw: str | bytes) -> Event:
    """Parse a channel payload. Raises :class:`ProtocolError` when it is not one.

    Unknown event types parse fine (forward compatibility); the hub ignores them.
    """
    try:
        body = bounded_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"event payload is not JSON: {exc}", 1007) from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ProtocolError("event payload must be an object with a string type")
    event_type = body.pop("type")
    session = body.pop(_ROUTING_FIELDS[0], None)
    if session is not None and not isinstance(session, str):
        raise ProtocolError("event session must be a string")
    return Event(type=event_type, session=session, fields=body)


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """A validated frame from a browser tab."""

    type: Literal["hello", "ping"]
    tab: str | None = None
    version: int = PROTOCOL_VERSION


def parse_client_message(raw: str | bytes, *, max_size: int) -> ClientMessage | None:
    """Validate one client frame.

    Returns ``None`` for a well-formed message of an unknown type (ignored, for forward
    compatibility). Raises :class:`ProtocolError` with the close code to answer:
    1009 when larger than ``max_size`` bytes, 1007 when not UTF-8 JSON (or nested deeper
    than :data:`~sessionwatch.core.jsonlimits.MAX_JSON_DEPTH`), 1008 when the
    fields are wrong, 4006 for an unsupported protocol version.
    """
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_size:
        raise ProtocolError(f"frame of {size} bytes exceeds {max_size}", CloseCode.MESSAGE_TOO_BIG)
    if isinstance(raw, bytes):
        raise ProtocolError("binary frames are not part of the protocol", CloseCode.INVALID_DATA)
    try:
        body = bounded_json.loads(raw)
    except JSONTooDeep as exc:
        raise ProtocolError(str(exc), CloseCode.INVALID_DATA) from None
    except ValueError:
        raise ProtocolError("frame is not JSON", CloseCode.INVALID_DATA) from None
    if not isinstance(body, dict):
        raise ProtocolError("frame must be a JSON object", CloseCode.INVALID_DATA)
    message_type = body.get("type")
    if not isinstance(message_type, str):
        raise ProtocolError("frame needs a string type", CloseCode.POLICY_VIOLATION)
    if message_type not in CLIENT_MESSAGE_TYPES:
        return None
    if message_type == "ping":
        return ClientMessage(type="ping")
    version = body.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("hello needs an integer v", CloseCode.POLICY_VIOLATION)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"unsupported protocol version {version}", CloseCode.UNSUPPORTED_VERSION
        )
    tab = body.get("tab")
    if tab is not None and not isinstance(tab, str):
        raise ProtocolError("hello tab must be a string or null", CloseCode.POLICY_VIOLATION)
    return ClientMessage(type="hello", tab=tab, version=version)
