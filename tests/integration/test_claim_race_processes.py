"""Concurrent claims from several OS processes on one Redis: exactly one winner per round."""

from __future__ import annotations

import multiprocessing

import pytest

from sessionwatch.backends.base import SessionRecord
from sessionwatch.backends.redis import RedisBackend
from sessionwatch.core.tabs import make_tab_token, new_tab_key, tab_status, verify_tab_token
from sessionwatch.core.tokens import new_session_id, public_id
from support import claim_worker

ROUNDS = 200
PROCESSES = 2
PER_PROCESS = 25  # 50 concurrent claims per round


@pytest.mark.multiprocess
async def test_claims_from_two_processes_have_exactly_one_valid_token_per_round(
    redis_url: str, key_prefix: str
) -> None:
    backend = RedisBackend(redis_url, key_prefix=key_prefix)
    await backend.connect()
    now = 1_800_000_000_000
    record = SessionRecord(
        id=public_id(new_session_id()),
        user=None,
        created=now,
        seen=now,
        absolute_expiry=now + 43_200_000,
        gen=0,
        tab_key=new_tab_key(),
        device={},
    )
    await backend.create(record, timeouts=claim_worker.TIMEOUTS, now=now)

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=claim_worker.run,
            args=(redis_url, key_prefix, record.id, ROUNDS, PER_PROCESS, barrier, results),
        )
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        highest = 0
        for round_number in range(ROUNDS):
            barrier.wait(timeout=60)
            gens = sorted(g for _ in range(PROCESSES) for g in results.get(timeout=60))
            assert gens == list(range(highest + 1, highest + 1 + PROCESSES * PER_PROCESS)), (
                round_number
            )
            highest = gens[-1]
            stored = (
                await backend.load(record.id, timeouts=claim_worker.TIMEOUTS, now=now, touch=False)
            ).record
            assert stored is not None and stored.gen == highest
            valid = [
                g
                for g in gens
                if tab_status(
                    verify_tab_token(make_tab_token(stored.tab_key, g), stored.tab_key),
                    stored.gen,
                    exclusive=True,
                )
                == "active"
            ]
            assert valid == [highest]
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
        await backend.disconnect()
    assert all(worker.exitcode == 0 for worker in workers)
    print(
        f"\n{ROUNDS} rounds x {PROCESSES * PER_PROCESS} claims from {PROCESSES} processes: one winner each, final gen {highest}"
    )
