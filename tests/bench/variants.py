"""Candidate changes of the service, measured without editing ``server/``.

Each factory builds the service app as ``sessionwatch.service:create_service_app``
does, then applies one change. Compare with the default in one command, e.g.::

    python -m tests.bench run --scenarios 6 --service-factory tests.bench.variants:create_pooled_app

- ``create_pooled_app``: the Redis backend's client on a ``BlockingConnectionPool``
  (64 connections per worker, 5 s wait). redis-py 8's default asyncio pool allows 100
  connections and then raises ``MaxConnectionsError("Too many connections")`` at once;
  sessionwatch maps it to ``BackendUnavailable``, so a burst (a reconnect storm, many
  tabs closing, a claim spike) gets spurious 503s (and the demo's policy read, which
  uses the client directly, a 500).
- ``create_batched_presence_app``: the hub's presence refresh sends one pipeline per
  32 sockets instead of one 3-command pipeline per socket, and refreshes a twentieth
  of the sockets every twentieth of the interval instead of all at once. Every
  heartbeat interval (20 s) the default costs each worker ~0.3 ms of CPU per socket in
  one burst (about 1.5-2 s of a full core for 5,000 sockets), which delays every push
  of that worker meanwhile.
- ``create_pooled_batched_app``: both.
- ``create_gc_tuned_app`` (diagnostic, not a recommendation as is): the start-up heap
  frozen (``gc.freeze()``) and no automatic full collections. With 5,000 sockets a
  worker tracks about a million objects and a full collection stops it for 0.8-1 s.
- ``create_all_app``: the three together.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sessionwatch.service import create_service_app

__all__ = [
    "create_all_app",
    "create_batched_presence_app",
    "create_gc_tuned_app",
    "create_pooled_app",
    "create_pooled_batched_app",
]

POOL_SIZE = 64
POOL_WAIT = 5.0


_BATCH = 32  # sockets per pipeline: bigger batches block the event loop while replies parse
_SLICES = 20


def create_pooled_app() -> Any:
    return _pooled(create_service_app())


def create_batched_presence_app() -> Any:
    return _batched_presence(create_service_app())


def create_pooled_batched_app() -> Any:
    return _batched_presence(_pooled(create_service_app()))


def create_gc_tuned_app() -> Any:
    return _gc_tuned(create_service_app())


def create_all_app() -> Any:
    return _gc_tuned(_batched_presence(_pooled(create_service_app())))


def _gc_tuned(app: Any) -> Any:
    import gc

    @app.before_serving
    async def freeze() -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(700, 10, 1_000_000)  # young collections only

    return app


def _pooled(app: Any) -> Any:
    import redis.asyncio as aioredis

    from sessionwatch.backends.redis import _SCRIPTS, _script_source

    backend = app.extensions["sessionwatch"].backend
    old = backend.client
    pool = aioredis.BlockingConnectionPool(
        connection_class=old.connection_pool.connection_class,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        **old.connection_pool.connection_kwargs,
    )
    client = aioredis.Redis(connection_pool=pool)
    backend._redis = client  # nothing has connected yet: the app is not serving
    backend._scripts = {name: client.register_script(_script_source(name)) for name in _SCRIPTS}
    return app


def _batched_presence(app: Any) -> Any:
    watch = app.extensions["sessionwatch"]
    hub = watch.hub

    async def refresh_presence(conns: list[Any]) -> None:
        now = watch.now_ms()
        until = now + int(2 * watch.settings.heartbeat_interval * 1000)
        prefix = watch.backend.key_prefix
        live = [conn for conn in conns if conn.bound and not conn.closing]
        for start in range(0, len(live), _BATCH):
            async with watch.backend.client.pipeline(transaction=False) as pipe:
                for conn in live[start : start + _BATCH]:
                    key = f"{prefix}l:{conn.session}"
                    pipe.zadd(key, {conn.id: until})
                    pipe.zremrangebyscore(key, "-inf", now)
                    pipe.pexpire(key, max(until - now, 1))
                await pipe.execute()

    async def tick_forever() -> None:
        interval = watch.settings.heartbeat_interval
        tick = 0
        while True:
            await asyncio.sleep(interval / _SLICES)
            tick = (tick + 1) % _SLICES
            conns = [c for c in list(hub._conns) if hash(c.id) % _SLICES == tick]
            try:
                await refresh_presence(conns)
            except Exception:
                logging.getLogger("sessionwatch.hub").exception("presence refresh failed")

    # Both are looked up on the instance: refresh_presence by the tick loop and by a
    # socket's first hello, _tick_forever when the hub starts (after this factory).
    hub.refresh_presence = refresh_presence
    hub._tick_forever = tick_forever
    return app
