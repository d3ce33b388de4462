"""Script deadlines in Redis' clock (backends/deadline.py): measured once, then computed
without a round trip until the offset is due again or forgotten."""

from __future__ import annotations

from sessionwatch.backends.deadline import REMEASURE_EVERY, ScriptDeadline


class _Clocks:
    def __init__(self) -> None:
        self.local = 1_000.0
        self.redis_ahead_ms = 250  # Redis' clock runs 250 ms ahead of ours
        self.reads = 0

    def clock(self) -> float:
        return self.local

    async def redis_time(self) -> tuple[int, int]:
        self.reads += 1
        ms = int(self.local * 1000) + self.redis_ahead_ms
        return ms // 1000, (ms % 1000) * 1000


async def test_the_offset_is_measured_once_then_used_without_a_round_trip() -> None:
    clocks = _Clocks()
    deadline = ScriptDeadline(4.0, clocks.redis_time, clock=clocks.clock)
    assert deadline.current() is None  # nothing measured yet: the caller must await next()
    assert await deadline.next() == 1_000_000 + 250 + 4_000
    clocks.local += 1.5
    assert deadline.current() == 1_001_500 + 250 + 4_000
    assert await deadline.next() == deadline.current()
    assert clocks.reads == 1


async def test_a_stale_or_forgotten_offset_is_measured_again() -> None:
    clocks = _Clocks()
    deadline = ScriptDeadline(4.0, clocks.redis_time, clock=clocks.clock)
    await deadline.next()
    clocks.local += REMEASURE_EVERY + 0.1
    assert deadline.current() is None
    clocks.redis_ahead_ms = -100  # a failover brought a server with another clock
    assert await deadline.next() == int(clocks.local * 1000) - 100 + 4_000
    deadline.forget()
    assert deadline.current() is None
    assert clocks.reads == 2
