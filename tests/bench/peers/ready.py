"""An ASGI wrapper that answers the lifespan protocol and marks the worker ready
(``BENCH_READY_DIR/ready-<pid>``, how the runner finds every worker process) for peer
apps that have no start-up hook of their own."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["with_ready_file"]

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def with_ready_file(app: App, on_startup: Callable[[], Awaitable[None]] | None = None) -> App:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if on_startup is not None:
                    await on_startup()
                ready_dir = os.environ.get("BENCH_READY_DIR")
                if ready_dir:
                    Path(ready_dir, f"ready-{os.getpid()}").touch()  # noqa: ASYNC240 (once)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapped
