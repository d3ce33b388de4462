"""The Quart view of ``GET {url_prefix}/ws`` (docs/protocol.md §3): a door.

It serves the handshakes :mod:`.rawwebsocket` leaves to Quart (an app with WebSocket
hooks or signal receivers, which must keep seeing this endpoint). The decision is
:func:`~sessionwatch.live.handshake.open_handshake`'s; serving the accepted socket is
:func:`~sessionwatch.live.socket.serve_socket`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from quart import Blueprint, Response, websocket

from ..backends.base import SessionRecord
from ..core.origins import OriginRule
from ..core.refusals import Refusal
from ..engine import RequestFacts
from ..live.connection import Connection
from ..live.gates import SocketGates
from ..live.handshake import open_handshake
from ..live.hub import Hub
from ..live.socket import serve_socket
from .responses import refusal_response
from .sessions import ServerSession

__all__ = ["WebSocketHost", "register_websocket"]

logger = logging.getLogger(__name__)


class WebSocketHost(Protocol):
    """What the view needs of the extension (which wires it)."""

    origins: OriginRule

    def current_session(self) -> ServerSession: ...

    def request_facts(self, tab: str | None = None) -> RequestFacts: ...


def register_websocket(bp: Blueprint, host: WebSocketHost, hub: Hub, gates: SocketGates) -> None:
    """Add the ``/ws`` endpoint to the extension's blueprint. (The extension also
    installs :mod:`.rawwebsocket`, which serves most sockets without this view.)"""

    @bp.websocket("/ws")
    async def live() -> Response | None:
        async def load() -> tuple[SessionRecord | None, str | None]:
            session = host.current_session()  # opened by Quart; raises BackendUnavailable
            return session.record, session.ended

        facts = host.request_facts()
        outcome = await open_handshake(
            facts, origins=host.origins, hub=hub, gates=gates, load_session=load
        )
        if isinstance(outcome, Refusal):
            return refusal_response(outcome)
        record, ticket = outcome.record, outcome.ticket
        try:
            conn = Connection(
                record.id, record.user, websocket.send, queue_size=hub.settings.send_queue_size
            )
            await websocket.accept()
            code = await serve_socket(
                hub, gates, conn, record.tab_key, websocket.receive, ticket, facts.address
            )
        finally:
            ticket.release()
        if code is not None:
            try:
                async with asyncio.timeout(conn.close_wait):  # CLOSE_TIMEOUT, or 0
                    await websocket.close(code)
            except Exception as exc:  # the peer is already gone
                logger.debug("close %d not sent: %r", code, exc)
        return None
