"""The pipelined script connection (backends/multiplex.py): replies reach their own
callers in order under concurrency, cancellation and reconnection, and every failure
says whether the script may have run (NotSent: it did not)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessionwatch.backends.multiplex import (
    Multiplexer,
    NotSent,
    ScriptError,
    _Link,
    _sha,
    pack,
)

ECHO = "return {KEYS[1], ARGV[1]}"
WRITE = "redis.call('SET', KEYS[1], ARGV[1]) return ARGV[1]"


@pytest.fixture(name="client")
async def _client(redis_url: str) -> Any:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(name="mux")
async def _mux(client: aioredis.Redis) -> Any:
    mux = Multiplexer(client.connection_pool, timeout=5.0)
    yield mux
    await mux.aclose()


async def test_concurrent_callers_get_their_own_replies(mux: Multiplexer) -> None:
    replies = await asyncio.gather(*(mux.evalsha(ECHO, [f"k{i}"], [i]) for i in range(500)))
    assert replies == [[f"k{i}", str(i)] for i in range(500)]


async def test_calls_of_one_iteration_share_one_connection(
    mux: Multiplexer, client: aioredis.Redis
) -> None:
    before = int((await client.info("clients"))["connected_clients"])
    await asyncio.gather(*(mux.evalsha(ECHO, ["k"], [i]) for i in range(200)))
    after = int((await client.info("clients"))["connected_clients"])
    assert after - before <= 1


async def test_a_flushed_script_cache_is_answered_with_the_source(
    mux: Multiplexer, client: aioredis.Redis
) -> None:
    assert await mux.evalsha(ECHO, ["a"], [1]) == ["a", "1"]
    await client.script_flush()
    replies = await asyncio.gather(*(mux.evalsha(ECHO, ["a"], [i]) for i in range(20)))
    assert replies == [["a", str(i)] for i in range(20)]


async def test_a_flushed_script_cache_needs_no_eval_permission(
    client: aioredis.Redis, redis_url: str
) -> None:
    """The ACL user of deployment.md may run ``evalsha`` and ``script|load``, not
    ``eval``: a flushed cache (a promoted replica has none) was answered with ``EVAL``,
    refused ``NOPERM`` (a 503 on every call until someone loaded the scripts)."""
    user, password = "mux-noscript", "mux-password-0123456789"
    await client.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        commands=["+evalsha", "+script|load"],
    )
    limited = aioredis.Redis.from_url(
        redis_url, username=user, password=password, decode_responses=True
    )
    mux = Multiplexer(limited.connection_pool, timeout=5.0)
    try:
        await client.script_flush()
        assert await mux.evalsha(ECHO, ["a"], [1]) == ["a", "1"]
    finally:
        await mux.aclose()
        await limited.aclose()
        await client.acl_deluser(user)


async def test_a_script_error_fails_only_its_caller(mux: Multiplexer) -> None:
    bad = mux.evalsha("return redis.error_reply('LATE script started after its deadline')", [], [])
    good = mux.evalsha(ECHO, ["k"], [7])
    results = await asyncio.gather(bad, good, return_exceptions=True)
    assert isinstance(results[0], ScriptError) and "LATE" in str(results[0])
    assert results[1] == ["k", "7"]


async def test_a_cancelled_caller_does_not_shift_the_replies(mux: Multiplexer) -> None:
    slow = asyncio.ensure_future(mux.evalsha(ECHO, ["first"], [1]))
    await asyncio.sleep(0)
    slow.cancel()
    assert await mux.evalsha(ECHO, ["second"], [2]) == ["second", "2"]
    assert await mux.evalsha(ECHO, ["third"], [3]) == ["third", "3"]


async def test_a_killed_connection_is_replaced(mux: Multiplexer, client: aioredis.Redis) -> None:
    assert await mux.evalsha(ECHO, ["k"], [1]) == ["k", "1"]
    await client.client_kill_filter(_type="normal", skipme=True)
    for _ in range(50):  # the close reaches the protocol within a few iterations
        await asyncio.sleep(0.01)
        if mux._link is None:
            break
    assert await mux.evalsha(ECHO, ["k"], [2]) == ["k", "2"]


async def test_no_reply_in_time_fails_every_waiter_and_recovers(
    client: aioredis.Redis, redis_url: str
) -> None:
    mux = Multiplexer(client.connection_pool, timeout=0.3)
    other = aioredis.Redis.from_url(redis_url)
    try:
        await mux.evalsha(ECHO, ["k"], [0])
        await other.client_pause(800, all=True)  # Redis answers nobody for 0.8 s
        results = await asyncio.gather(
            *(mux.evalsha(WRITE, ["mux:t"], [i]) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        await asyncio.sleep(0.6)
        assert await mux.evalsha(ECHO, ["k"], [1]) == ["k", "1"]
    finally:
        await other.aclose()
        await mux.aclose()


async def test_an_unreachable_redis_is_not_sent() -> None:
    client = aioredis.Redis(port=1, socket_connect_timeout=0.5, decode_responses=True)
    mux = Multiplexer(client.connection_pool, timeout=1.0)
    try:
        with pytest.raises(RedisConnectionError):
            await mux.evalsha(ECHO, ["k"], [1])
    finally:
        await mux.aclose()
        await client.aclose()


# -- the link's failure accounting, with a transport that records what is written --------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


class _Owner:
    def __init__(self) -> None:
        self.lost_links: list[_Link] = []
        self.retired_links: list[_Link] = []

    def retired(self, link: _Link) -> None:
        self.retired_links.append(link)

    def lost(self, link: _Link) -> None:
        self.lost_links.append(link)


def _waiters(
    link: _Link, n: int, *, retry: tuple[Any, ...] | None = None, within: float = 60
) -> list[Any]:
    from sessionwatch.backends.multiplex import _Waiter

    loop = asyncio.get_running_loop()
    futures = []
    for i in range(n):
        future = loop.create_future()
        link.send(pack("EVALSHA", "x", 0, i), _Waiter(future, loop.time() + within, retry))
        futures.append(future)
    return futures


async def _failed(future: Any) -> BaseException | None:
    """The failure ``future`` ends with (bounded wait)."""
    await asyncio.wait_for(asyncio.wait([future]), 5)
    return future.exception()


async def test_a_lost_link_tells_written_from_never_written() -> None:
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    written = _waiters(link, 2)
    link.flush()
    unsent = _waiters(link, 3)  # still in the buffer: this iteration's write is pending
    link.abort(RedisConnectionError("gone"))
    for future in written:
        exc = future.exception()
        assert isinstance(exc, RedisConnectionError) and not isinstance(exc, NotSent)
    assert all(isinstance(f.exception(), NotSent) for f in unsent)
    assert transport.aborted and owner.lost_links == [link]
    assert len(transport.written) == 1  # the buffer was never written after the loss


async def test_readonly_is_not_sent_and_drops_the_connection() -> None:
    import hiredis

    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    first, second = _waiters(link, 2)
    link.flush()
    link.answer(hiredis.ReplyError("READONLY You can't write against a read only replica."))
    assert isinstance(first.exception(), NotSent)
    assert isinstance(second.exception(), RedisConnectionError)
    assert link.closed and owner.lost_links == [link]


async def test_noscript_resends_the_source_in_order() -> None:
    import hiredis

    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (future,) = _waiters(link, 1, retry=("return 1", 0))
    link.flush()
    link.answer(hiredis.ReplyError("NOSCRIPT No matching script."))
    link.flush()
    # Loaded, then by SHA again (an ACL user may lack EVAL: deployment.md's user)
    sha = _sha("return 1")
    assert transport.written[-1] == pack("SCRIPT", "LOAD", "return 1") + pack("EVALSHA", sha, 0)
    link.answer(sha)
    assert not future.done()
    link.answer(1)
    assert future.result() == 1


async def test_a_send_on_a_lost_link_is_not_sent_and_never_hangs() -> None:
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    link.abort(RedisConnectionError("gone"))
    (future,) = _waiters(link, 1)
    assert isinstance(future.exception(), NotSent)
    assert not link.waiters and not link.unsent


async def test_a_reply_nobody_asked_for_closes_the_link() -> None:
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    link.answer("surprise")
    assert link.closed and transport.aborted


# -- issue 22, item 1: no caller is told "failed" before its own deadline ------------------


async def test_a_timeout_fails_only_the_callers_whose_own_deadline_passed() -> None:
    """Before the fix the oldest caller's timeout closed the connection and failed the
    later callers at once, although their scripts, already written, still ran (and took
    effect) when Redis woke; their deadlines had not passed."""
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (oldest,) = _waiters(link, 1, within=0.05)
    link.flush()
    (later,) = _waiters(link, 1, within=60)
    link.flush()
    assert isinstance(await _failed(oldest), RedisTimeoutError)
    assert not later.done()  # still waiting for its reply: its script may still run
    assert link.retired and owner.retired_links == [link]
    assert not link.closed and not transport.aborted and not owner.lost_links
    link.answer("late reply of the oldest")  # matched in order, and dropped
    assert not later.done()
    link.answer("reply of the later")
    assert later.result() == "reply of the later"
    assert link.closed and transport.aborted and owner.lost_links == [link]  # nobody waits


async def test_a_retired_link_takes_no_command_and_hands_back_the_unwritten() -> None:
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (oldest,) = _waiters(link, 1, within=-1)
    link.flush()
    unwritten = _waiters(link, 2)  # queued in the iteration of the timeout
    link._check()  # the watchdog
    assert isinstance(oldest.exception(), RedisTimeoutError)
    assert all(isinstance(f.exception(), NotSent) for f in unwritten)  # sent again elsewhere
    (refused,) = _waiters(link, 1)
    assert isinstance(refused.exception(), NotSent)
    assert len(transport.written) == 1 and link.closed  # nobody waits: closed at once


async def test_waiters_time_out_one_by_one_at_their_own_deadlines() -> None:
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (first,) = _waiters(link, 1, within=0.05)
    (second,) = _waiters(link, 1, within=0.3)
    link.flush()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert isinstance(await _failed(first), RedisTimeoutError)
    assert not second.done() and not link.closed
    assert isinstance(await _failed(second), RedisTimeoutError)
    assert loop.time() - started >= 0.2  # at its own deadline, not the first one's
    assert link.closed and transport.aborted


async def test_a_noscript_reply_of_a_caller_told_failed_is_not_run_again() -> None:
    import hiredis

    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (gone,) = _waiters(link, 1, retry=("return 1", 0), within=0.05)
    (live,) = _waiters(link, 1, within=60)
    link.flush()
    assert isinstance(await _failed(gone), RedisTimeoutError)
    link.answer(hiredis.ReplyError("NOSCRIPT No matching script."))
    link.flush()
    assert len(transport.written) == 1  # no EVAL for a caller already answered
    link.answer(2)
    assert live.result() == 2 and link.closed


async def test_closing_waits_for_the_callers_in_flight() -> None:
    """Shut-down tells no caller "failed" before its deadline either."""
    mux = Multiplexer(None, timeout=5.0)
    transport = _Transport()
    link = _Link(mux, None, transport)  # type: ignore[arg-type]
    mux._link = link
    (waiting,) = _waiters(link, 1, within=0.2)
    link.flush()
    mux.lost = lambda link: None  # type: ignore[method-assign]  # no pool to give back to
    closing = asyncio.ensure_future(mux.aclose())
    await asyncio.sleep(0.05)
    assert not waiting.done() and not transport.aborted
    link.answer("its reply")
    await asyncio.wait_for(closing, 5)
    assert waiting.result() == "its reply" and transport.aborted


# -- a Cluster's redirects (cluster_multiplex.py) ------------------------------------------


async def test_a_command_sent_again_fails_at_its_own_earlier_deadline() -> None:
    """A script sent again after a redirect keeps its first deadline, earlier than the
    deadline of a caller queued before it: it is told "failed" at its own, not later
    (before, the watchdog waited for the older caller's deadline)."""
    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    (older,) = _waiters(link, 1, within=60)
    (resent,) = _waiters(link, 1, within=0.05)
    link.flush()
    assert isinstance(await _failed(resent), RedisTimeoutError)
    assert not older.done()  # its own deadline is ahead: still waiting for its reply


async def test_asking_goes_right_before_its_command_and_its_source() -> None:
    """``ASK``: ``ASKING`` then the command in one write, its ``OK`` dropped; a
    ``NOSCRIPT`` there loads the source, then ``ASKING`` and the command again."""
    import hiredis

    from sessionwatch.backends.multiplex import _Waiter

    transport, owner = _Transport(), _Owner()
    link = _Link(owner, None, transport)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    link.send(pack("EVALSHA", "x", 0), _Waiter(future, loop.time() + 60, ("return 1", 0), True))
    link.flush()
    assert transport.written == [pack("ASKING") + pack("EVALSHA", "x", 0)]
    link.answer("OK")
    link.answer(hiredis.ReplyError("NOSCRIPT No matching script."))
    link.flush()
    load, evalsha = pack("SCRIPT", "LOAD", "return 1"), pack("EVALSHA", _sha("return 1"), 0)
    assert transport.written[-1] == load + pack("ASKING") + evalsha
    link.answer(_sha("return 1"))
    link.answer(hiredis.ReplyError("ERR a refused ASKING says nothing by itself"))
    assert not future.done()
    link.answer(1)
    assert future.result() == 1


async def test_asking_on_one_redis_leaves_the_command_to_answer(mux: Multiplexer) -> None:
    """(One Redis refuses ``ASKING``: the refusal is dropped, the script still answers.)"""
    assert await mux.evalsha(ECHO, ["k"], [1], asking=True) == ["k", "1"]
