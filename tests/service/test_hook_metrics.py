"""``/metrics`` counts hook calls by outcome and shows their lag (docs/audit.md); the
export's ``--since`` skips older records."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from quart import Quart

from sessionwatch import AuditRecord
from sessionwatch.backends.memory import MemoryBackend
from sessionwatch.service.audit_cli import export
from sessionwatch.service.ops import register_ops
from support.app_factory import make_app
from support.live import WAIT, watch_of


async def _metric(app: Quart, pattern: str) -> float:
    text = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    found = re.search(pattern, text, re.M)
    assert found, text
    return float(found.group(1))


async def test_hook_calls_and_failures_are_counted() -> None:
    app = make_app("memory://")
    watch = watch_of(app)
    watch.hooks.poll = 0.01

    @watch.on("signed_in")
    async def fine(record: AuditRecord) -> None:
        pass

    @watch.on("signed_in")
    async def broken(record: AuditRecord) -> None:
        raise RuntimeError("the hook's own bug")

    register_ops(app, watch, metrics=True)
    async with app.test_app():
        client = app.test_client()
        for user in ("ana", "bo"):
            await client.post("/login", json={"user": user}, headers={"Origin": "http://localhost"})

        async def counted() -> None:
            while watch.hooks.delivered + watch.hooks.failed < 4:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        await asyncio.wait_for(counted(), WAIT)
        ok = r'^sessionwatch_hook_calls_total\{outcome="ok"\} (\S+)$'
        failed = r'^sessionwatch_hook_calls_total\{outcome="failed"\} (\S+)$'
        assert await _metric(app, ok) == 2 and await _metric(app, failed) == 2
        assert await _metric(app, r"^sessionwatch_hook_lag_seconds (\S+)$") >= 0


async def test_export_since_skips_older_records(tmp_path: Path) -> None:
    backend = MemoryBackend()
    for i in range(4):
        backend.trail.append("expired", f"s{i}", None, {}, 1_800_000_000_000 + i, "system")
    out = tmp_path / "since.jsonl"
    await export(backend, since="1800000000002", to=str(out), group="export", follow=False)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["session"] for line in lines] == ["s2", "s3"]
