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
"""

from __future__ import annotations

import gc
from typing import Any

from sessionwatch.service.app import create_service_app

__all__ = ["create_gc_default_app", "create_gc_frozen_app", "create_gc_large_young_app"]


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
