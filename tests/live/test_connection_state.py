"""A socket's lifecycle, seen through Connection's public surface, served on either
path: in the socket's task (``serve``) or by the server's callbacks (``listen``)."""

from __future__ import annotations

import asyncio

import pytest

from sessionwatch.live import connection
from sessionwatch.live.connection import Connection, ConnectionState
from support.live import SERVING_PATHS, serving


async def _noop_send(text: str) -> None:
    return None


def _conn() -> Connection:
    return Connection("s" * 22, None, _noop_send, queue_size=2)


def test_a_new_socket_is_open_and_queues() -> None:
    conn = _conn()
    assert conn.state is ConnectionState.OPEN and not conn.closing
    assert conn.push({"type": "pong"}) and conn.has_pending


def test_finish_queues_the_last_message_then_nothing_more() -> None:
    conn = _conn()
    conn.finish(4001, {"type": "revoked"})
    assert conn.state is ConnectionState.CLOSING and conn.closing and not conn.aborted
    assert conn.close_code == 4001
    assert not conn.push({"type": "pong"})
    conn.finish(4002)  # a second finish changes nothing
    assert conn.close_code == 4001


def test_a_full_queue_aborts_with_4012_and_the_peer_leaving_keeps_it_aborted() -> None:
    conn = _conn()
    overflows = []
    conn.on_overflow = lambda: overflows.append(1)
    assert conn.push({"type": "a"}) and conn.push({"type": "b"})
    assert not conn.push({"type": "c"})
    assert conn.state is ConnectionState.ABORTED and conn.close_code == 4012 and overflows
    conn.peer_gone()
    assert conn.state is ConnectionState.ABORTED


def test_the_peer_leaving_closes_without_a_code() -> None:
    conn = _conn()
    conn.peer_gone()
    assert conn.state is ConnectionState.GONE and conn.closing and conn.close_code is None


@pytest.fixture(params=SERVING_PATHS, name="path")
def _path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_serve_of_an_aborted_socket_returns_its_code_at_once(path: str) -> None:
    conn = _conn()
    conn.abort(1012)

    async def never() -> None:
        await asyncio.Event().wait()

    assert not conn.listen(lambda: None)  # refused: then served as ever
    assert await asyncio.wait_for(serving(conn, path, never()), 5) == 1012


async def test_when_the_reader_ends_the_socket_is_closing(path: str) -> None:
    conn = _conn()

    async def read() -> None:
        return None

    assert await asyncio.wait_for(serving(conn, path, read()), 5) is None
    assert conn.state is ConnectionState.CLOSING


async def _serving(conn: Connection, path: str) -> tuple[asyncio.Future[int | None], asyncio.Event]:
    """Serve ``conn`` on ``path`` with a reader that waits until told to stop."""
    stop = asyncio.Event()

    async def read() -> None:
        await stop.wait()

    task = serving(conn, path, read())
    await asyncio.sleep(0)
    return task, stop


async def test_a_push_to_an_idle_socket_is_written_in_the_callers_turn(path: str) -> None:
    written: list[str] = []

    async def send(text: str) -> None:  # completes without waiting, as uvicorn's does
        written.append(text)

    conn = Connection("s" * 22, None, send, queue_size=2)
    delays: list[float | None] = []
    conn.on_pushed = delays.append
    task, stop = await _serving(conn, path)
    assert conn.push({"type": "pong"})
    assert written == ['{"type":"pong"}'] and conn.idle  # no queue, no writer task
    assert delays == [None]  # "written while routing": the hub times it
    stop.set()
    await task


async def test_a_send_that_must_wait_is_finished_in_order_by_the_writer(path: str) -> None:
    written: list[str] = []
    gate = asyncio.Event()

    async def send(text: str) -> None:  # flow control: the first send waits
        if not written:
            await gate.wait()
        written.append(text)

    conn = Connection("s" * 22, None, send, queue_size=4)
    task, stop = await _serving(conn, path)
    assert conn.push({"type": "a"})  # begun at once, then suspended
    assert conn.push({"type": "b"})  # queued behind it
    assert conn.has_pending and written == []
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert written == ['{"type":"a"}', '{"type":"b"}'] and conn.idle
    stop.set()
    await task


async def test_a_failed_send_ends_the_socket_whichever_way_it_was_written(path: str) -> None:
    async def broken(text: str) -> None:
        raise ConnectionResetError("peer gone")

    async def broken_later(text: str) -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError("peer gone")

    for send in (broken, broken_later):
        conn = Connection("s" * 22, None, send, queue_size=2)
        task, _ = await _serving(conn, path)
        conn.push({"type": "pong"})
        assert await asyncio.wait_for(task, 5) is None  # serve() ended; nothing to send


async def test_a_close_the_peer_does_not_take_is_aborted_at_the_close_timeout(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``finish`` (a revocation, say) queues the last message and the close behind
    what is queued: a peer that reads nothing keeps the writer waiting for good (the
    socket stayed open, before). At CLOSE_TIMEOUT (0.2 s here) it is aborted with its
    code, and marked stalled: its close is not waited for (``close_wait`` 0). A full
    queue is stalled too; a socket that closes in time is not."""
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT", 0.2)
    entered = asyncio.Event()

    async def stuck(text: str) -> None:  # a peer that stopped reading
        entered.set()
        await asyncio.Event().wait()

    conn = Connection("s" * 22, None, stuck, queue_size=4)
    task, _ = await _serving(conn, path)
    assert conn.push({"type": "extended", "expires_at": 1})
    await asyncio.wait_for(entered.wait(), 5)
    started = asyncio.get_running_loop().time()
    conn.finish(4003, {"type": "revoked"})
    assert await asyncio.wait_for(task, 5) == 4003
    assert 0.15 < asyncio.get_running_loop().time() - started < 1
    assert conn.aborted and conn.stalled and conn.close_wait == 0

    full = Connection("s" * 22, None, stuck, queue_size=1)
    full.push({"type": "a"})
    assert not full.push({"type": "b"})
    assert full.stalled and full.close_wait == 0

    async def send(text: str) -> None:
        return None

    prompt = Connection("s" * 22, None, send, queue_size=4)
    task, _ = await _serving(prompt, path)
    prompt.finish(4003, {"type": "revoked"})
    assert await asyncio.wait_for(task, 5) == 4003
    assert not prompt.stalled and prompt.close_wait == 0.2
