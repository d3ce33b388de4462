"""Scripts on a Redis Cluster: one pipelined connection per primary (``multiplex.py``).

Before, a Cluster's scripts went through redis-py's cluster client: a connection checked
out of the node's pool per call, the command packed and its reply parsed in Python, and
at most 64 calls in flight per process. Here each primary gets one
:class:`~.multiplex.Multiplexer` (made on first use, from a small pool of its own), and
a script goes to the one that serves the slot of its first key in redis-py's slot map
(``keyslot``, ``get_node_from_slot``): the same pipelining, the same replies read by
hiredis, the same failure semantics as on one Redis (the multiplexer's docstring).

What a Cluster adds:

- ``MOVED slot host:port``: the slot has another owner (a failover, a finished
  migration); the script did not run. The slot map is patched from the reply (redis-py's
  ``move_slot``), a full refresh is started in the background, and the script is sent
  to the new owner.
- ``ASK slot host:port``: the slot is being migrated and the key is not on its source
  any more; the script did not run. It is sent once to the importing node, ``ASKING``
  then ``EVALSHA`` in one write on that node's connection (an ``ASK`` there is an error).
- At most ``MAX_REDIRECTS`` redirects, then :class:`RedisClusterException` (a 503, the
  script having run nowhere).
- Every send of one call keeps the deadline of its first (``Multiplexer.evalsha``'s
  ``deadline``): its caller is told "failed" at the same moment as on one Redis, after
  the script's start budget in Redis' clock has passed (``deadline.py``), so a script
  sent again after a redirect can never start once its caller was told it failed. A
  redirect that arrives after that deadline is not followed.
- A connection lost, a node unreachable, a timeout or ``READONLY`` (a demoted primary)
  start a refresh of the slot map in the background (one at a time), so the next calls
  find the promoted replica; the call itself fails as on one Redis (``NotSent`` when
  the script was never written: ``RedisBackend.call`` sends it again, routed afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, MovedError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .multiplex import Multiplexer, ScriptError

__all__ = ["MAX_REDIRECTS", "ClusterMultiplexer", "Redirected"]

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5  # MOVED/ASK followed per call; then 503 (the script ran nowhere)
_REFRESH_PAUSE = 0.2  # seconds between two refreshes of the slot map
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class Redirected(ScriptError):
    """``MOVED`` or ``ASK`` not followed (``follow=False``): the script did not run."""


def redirect_of(exc: ScriptError) -> AskError | None:
    """The ``MOVED``/``ASK`` redirect an error reply is, else ``None``."""
    kind, _, rest = str(exc).partition(" ")
    if kind == "MOVED":
        return MovedError(rest)
    if kind == "ASK":
        return AskError(rest)
    return None


class ClusterMultiplexer:
    """Runs scripts on the primary that serves their slot, one :class:`Multiplexer`
    per primary.

    Args:
        cluster: redis-py's cluster client: its slot map routes the calls.
        pool_of: makes the connection pool of a node (host, port) for its multiplexer.
        timeout: seconds a reply may take (``Multiplexer``'s ``timeout``).
    """

    def __init__(
        self, cluster: RedisCluster, pool_of: Callable[[str, int], Any], *, timeout: float
    ) -> None:
        self._cluster = cluster
        self._pool_of = pool_of
        self._timeout = timeout
        self._nodes: dict[str, tuple[Multiplexer, Any]] = {}  # by node name: mux, pool
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False

    def node_of(self, key: str) -> ClusterNode:
        """The primary that serves ``key``'s slot in the current slot map
        (:class:`~redis.exceptions.SlotNotCoveredError` when none does)."""
        slot = self._cluster.keyslot(key)
        return self._cluster.nodes_manager.get_node_from_slot(slot)

    async def start(self, key: str) -> tuple[ClusterNode, float]:
        """Where a call on ``key`` goes first (the slot map read if it never was) and
        the deadline every send of the call keeps (loop time)."""
        if self._cluster.nodes_manager.default_node is None:
            await self._cluster.initialize()
        return self.node_of(key), asyncio.get_running_loop().time() + self._timeout

    def _multiplexer(self, node: ClusterNode) -> Multiplexer:
        found = self._nodes.get(node.name)
        if found is None:
            pool = self._pool_of(node.host, int(node.port))
            found = self._nodes[node.name] = (Multiplexer(pool, timeout=self._timeout), pool)
        return found[0]

    async def evalsha(
        self, source: str, keys: list[str], args: list[Any], *, follow: bool = True
    ) -> Any:
        """Run ``source`` on the primary of ``keys[0]``'s slot and return its reply,
        following ``MOVED`` and ``ASK`` (with ``follow=False``: raising
        :class:`Redirected` instead, once the slot map is patched)."""
        loop = asyncio.get_running_loop()
        node, deadline = await self.start(keys[0])
        asking = False
        for _ in range(MAX_REDIRECTS + 1):
            try:
                return await self._multiplexer(node).evalsha(
                    source, keys, args, deadline=deadline, asking=asking
                )
            except ScriptError as exc:
                redirect = redirect_of(exc)
                if redirect is None:
                    if str(exc).startswith("CLUSTERDOWN"):
                        self.refresh()
                    raise
                await self.learn(redirect, node)
                if not follow:
                    raise Redirected(str(exc)) from exc
                if loop.time() >= deadline:  # its caller is told now: it failed
                    raise RedisTimeoutError("Timeout reading from Redis") from exc
                node, asking = self.redirected_to(redirect, keys[0])
            except _UNREACHABLE:
                self.refresh()
                raise
        raise RedisClusterException(f"Redis Cluster: more than {MAX_REDIRECTS} redirects")

    async def learn(self, redirect: AskError, node: ClusterNode) -> None:
        """What ``redirect`` (a ``MOVED`` or ``ASK`` from ``node``) tells of the slot
        map: a ``MOVED`` patches it and starts a refresh."""
        if not redirect.host:  # "MOVED 3999 :6380": the node it came from
            redirect.host = node.host
        if isinstance(redirect, MovedError):
            await self._cluster.nodes_manager.move_slot(redirect)
            self.refresh()

    def redirected_to(self, redirect: AskError, key: str) -> tuple[ClusterNode, bool]:
        """Where a command on ``key`` goes after ``redirect`` (once :meth:`learn` has
        seen it), and whether ``ASKING`` must precede it: after ``MOVED`` the slot's
        owner, after ``ASK`` the importing node."""
        if isinstance(redirect, MovedError):
            return self.node_of(key), False
        return self._asked(redirect), True

    def _asked(self, redirect: AskError) -> ClusterNode:
        manager = self._cluster.nodes_manager
        host, port = manager.remap_host_port(redirect.host, redirect.port)
        node = manager.get_node(host, port)
        if node is None:
            self.refresh()
            raise RedisClusterException(f"Redis Cluster: ASK to unknown node {host}:{port}")
        return node

    def refresh(self) -> None:
        """Re-read the slot map in the background: one refresh at a time, at most one
        per ``_REFRESH_PAUSE`` (a failing node fails many calls), none asked for lost."""
        self._again = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while self._again:
            self._again = False
            try:
                await self._cluster.nodes_manager.initialize()
            except (RedisError, *_UNREACHABLE) as exc:
                logger.info("Redis Cluster slot map not refreshed: %s", exc)
            await asyncio.sleep(_REFRESH_PAUSE)

    async def aclose(self) -> None:
        """Close every node's connection once its callers have their answers."""
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(multiplexer.aclose() for multiplexer, _ in nodes))
        for _, pool in nodes:
            await pool.disconnect()
