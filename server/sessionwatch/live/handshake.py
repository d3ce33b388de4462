"""The WebSocket handshake of ``GET {url_prefix}/ws``, decided once for both doors.

:func:`open_handshake` answers a handshake's facts with :class:`Admitted` (the session
to serve and its admission turn) or a refusal before the upgrade: 403
``origin_forbidden``, 503 ``backend_unavailable`` (hub down, backend unreachable), 503
``busy`` (too many sockets opening), 401 without a live session. The raw ASGI route
(:mod:`sessionwatch.web.rawwebsocket`) and the Quart view
(:mod:`sessionwatch.web.websocket`) only read the facts and write the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..backends.base import SessionRecord
from ..core.exceptions import BackendUnavailable
from ..core.origins import OriginRule
from ..core.refusals import BACKEND_UNAVAILABLE, BUSY, Refusal, ended_refusal
from ..engine import RequestFacts, handshake_origin
from .admission import Ticket
from .gates import SocketGates
from .hub import Hub

__all__ = ["Admitted", "LoadSession", "open_handshake"]

logger = logging.getLogger(__name__)

# Loads the handshake's session: (record, why it ended); raises BackendUnavailable.
LoadSession = Callable[[], Awaitable[tuple[SessionRecord | None, str | None]]]


@dataclass(frozen=True, slots=True)
class Admitted:
    """Accept the socket of ``record``; ``ticket`` is its opening turn (released once
    it is registered with the hub, see :func:`sessionwatch.live.socket.serve_socket`)."""

    record: SessionRecord
    ticket: Ticket


async def open_handshake(
    facts: RequestFacts,
    *,
    origins: OriginRule,
    hub: Hub,
    gates: SocketGates,
    load_session: LoadSession,
) -> Admitted | Refusal:
    """Decide a handshake: the origin, the hub, a turn to open (queued, see
    :mod:`.admission`), then the session, loaded under that turn (after a restart every
    tab comes back at once; the turn bounds the loads in flight)."""
    refused = handshake_origin(facts, origins)
    if refused is not None:
        return refused
    if not hub.running:
        logger.error("websocket refused: the hub is not running (is the app served?)")
        return BACKEND_UNAVAILABLE
    try:
        ticket = await gates.openings.enter()
    except TimeoutError:
        return BUSY
    try:
        record, ended = await load_session()
    except BackendUnavailable as exc:
        ticket.release()
        logger.warning("websocket refused: backend unavailable: %s", exc)
        return BACKEND_UNAVAILABLE
    except BaseException:
        ticket.release()
        raise
    if record is None:
        ticket.release()
        return ended_refusal(ended)
    return Admitted(record, ticket)
