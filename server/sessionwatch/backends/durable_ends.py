"""Durable ends: a write that ends access is acknowledged only once a replica has it.

Redis replicates asynchronously: a primary that dies right after answering loses the
writes its replicas had not received yet, and Sentinel (or the Cluster) promotes a
replica without them. For most writes that costs a retry; for a logout, a revocation or
an eviction it brings an ended session back to life. So the scripts that end sessions
(``end.lua``, ``end_user.lua``, ``login.lua`` when it evicts) are followed by
``WAIT replicas timeout`` **on the connection that ran them** (``WAIT`` counts the
replication offset of its own client's last write), never on the pipelined connection
of :mod:`.multiplex`, which ``WAIT`` would block for every other caller. Fewer
acknowledgements than asked for raise :class:`~..core.exceptions.EndNotDurable` (a 503):
the end took effect on the primary and its event was published, but the caller is not
told it is safe. Writes that grant access (login, claim) stay asynchronous: losing one
costs a sign-in or a claim again, never access.

How many replicas (setting ``durable_ends``): a number, ``0`` (off), or ``"auto"``: one
while the primary reports a replica online (``INFO replication``: connected and past
its first full sync; on a Cluster, every primary), read again every ``RECHECK_EVERY``
seconds and after any failure, **and for ``REPLICA_GRACE`` seconds after one was last
seen online**; none otherwise, with a warning in the log when that starts. The grace
is what makes ``auto`` hold across a failover: a primary whose replica was just
promoted (``SENTINEL FAILOVER``, a failover the old primary did not see) reports no
replica until Sentinel demotes it, and keeps accepting writes meanwhile; ends it
acknowledged unreplicated then were discarded when it became a replica (the overlap
soak of issue 23: 93 ended sessions alive again). Within the grace such an end is 503
(safe to repeat); so is one on a new primary whose replica has not attached yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from redis.exceptions import NoScriptError, ResponseError

from ..core.exceptions import EndNotDurable

__all__ = [
    "RECHECK_EVERY",
    "REPLICA_GRACE",
    "DurableEnds",
    "FenceFailed",
    "end_and_wait",
    "online_replicas",
]

logger = logging.getLogger(__name__)

RECHECK_EVERY: Final = 5.0  # seconds between two looks at the primary's replicas (auto)
# Seconds auto still waits for a replica after the last one left: longer than Sentinel
# takes to demote an old primary after a failover (issue 23's soak: a few seconds).
REPLICA_GRACE: Final = 30.0


class DurableEnds:
    """How many replicas an end waits for, and the check of what ``WAIT`` answered.

    Args:
        replicas: the ``durable_ends`` setting: a count, ``0`` (off) or ``"auto"``.
        timeout: seconds ``WAIT`` may block.
        connected_replicas: reads how many replicas the primary has online (auto).
        clock: a monotonic clock in seconds.
    """

    def __init__(
        self,
        replicas: int | Literal["auto"],
        timeout: float,
        connected_replicas: Callable[[], Awaitable[int]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = replicas
        self.timeout_ms = max(1, int(timeout * 1000))  # WAIT 0 would block for ever
        self._connected_replicas = connected_replicas
        self._clock = clock
        self._seen: int | None = None
        self._seen_at = 0.0
        self._waited = 0  # the last count seen (forget() keeps it: for the warning)
        self._online_at: float | None = None  # when a replica was last seen online

    def forget(self) -> None:
        """Look at the primary's replicas again before the next end (a failover may
        have brought another primary)."""
        self._seen = None

    async def required(self) -> int:
        """The replicas the next end must reach (0: answer without waiting)."""
        if self.replicas != "auto":
            return self.replicas
        now = self._clock()
        if self._seen is None or now - self._seen_at > RECHECK_EVERY:
            seen = min(1, await self._connected_replicas())
            if seen:
                self._online_at = now
            elif self._online_at is not None and now - self._online_at < REPLICA_GRACE:
                seen = 1  # it just left: maybe promoted, and this primary demoted next
            if seen < self._waited:
                logger.warning(
                    "durable ends paused: the Redis primary has no replica online; "
                    "logouts and revocations are acknowledged unreplicated until one is"
                )
            self._seen = self._waited = seen
            self._seen_at = now
        return self._seen

    def check(self, acknowledged: int | None, required: int) -> None:
        """Raise :class:`EndNotDurable` when fewer than ``required`` replicas
        acknowledged the end (``None``: nothing to acknowledge)."""
        if acknowledged is not None and acknowledged < required:
            self.forget()
            raise EndNotDurable(
                f"the end ran on the Redis primary but {acknowledged} of {required} "
                f"replica(s) confirmed it within {self.timeout_ms} ms; repeat it"
            )


def online_replicas(info: dict[str, Any]) -> int:
    """Replicas in an ``INFO replication`` reply that are online (past the first sync:
    one still loading the primary's snapshot acknowledges nothing yet)."""
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


FENCE_TTL_MS: Final = 60_000


async def end_and_wait(
    connection: Any,
    script: tuple[str, str],
    keys: list[str],
    argv: list[Any],
    *,
    fence: str,
    replicas: int,
    timeout_ms: int,
    ended: Callable[[Any], bool] | None = None,
    asking: bool = False,
) -> tuple[Any, int | None]:
    """Run ``script`` (its source and SHA) on ``connection`` (a redis-py connection of
    the primary that owns ``keys``), then on the same connection write ``fence`` and
    ``WAIT``: the reply and how many replicas acknowledged. With ``ended``, the wait
    follows only when ``ended(reply)`` (else ``None`` acknowledged: nothing to wait
    for); without, the three commands go out in one write. With ``asking`` (a Cluster's
    ``ASK``: ``connection`` is the importing node's), ``ASKING`` goes right before the
    script and before the fence: it admits the one command after it, and the importing
    node answers any other command on the slot ``MOVED`` (the fence key shares the
    script's slot and may not be there yet).

    The fence makes ``WAIT`` count an end that found nothing left to end (a repeated
    revocation whose first run was not confirmed): its own write comes after everything
    the script saw. Redis error replies are raised after every reply was read: the
    script's as they are (a ``MOVED``, ``ASK`` or ``TRYAGAIN`` there: it did not run),
    the fence's or ``WAIT``'s as :class:`FenceFailed` (the script ran: never sent again).
    """
    source, sha = script
    waiting = [("SET", fence, "1", "PX", FENCE_TTL_MS), ("WAIT", replicas, timeout_ms)]
    tail = waiting if ended is None else []
    evalsha = ("EVALSHA", sha, len(keys), *keys, *argv)
    replies = await _exchange(connection, [evalsha, *tail], asking)
    if isinstance(replies[0], NoScriptError):  # a flushed cache or a new primary: not run
        # Loaded and run by SHA in one write, never EVAL: the documented ACL user has
        # no ``eval`` (docs/deployment.md), and an end on a promoted replica was refused.
        loaded = ("SCRIPT", "LOAD", source)
        load, *replies = await _exchange(connection, [loaded, evalsha, *tail], asking)
        if isinstance(load, ResponseError):
            raise load
    reply = replies[0]
    if isinstance(reply, ResponseError):
        raise reply
    if ended is not None:
        if not ended(reply):
            return reply, None
        replies = [reply, *await _exchange(connection, waiting, asking)]
    for answer in replies[1:]:
        if isinstance(answer, ResponseError):
            raise FenceFailed(f"the end ran, but its fence or WAIT failed: {answer}") from answer
    return reply, int(replies[-1])


class FenceFailed(ResponseError):
    """The fence or ``WAIT`` after an end that ran was refused: 503, never followed."""


_KEYED = frozenset(("EVALSHA", "SET"))  # the commands ASKING must precede


async def _exchange(
    connection: Any, commands: list[tuple[Any, ...]], asking: bool = False
) -> list[Any]:
    """Send ``commands`` in one write and read every reply (an error reply as its
    exception); with ``asking``, each keyed command right after an ``ASKING``, whose
    replies are left out (one refused is raised). Any other failure disconnects the
    connection: a reply may still be on its way, and the next user of the connection
    must not read it."""
    sent: list[tuple[Any, ...]] = []
    for command in commands:
        if asking and command[0] in _KEYED:
            sent.append(("ASKING",))
        sent.append(command)
    try:
        await connection.send_packed_command(connection.pack_commands(sent))
        replies = []
        for _ in sent:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:
                replies.append(error)
    except BaseException:
        await connection.disconnect()
        raise
    answers = []
    for command, reply in zip(sent, replies, strict=True):
        if command != ("ASKING",):
            answers.append(reply)
        elif isinstance(reply, ResponseError):
            raise reply
    return answers
