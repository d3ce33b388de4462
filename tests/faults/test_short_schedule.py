"""The fault suite's short schedule in the default test run: real hosts (network
namespaces when root, else loopback), Redis with a replica and 3 Sentinels, the
workload, and faults that cover the three defects of issue 13 and issue 22's stall
pattern (``stall_claims``); every invariant holds.
The soak is ``python -m tests.faults --minutes 30``."""

from __future__ import annotations

import pytest

from .runner import SHORT_SCHEDULE, run

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]


async def test_short_fault_schedule_keeps_every_invariant() -> None:
    lines: list[str] = []
    report = await run(say=lines.append)
    text = "\n".join([*lines, report.table(), *report.examples])
    print(text)
    expected = len(SHORT_SCHEDULE) - (1 if report.mode == "loopback" else 0)  # no partition
    assert sum(row.injected for row in report.rows.values()) == expected, text
    assert sum(row.ops for row in report.rows.values()) > 300, text  # the workload ran
    assert sum(row.told for row in report.rows.values()) > 30, text  # and tabs were told
    assert report.violations == 0, text
