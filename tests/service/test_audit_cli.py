"""``sessionwatch audit tail`` and ``sessionwatch audit export`` against a real Redis
(docs/audit.md): the export killed and restarted during a workload loses and repeats
nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessionwatch.backends.base import SessionRecord, Timeouts
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.tabs import new_tab_key
from sessionwatch.core.tokens import new_session_id, public_id, user_tag
from sessionwatch.service.audit_cli import tail

TIMEOUTS = Timeouts(idle=3_600_000, absolute=7_200_000, refresh=60_000, tombstone=60_000)


@pytest.fixture(name="redis_backend")
async def _redis_backend(redis_url: str, key_prefix: str) -> AsyncIterator[RedisBackend]:
    backend = RedisBackend(redis_url, key_prefix=key_prefix)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


async def sign_in(backend: RedisBackend, user: str, now: int) -> str:
    record = SessionRecord(
        id=public_id(new_session_id(user_tag(user))),
        user=user,
        created=now,
        seen=now,
        absolute_expiry=now + TIMEOUTS.absolute,
        gen=1,
        tab_key=new_tab_key(),
        device={"browser": "Firefox 121", "os": "Linux", "place": "192.0.2.0/24"},
    )
    await backend.login(None, record, limit=2, deny=False, timeouts=TIMEOUTS, now=now)
    return record.id


async def test_tail_shows_the_newest_records_of_a_user(
    redis_backend: RedisBackend, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = 1_800_000_000_000
    for i, user in enumerate(["ana", "bo", "ana"]):
        await sign_in(redis_backend, user, now + i)
    reader = RedisBackend(redis_backend.url, key_prefix=key_prefix)
    await tail(reader, user="ana", follow=False, as_json=False, count=20)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(" signed_in user=ana " in line for line in lines)
    assert "NEW-DEVICE NEW-PLACE" in lines[0] and "NEW-" not in lines[1]
    reader = RedisBackend(redis_backend.url, key_prefix=key_prefix)
    await tail(reader, user=None, follow=False, as_json=True, count=1)
    (last,) = capsys.readouterr().out.splitlines()
    assert json.loads(last)["user"] == "ana" and json.loads(last)["event"] == "signed_in"


def exporter(
    redis_url: str, key_prefix: str, out: Path, *, follow: bool
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SESSIONWATCH_KEY_PREFIX": key_prefix, "REDIS_URL": redis_url}
    command = [sys.executable, "-m", "sessionwatch", "audit", "export", "--to", str(out)]
    return subprocess.Popen(
        command + (["--follow"] if follow else []), env=env, start_new_session=True
    )


async def test_an_export_killed_five_times_loses_and_repeats_nothing(
    redis_backend: RedisBackend, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "trail.jsonl"
    chance = random.Random(25)
    stop = asyncio.Event()

    async def workload() -> None:
        now = 1_800_000_000_000
        while not stop.is_set():
            now += 1
            session = await sign_in(redis_backend, chance.choice(["ana", "bo", "cy"]), now)
            if chance.random() < 0.3:
                await redis_backend.end(session, "logged_out", timeouts=TIMEOUTS, now=now)
            await asyncio.sleep(0.002)

    writer = asyncio.create_task(workload())
    try:
        for _ in range(5):
            process = exporter(redis_url, key_prefix, out, follow=True)
            await asyncio.sleep(chance.uniform(1.5, 3.0))  # started, then exporting
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
    finally:
        stop.set()
        await writer
    final = exporter(redis_url, key_prefix, out, follow=False)  # drains what is left
    assert await asyncio.to_thread(final.wait, 60) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    exported = [line["id"] for line in lines]
    trail, _ = await redis_backend.audit_after({}, 1_000_000)
    assert len(trail) > 100  # the exporter had work while it was killed
    assert len(exported) == len(set(exported)), "a record was exported twice"
    assert set(exported) == {record.id for record in trail}
    assert lines[0] == trail[0].to_json()
