"""The audit trail and its hooks across two real server processes (uvicorn and
hypercorn) on one Redis and on the 6-node Redis Cluster (docs/audit.md).

A random workload of claims (takeovers), sign-ins (evicting at the limit) and logouts
runs through both processes; every acknowledged change must have exactly one record,
computed from the answers alone (a login's answer lists what it evicted), and nothing
else may be recorded.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.test_live_push_processes import serving
from sessionwatch.backends import backend_from_url
from sessionwatch.backends.base import Backend
from sessionwatch.core.trail import AuditRecord
from support.push_processes import AppProcess, HttpBrowser, LiveTab

pytestmark = pytest.mark.multiprocess

USERS = ("ana", "bo", "cy", "di")
POLICY = {"sessions_per_user": 2, "on_limit": "evict_oldest"}
# Every browser here is one address: the sign-in rates are not under test.
UNLIMITED = {
    "max_logins_per_user_per_second": 100_000,
    "max_logins_per_address_per_second": 100_000,
}
END_EVENTS = {"evicted", "logged_out", "revoked", "expired"}


@pytest.fixture(
    params=["redis", "cluster"],
    name="trail_url",
)
def _trail_url(request: pytest.FixtureRequest) -> str:
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(name="reader")
async def _reader(trail_url: str, key_prefix: str) -> AsyncIterator[Backend]:
    backend = backend_from_url(trail_url, key_prefix=key_prefix)
    await backend.connect()
    try:
        yield backend
    finally:
        await backend.disconnect()


async def whole_trail(backend: Backend) -> list[AuditRecord]:
    records, _ = await backend.audit_after({}, 100_000)
    return records


class Expected:
    """What the acknowledged answers say the trail must hold."""

    def __init__(self) -> None:
        self.superseded: collections.Counter[str] = collections.Counter()  # session -> claims
        self.signed_in = 0
        self.evicted: set[str] = set()
        self.logouts: list[str] = []  # the session each acknowledged logout was of
        self.unacknowledged = 0  # requests that got no answer (their worker was killed)


async def browse(
    browser: HttpBrowser, processes: list[AppProcess], ops: int, expected: Expected, seed: int
) -> None:
    """``ops`` random operations of one browser, each through a random live process."""
    chance = random.Random(seed)
    session: str | None = None  # the browser's session as its last claim named it

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        live = [p for p in processes if p.process is not None]
        try:
            return await browser.request(method, chance.choice(live).url + path, body)
        except (OSError, ValueError):
            expected.unacknowledged += 1
            return None

    async def claim() -> None:
        nonlocal session
        answer = await call("POST", "/_sessionwatch/claim", {})
        if answer is not None and answer[0] == 200:
            session = answer[1]["session"]
            expected.superseded[session] += 1
        else:
            session = None

    for _ in range(ops):
        op = chance.choice(("claim", "claim", "login", "logout"))
        if op == "claim" or session is None:
            await claim()
        elif op == "login":
            answer = await call("POST", "/login", {"user": chance.choice(USERS)})
            if answer is not None and answer[0] == 200:
                expected.signed_in += 1
                expected.evicted.update(answer[1]["evicted"])
            await claim()  # learn the new session's public id
        else:
            answer = await call("POST", "/logout", {})
            if answer is not None and answer[0] == 200:
                expected.logouts.append(session)
            session = None


def check_trail(records: list[AuditRecord], expected: Expected) -> None:
    """Exactly the acknowledged changes (when every request was answered)."""
    assert len({r.id for r in records}) == len(records), "a record id appears twice"
    by_event = collections.defaultdict(list)
    for record in records:
        by_event[record.event].append(record)
    assert set(by_event) <= {"superseded", "signed_in", "evicted", "logged_out"}
    ends = collections.Counter(r.session for r in records if r.event in END_EVENTS)
    assert max(ends.values(), default=0) <= 1, "a session ended twice"
    assert collections.Counter(r.session for r in by_event["superseded"]) == expected.superseded
    assert len(by_event["signed_in"]) == expected.signed_in
    assert {r.session for r in by_event["evicted"]} == expected.evicted
    assert len(by_event["evicted"]) == len(expected.evicted)
    logged_out = {s for s in expected.logouts if s not in expected.evicted}
    assert sorted(r.session for r in by_event["logged_out"]) == sorted(logged_out)
    for record in records:
        assert record.actor and record.device and record.at
        assert (record.event == "evicted") == record.actor.startswith("session:")


async def run_workload(processes: list[AppProcess], browsers: int, ops: int) -> Expected:
    expected = Expected()
    await asyncio.wait_for(
        asyncio.gather(
            *(browse(HttpBrowser(), processes, ops, expected, seed) for seed in range(browsers))
        ),
        120,
    )
    return expected


@pytest.mark.parametrize(
    "browsers, ops", [(8, 30), pytest.param(20, 50, marks=pytest.mark.cluster_extended)]
)
async def test_exactly_one_record_per_acknowledged_change(
    trail_url: str, key_prefix: str, reader: Backend, browsers: int, ops: int
) -> None:
    with serving(trail_url, key_prefix, policy=POLICY, **UNLIMITED) as processes:
        expected = await run_workload(processes, browsers, ops)
    assert expected.unacknowledged == 0
    records = await whole_trail(reader)
    print(f"{browsers * ops} operations: {dict(collections.Counter(r.event for r in records))}")
    check_trail(records, expected)


async def test_records_survive_a_worker_sigkill(
    redis_url: str, key_prefix: str, trail_url: str, reader: Backend
) -> None:
    if trail_url != redis_url:
        pytest.skip("one topology is enough: the record is in the script's own step")
    with serving(redis_url, key_prefix, policy=POLICY, **UNLIMITED) as processes:
        work = asyncio.create_task(run_workload(processes, 8, 30))
        await asyncio.sleep(1.0)
        victim = processes[1]
        assert victim.process is not None
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        victim.process = None  # the workload goes on through the survivor
        expected = await work
    records = await whole_trail(reader)
    assert len({r.id for r in records}) == len(records)
    ends = collections.Counter(r.session for r in records if r.event in END_EVENTS)
    assert max(ends.values(), default=0) <= 1
    claimed = collections.Counter(r.session for r in records if r.event == "superseded")
    assert not expected.superseded - claimed, "an acknowledged takeover has no record"
    signed = sum(1 for r in records if r.event == "signed_in")
    assert expected.signed_in <= signed <= expected.signed_in + expected.unacknowledged
    assert expected.evicted <= {r.session for r in records if r.event == "evicted"}


async def test_logins_at_the_limit_record_each_outcome_once(
    trail_url: str, key_prefix: str, reader: Backend
) -> None:
    policy = {"sessions_per_user": 1, "on_limit": "deny"}
    with serving(trail_url, key_prefix, policy=policy, **UNLIMITED) as processes:
        browsers = [HttpBrowser() for _ in range(20)]
        answers = await asyncio.wait_for(
            asyncio.gather(
                *(
                    b.request("POST", processes[i % 2].url + "/login", {"user": "race"})
                    for i, b in enumerate(browsers)
                )
            ),
            60,
        )
    statuses = collections.Counter(status for status, _ in answers)
    assert statuses[200] == 1 and statuses[403] == 19, statuses
    records = await whole_trail(reader)
    assert collections.Counter(r.event for r in records) == {"signed_in": 1, "limit_denied": 19}
    assert {r.reason for r in records if r.event == "limit_denied"} == {"session_limit"}


# -- hooks ---------------------------------------------------------------------------------


def hook_lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line]


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.fixture(name="hook_log")
def _hook_log(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "hooks.jsonl"
    old = os.environ.get("PUSH_APP_HOOK_LOG")
    os.environ["PUSH_APP_HOOK_LOG"] = str(log)  # the processes inherit it
    try:
        yield log
    finally:
        if old is None:
            os.environ.pop("PUSH_APP_HOOK_LOG", None)
        else:
            os.environ["PUSH_APP_HOOK_LOG"] = old
        os.environ.pop("PUSH_APP_HOOK_SLEEP", None)


async def test_each_hook_runs_once_per_event_across_two_workers(
    trail_url: str, key_prefix: str, reader: Backend, hook_log: Path
) -> None:
    with serving(trail_url, key_prefix, policy=POLICY, **UNLIMITED) as processes:
        await run_workload(processes, 6, 20)
        records = await whole_trail(reader)
        ids = {r.id for r in records}
        await wait_for(lambda: {line["id"] for line in hook_lines(hook_log)} >= ids)
        await asyncio.sleep(1.0)  # a duplicate would come now
        lines = hook_lines(hook_log)
    calls = collections.Counter(line["id"] for line in lines)
    assert set(calls) == ids and max(calls.values()) == 1
    assert {line["event"] for line in lines} == {r.event for r in records}
    # Which worker runs which record is the consumer group's choice (under load one
    # worker may read them all): the guarantee is once per record id, counted above.


async def test_a_worker_killed_before_acknowledging_is_relieved(
    redis_url: str, key_prefix: str, trail_url: str, hook_log: Path
) -> None:
    if trail_url != redis_url:
        pytest.skip("the redelivery is the consumer group's: one topology suffices")
    hang = Path(str(hook_log) + ".hang")
    await asyncio.to_thread(hang.touch)  # the first hook call never returns
    options = {"policy": POLICY, "hook_reclaim_after": 1.0}
    with serving(redis_url, key_prefix, **options) as processes:
        await HttpBrowser().request("POST", processes[0].url + "/login", {"user": "ana"})
        await wait_for(lambda: len(hook_lines(hook_log)) == 1)
        first = hook_lines(hook_log)[0]
        victim = next(
            p for p in processes if p.process is not None and p.process.pid == first["pid"]
        )
        os.killpg(victim.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        victim.process.wait()  # type: ignore[union-attr]
        victim.process = None
        await wait_for(lambda: len(hook_lines(hook_log)) >= 2)
        second = hook_lines(hook_log)[1]
    assert second["id"] == first["id"] and second["pid"] != first["pid"]  # same id: de-dup


async def test_a_slow_hook_does_not_delay_a_push(
    redis_url: str, key_prefix: str, trail_url: str, hook_log: Path
) -> None:
    if trail_url != redis_url:
        pytest.skip("hooks run beside the hub on every topology alike")
    os.environ["PUSH_APP_HOOK_SLEEP"] = "5"
    with serving(redis_url, key_prefix) as processes:
        browser = HttpBrowser()
        latencies = []
        # First a takeover whose hooks are seen running: from then on the blocking hook
        # holds its thread 5 s per record while the takeovers below are timed.
        await browser.claim(processes[0])
        await browser.claim(processes[1])
        await wait_for(lambda: hook_lines(hook_log))
        for i in range(6):
            token = (await browser.claim(processes[0]))["tab"]
            tab = LiveTab(browser, processes[i % 2], token)
            tab.start()
            try:
                await tab.wait_until(lambda t: t.ready > 0, 10)
                started = time.monotonic()
                gen = (await browser.claim(processes[(i + 1) % 2]))["gen"]  # a takeover
                await tab.wait_until(lambda t, gen=gen: t.told >= gen, 10)
                latencies.append(time.monotonic() - started)
            finally:
                await tab.stop()
        assert hook_lines(hook_log), "the hooks ran meanwhile"
    print(f"claim -> push with a 5 s blocking hook: max {max(latencies) * 1000:.0f} ms")
    assert max(latencies) < 2.5  # every hook call takes 5 s: a wait for it would show
