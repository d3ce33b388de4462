"""Deadlines for Redis scripts in Redis' own clock: the fence against late effects.

A script the client gave up on (its reply did not come within the socket timeout, so
the request was answered 503) must never take effect later, when a stalled Redis
(``DEBUG SLEEP``, ``CLIENT PAUSE``, a stopped process) works through its input buffer.
Every script therefore carries a deadline, and ``_prelude.lua`` compares it with
Redis' ``TIME`` before it changes anything: a script that starts too late is refused
unchanged.

The deadline is in Redis' clock, so app hosts need no synchronized clocks: the offset
between this process's *monotonic* clock and Redis' is measured with ``TIME`` (its
lower bound: the round trip counts against the budget, never for it) and measured
again every ``REMEASURE_EVERY`` seconds and after any failure (a failover may bring
another server, with another clock). The local side is monotonic because a wall clock
can be stepped between measurements (NTP, a hand-set clock): stepped back, every
deadline would lie in Redis' past (every script refused ``LATE``, 503) until the next
measurement; stepped forward, deadlines would lie beyond the budget, and a script could
start after its caller was told "failed" (the fault suite's ``clock_step``;
``test_deadline.py``).

Because the offset is a lower bound, a deadline computed at local time *t* has passed
in Redis' clock by local time *t + budget* (``test_deadline.py``). The script
connection (``multiplex.py``) relies on it: it tells a caller "failed" only at its
timeout, more than ``budget`` after the send, so no script can start after its
caller was told (issue 22, item 1). The 1 s between the two covers the script's run,
its reply's way back and the drift of either clock between measurements; a clock
*stepped* backwards on the Redis host is not covered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["REMEASURE_EVERY", "ScriptDeadline"]

REMEASURE_EVERY: Final = 30.0


class ScriptDeadline:
    """Computes script deadlines (Redis ms) from the local clock and a measured offset.

    Args:
        budget: seconds a script may take to start after it was sent; less than the
            client's socket timeout, so a script that starts in time has its reply
            read before the client gives up.
        redis_time: reads Redis ``TIME`` as ``(seconds, microseconds)``.
        clock: this process's monotonic clock in seconds (a wall clock can be stepped).
    """

    def __init__(
        self,
        budget: float,
        redis_time: Callable[[], Awaitable[tuple[int, int]]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self._redis_time = redis_time
        self._clock = clock
        self._offset_ms: int | None = None
        self._measured_at = 0.0

    def forget(self) -> None:
        """Measure again before the next deadline (after a failure or a failover)."""
        self._offset_ms = None

    async def _measure(self) -> int:
        before = self._clock()
        seconds, micros = await self._redis_time()
        after = self._clock()
        redis_ms = int(seconds) * 1000 + int(micros) // 1000
        # The lower bound of the offset: Redis' ms rounded down, ours up (a truncated
        # local ms made deadlines up to 1 ms late: test_deadline.py's stepped clock).
        self._offset_ms = redis_ms - math.ceil(after * 1000)
        self._measured_at = before
        return self._offset_ms

    def current(self) -> int | None:
        """The deadline of a script sent now, or ``None`` when the offset must be
        measured first (:meth:`next`): the hot path takes no await for it."""
        now = self._clock()
        offset = self._offset_ms
        if offset is None or now - self._measured_at > REMEASURE_EVERY:
            return None
        return int(now * 1000) + offset + int(self.budget * 1000)

    async def next(self) -> int:
        """The deadline, in Redis' clock (ms), of a script sent now."""
        now = self._clock()
        offset = self._offset_ms
        if offset is None or now - self._measured_at > REMEASURE_EVERY:
            offset = await self._measure()
            now = self._clock()
        return int(now * 1000) + offset + int(self.budget * 1000)
