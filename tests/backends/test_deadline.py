"""Script deadlines in Redis' clock (backends/deadline.py): measured once, then computed
without a round trip until the offset is due again or forgotten."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sessionwatch.backends.deadline import REMEASURE_EVERY, ScriptDeadline

CLOCK_SHIM = Path(__file__).resolve().parents[1] / "support" / "clockshim"


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
    expected = int(clocks.local * 1000) - 100 + 4_000
    assert await deadline.next() in (expected - 1, expected)  # the offset rounds down
    deadline.forget()
    assert deadline.current() is None
    assert clocks.reads == 2


class _SlowClocks(_Clocks):
    """A measuring round trip of ``trip`` seconds, Redis reading its clock at
    ``reads_at`` (0: at once, 1: just before the answer leaves)."""

    def __init__(self, ahead_ms: int, trip: float, reads_at: float) -> None:
        super().__init__()
        self.redis_ahead_ms, self.trip, self.reads_at = ahead_ms, trip, reads_at

    async def redis_time(self) -> tuple[int, int]:
        self.local += self.trip * self.reads_at
        answer = await super().redis_time()
        self.local += self.trip * (1 - self.reads_at)
        return answer


async def test_a_deadline_has_passed_in_redis_clock_once_the_budget_has_locally() -> None:
    """What the script connection relies on (multiplex.py, issue 22 item 1): a caller
    told "failed" at its timeout (> budget after the send, in the local clock) is told
    after its script's deadline has passed in Redis' clock, whatever the offset and
    however long the measuring round trip (the offset taken is its lower bound)."""
    for ahead_ms in (-86_400_000, -250, 0, 250, 3_600_000):
        for trip, reads_at in ((0.0, 0.0), (0.4, 0.0), (0.4, 0.5), (0.4, 1.0)):
            clocks = _SlowClocks(ahead_ms, trip, reads_at)
            deadline = ScriptDeadline(4.0, clocks.redis_time, clock=clocks.clock)
            await deadline.next()
            clocks.local += 7.25  # a script sent later, with the offset measured then
            sent = clocks.local
            script_deadline = deadline.current()
            assert script_deadline is not None
            redis_ms_when_budget_spent = int((sent + deadline.budget) * 1000) + ahead_ms
            assert script_deadline <= redis_ms_when_budget_spent, (ahead_ms, trip, reads_at)


STEPPED = """
import asyncio, os, sys, time
import redis.asyncio as aioredis
from sessionwatch.backends.deadline import ScriptDeadline

async def main() -> None:
    client = aioredis.Redis.from_url(sys.argv[1])
    deadline = ScriptDeadline(4.0, client.time)  # its own default clock, as the backend's
    await deadline.next()
    for step in sys.argv[2:]:
        with open(os.environ["FAULTS_CLOCK_OFFSET_FILE"], "w") as file:
            file.write(step)
        await asyncio.sleep(0.2)  # the shim reads the file every 50 ms
        computed = deadline.current() or await deadline.next()  # as the backend does
        seconds, micros = await client.time()
        print(computed - (seconds * 1000 + micros // 1000))
    await client.aclose()

asyncio.run(main())
"""


def test_a_stepped_wall_clock_moves_no_deadline(redis_url: str, tmp_path: Path) -> None:
    """A host's wall clock stepped after the offset was measured (NTP, a hand-set clock:
    the fault suite's ``clock_step``) must not move script deadlines: stepped back, every
    script would be refused ``LATE`` (503) until the offset is measured again; stepped
    forward, a script could start after its caller was told "failed" (issue 22's fence
    undone). The deadline follows the monotonic clock, which no step moves. Before: 30 s
    back gave deadlines ~26 s in Redis' past, 20 s forward ~24 s ahead."""
    offset = tmp_path / "offset"
    offset.write_text("0")
    env = {
        **os.environ,
        "FAULTS_CLOCK_OFFSET_FILE": str(offset),
        "PYTHONPATH": os.pathsep.join([str(CLOCK_SHIM), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", STEPPED, redis_url, "-30", "20", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ahead = [int(line) for line in done.stdout.split()]
    assert len(ahead) == 3, done.stderr
    for value in ahead:  # the budget (4 s) ahead of Redis' now, less the time it took
        assert 3_000 <= value <= 4_000, ahead
