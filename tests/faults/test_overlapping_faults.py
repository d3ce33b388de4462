"""Overlapping faults in the default test run (issue 23): a worker killed during a
Redis stall; one host's wall clock stepped forward and back under issue 22's stall
pattern; a slow, lossy link on one host while it is cut off from Redis and the pub/sub
connections are killed. Every invariant holds, as for faults one at a time. The soak
is ``python -m tests.faults --minutes 30 --overlap``."""

from __future__ import annotations

import pytest

from .faults import SHORT_OVERLAPS
from .runner import run

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(300)]


async def test_overlapping_faults_keep_every_invariant() -> None:
    lines: list[str] = []
    report = await run(overlap=True, say=lines.append)
    text = "\n".join([*lines, report.table(), *report.examples])
    print(text)
    assert [row.fault for row in report.rows.values()][1:] == [
        "+".join(names) for names in SHORT_OVERLAPS
    ], text
    assert sum(row.injected for row in report.rows.values()) == len(SHORT_OVERLAPS), text
    assert sum(row.ops for row in report.rows.values()) > 200, text  # the workload ran
    assert sum(row.told for row in report.rows.values()) > 20, text  # and tabs were told
    if report.mode == "netns":  # the slow link and the partition need namespaces
        assert not any(
            "not injected" in note for row in report.rows.values() for note in row.notes
        ), text
    assert report.violations == 0, text
