"""Routing: a channel message to the frames of the right local sockets.

The push hot path: the subscription hands each message to :meth:`Router.dispatch` as it
is read, which parses it once, encodes its frame once and queues it on every socket it
is for (docs/protocol.md §4), never awaiting a socket. :class:`Deliveries` counts what
reached sockets, for the routing here and for the catch-up and expiry notices.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..backends.base import ChannelMessage
from ..core.events import (
    SERVER_EVENT_TYPES,
    TERMINAL_CLOSE_CODES,
    CloseCode,
    Event,
    encode,
    parse_event,
    superseded_message,
)
from ..core.exceptions import ProtocolError
from .registry import Group, Registry, SessionGroup

__all__ = ["Deliveries", "Router"]

logger = logging.getLogger(__name__)

# What a user channel carries: a new sign-in, a session's live tab count.
_USER_EVENTS = frozenset({"signed_in", "presence"})


class Deliveries:
    """Frames queued for sockets, per event type (``delivered``) and in all
    (``events_out``), and the sockets closed as slow consumers (``dropped_slow``)."""

    __slots__ = ("by_type", "dropped_slow", "events_out")

    def __init__(self) -> None:
        self.by_type: dict[str, int] = {}
        self.events_out = 0
        self.dropped_slow = 0

    def count(self, event_type: str, sent: int) -> None:
        """Count ``sent`` sockets told an event of ``event_type``."""
        if sent:
            self.events_out += sent
            self.by_type[event_type] = self.by_type.get(event_type, 0) + sent

    def dropped(self) -> None:
        """A socket's full queue closed it (``Connection.on_overflow``)."""
        self.dropped_slow += 1


class Router:
    """Delivers channel messages to the registered sockets.

    Args:
        registry: the local sockets (their channel groups are looked up per message).
        deliveries: where sent frames are counted.
        set_deadline: moves a session's expiry deadline (``extended`` events).
    """

    def __init__(
        self,
        registry: Registry,
        deliveries: Deliveries,
        set_deadline: Callable[[SessionGroup, int], None],
    ) -> None:
        self._channels = registry.channels  # the registry's own dict: one lookup per message
        self._deliveries = deliveries
        self._set_deadline = set_deadline
        self.events_in = 0
        # Hears, for each socket an event was pushed to, the seconds from its arrival on
        # pub/sub to its frames being written (the service's push-latency histogram).
        self.on_push: Callable[[float], None] | None = None
        self._routing_since: float | None = None  # while dispatch routes an event

    def heard(self, message: ChannelMessage) -> None:
        """A subscription's listener (``Listenable.listen``)."""
        self.dispatch(message.channel, message.payload)

    def dispatch(self, channel: str, payload: str) -> None:
        """Route one message (malformed ones are logged and ignored)."""
        self.events_in += 1
        group = self._channels.get(channel)
        if group is None:
            return  # a late message for a channel we just left
        try:
            event = parse_event(payload)
        except ProtocolError as exc:
            logger.warning("malformed event on %s ignored: %s", channel, exc)
            return
        received = asyncio.get_running_loop().time()
        self._routing_since = received
        try:
            if isinstance(group, SessionGroup):
                self._route_session(group, event)
            elif event.type in _USER_EVENTS:
                self._route_user(group, event)
        except ProtocolError as exc:
            logger.warning("malformed event on %s ignored: %s", channel, exc)
        except Exception:  # a bug in routing must not stop the reader either
            logger.exception("event %s on %s could not be routed", event.type, channel)
        finally:
            self._routing_since = None
        if self.on_push is not None:
            for conn in group.conns:  # those the event queued a frame for
                if conn.event_at is None and conn.has_pending:
                    conn.event_at = received

    def pushed(self, seconds: float | None) -> None:
        """A socket wrote an event's frames (``Connection.on_pushed``)."""
        if self.on_push is None:
            return
        if seconds is None:  # written while routing: only an event's push counts
            if self._routing_since is None:
                return
            seconds = asyncio.get_running_loop().time() - self._routing_since
        self.on_push(seconds)

    def _route_session(self, group: SessionGroup, event: Event) -> None:
        sent = 0
        if event.type == "superseded":
            gen = event.gen
            if gen is None:
                raise ProtocolError("superseded without gen")
            by = event.fields.get("by")
            text = encode(superseded_message(gen, by))  # once, for every tab of the session
            sent = sum(conn.supersede(gen, by, text) for conn in list(group.conns))
        elif event.type == "rotated":
            for conn in list(group.conns):
                conn.finish(CloseCode.ROTATED)
                sent += 1
        elif event.terminal:
            wire = encode(event.wire())
            for conn in list(group.conns):
                conn.finish(TERMINAL_CLOSE_CODES[event.type], wire)
                sent += 1
        elif event.type in SERVER_EVENT_TYPES:
            if event.type == "extended":
                expires_at = event.fields.get("expires_at")
                if isinstance(expires_at, int) and not isinstance(expires_at, bool):
                    self._set_deadline(group, expires_at)
            wire = encode(event.wire())
            sent = sum(conn.push(wire) for conn in list(group.conns) if conn.bound)
        self._deliveries.count(event.type, sent)

    def _route_user(self, group: Group, event: Event) -> None:
        wire = encode(event.wire())
        sent = sum(
            conn.push(wire)
            for conn in list(group.conns)
            if conn.bound and conn.session != event.session
        )
        self._deliveries.count(event.type, sent)
