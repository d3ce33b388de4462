"""A tab's WebSocket as the simulated browsers open it (the fault suite's tabs, the
rolling-restart benchmark's): bounded waits, no protocol pings (the tab's own
heartbeat is a ``ping`` message), the refusal's status kept."""

from __future__ import annotations

import asyncio

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

__all__ = ["open_tab_socket"]


async def open_tab_socket(
    url: str, headers: dict[str, str], **options: object
) -> ClientConnection | int:
    """The open socket, else the handshake's refusal status (401, 403, 503...), or 0
    when no answer came (connection failed, timed out, not a WebSocket answer)."""
    try:
        async with asyncio.timeout(15):
            return await connect(
                url,
                additional_headers=headers,
                open_timeout=10,
                ping_interval=None,
                close_timeout=2,
                **options,  # type: ignore[arg-type]
            )
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    except (OSError, TimeoutError, InvalidHandshake):
        return 0
