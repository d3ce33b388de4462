"""Hooks in one process (memory://): each record's hooks called once, a raising hook
counted and its record acknowledged, a blocking plain function run off the event loop,
an unknown event refused (docs/audit.md)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from backends.test_backend_contract import NOW, make_record
from sessionwatch.backends.base import Timeouts
from sessionwatch.backends.memory import MemoryBackend
from sessionwatch.core.exceptions import ConfigurationError
from sessionwatch.core.trail import AuditRecord
from sessionwatch.engine.hooks import Hooks

TIMEOUTS = Timeouts(idle=3_600_000, absolute=7_200_000, refresh=60_000, tombstone=60_000)


async def test_hooks_are_called_once_and_failures_counted() -> None:
    backend = MemoryBackend()
    hooks = Hooks(backend, poll=0.01)
    seen: list[AuditRecord] = []
    threads: set[int] = set()

    @hooks.on("signed_in")
    async def remember(record: AuditRecord) -> None:
        seen.append(record)

    @hooks.on("signed_in")
    def blocking(record: AuditRecord) -> None:
        threads.add(threading.get_ident())
        time.sleep(0.2)  # in a thread: the loop goes on

    @hooks.on("logged_out")
    def broken(record: AuditRecord) -> None:
        raise RuntimeError("the hook's own bug")

    record = make_record(user="ana")
    await backend.login(None, record, limit=None, deny=False, timeouts=TIMEOUTS, now=NOW)
    await backend.end(record.id, "logged_out", timeouts=TIMEOUTS, now=NOW + 1)
    await hooks.start()
    try:
        ticks = 0
        while hooks.delivered + hooks.failed < 3:
            await asyncio.sleep(0.01)
            ticks += 1  # the loop kept turning while the plain hook slept
        assert ticks >= 10
        await asyncio.sleep(0.1)
        assert [r.event for r in seen] == ["signed_in"]
        assert (hooks.delivered, hooks.failed) == (2, 1)
        assert threading.get_ident() not in threads
        assert await backend.audit_reclaim("hooks", "other", idle_ms=0) == []  # all acked
    finally:
        await hooks.stop()


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Hooks().on("claimed")
