"""Candidate changes of the service, measured without editing ``server/``.

Each factory builds the service app as ``sessionwatch.service.app:create_service_app``
does, then applies one change. Compare with the default in one command, e.g.::

    python -m tests.bench run --scenarios 1 --tabs 10000 --modes direct \\
        --service-factory tests.bench.variants:create_gc_default_app

- ``create_gc_default_app``: the interpreter's default garbage collector settings
  (no ``gc.freeze()``, thresholds 700/10/10) instead of the service's tuning, to
  measure what the tuning buys.
- ``create_gc_frozen_app``: only ``gc.freeze()`` after start-up, default thresholds.
- ``create_gc_large_young_app``: the service's tuning with young collections every
  50,000 net allocations instead of 10,000 (longer but rarer young pauses).
- ``create_gc_settled_freeze_app``: the service's tuning, plus a full collection and
  ``gc.freeze()`` once the worker's socket count has settled (finding 13 of
  docs/performance.md: not kept, no worker collection runs during the ladder).
- ``create_task_per_socket_app``: the service with every socket read in its own task
  (the ``run_asgi`` task and its coroutine chain), as before the service's sockets were
  served by the protocol's callbacks (finding 4): the server's ``listen`` offer is
  removed from each scope.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from sessionwatch.service.app import create_service_app

__all__ = [
    "create_gc_default_app",
    "create_gc_frozen_app",
    "create_gc_large_young_app",
    "create_gc_settled_freeze_app",
    "create_task_per_socket_app",
]


def create_gc_default_app() -> Any:
    return _with_gc((700, 10, 10), frozen=False)


def create_gc_frozen_app() -> Any:
    return _with_gc((700, 10, 10), frozen=True)


def create_gc_large_young_app() -> Any:
    return _with_gc((50_000, 10, 10), frozen=True)


def _with_gc(thresholds: tuple[int, int, int], *, frozen: bool) -> Any:
    """The service with its GC tuning replaced (runs after the service's own hook)."""
    app = create_service_app()

    @app.before_serving
    async def retune_gc() -> None:
        if not frozen:
            gc.unfreeze()
        gc.set_threshold(*thresholds)

    return app


def create_gc_settled_freeze_app() -> Any:
    """The service, plus: once the worker's socket count has changed and then stayed
    the same for 2 s, a full collection and ``gc.freeze()`` (the settled sockets' objects
    leave every later collection)."""
    app = create_service_app()
    tasks: list[asyncio.Task[None]] = []

    async def freeze_when_settled() -> None:
        hub = app.extensions["sessionwatch"].hub
        frozen_at = last = 0
        stable = 0
        while True:
            await asyncio.sleep(1.0)
            count = len(hub.sockets())
            stable = stable + 1 if count == last else 0
            last = count
            if stable >= 2 and abs(count - frozen_at) >= 500:
                gc.collect()
                gc.freeze()
                frozen_at = count

    @app.before_serving
    async def start() -> None:
        tasks.append(asyncio.get_running_loop().create_task(freeze_when_settled()))

    @app.after_serving
    async def stop() -> None:
        for task in tasks:
            task.cancel()

    return app


def create_task_per_socket_app() -> Any:
    from sessionwatch.live.socket import LISTEN_EXTENSION

    app = create_service_app()
    inner = app.asgi_app

    async def unoffered(scope: Any, receive: Any, send: Any) -> None:
        extensions = scope.get("extensions")
        if extensions and LISTEN_EXTENSION in extensions:
            scope = {**scope, "extensions": {**extensions}}
            del scope["extensions"][LISTEN_EXTENSION]
        await inner(scope, receive, send)

    app.asgi_app = unoffered  # type: ignore[method-assign]
    return app
