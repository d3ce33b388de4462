"""The service's uvicorn WebSocket protocol (``LeanWebSocketProtocol``): uvicorn's
websockets-sansio protocol with a smaller inbox and write gate, slots, and the
handshake's headers dropped once answered. Its parts alone, then a real uvicorn serving
an app with it: the behaviour an app sees is uvicorn's, and an open socket keeps none of
what the protocol drops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sessionwatch.live.socket import CLOSE_TIMEOUT, LISTEN_EXTENSION
from sessionwatch.service.servers import LeanWebSocketProtocol, _Gate, _Inbox
from support.redis_server import free_port
from support.unread import open_unread

WAIT = 5.0


async def test_inbox_is_first_in_first_out_and_wakes_a_waiting_reader() -> None:
    inbox = _Inbox()
    inbox.put_nowait("a")
    inbox.put_nowait("b")
    assert not inbox.empty()
    assert await asyncio.wait_for(inbox.get(), WAIT) == "a"
    assert await asyncio.wait_for(inbox.get(), WAIT) == "b"
    assert inbox.empty()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait("c")
    assert await asyncio.wait_for(reader, WAIT) == "c"


async def test_inbox_gives_one_item_to_one_of_two_readers() -> None:
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    done, pending = await asyncio.wait({first, second}, timeout=WAIT, return_when="FIRST_COMPLETED")
    await asyncio.sleep(0)
    assert [task.result() for task in done] == [1] and len(pending) == 1
    inbox.put_nowait(2)
    assert await asyncio.wait_for(pending.pop(), WAIT) == 2


async def test_inbox_passes_an_item_on_when_its_woken_reader_is_cancelled() -> None:
    inbox = _Inbox()
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait("x")  # wakes the first reader...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, WAIT) == "x"
    assert inbox._waiters == []


async def test_gate_blocks_writers_only_while_cleared() -> None:
    gate = _Gate()
    assert gate.is_set()
    await asyncio.wait_for(gate.wait(), WAIT)  # open: returns at once
    gate.clear()
    writers = [asyncio.create_task(gate.wait()) for _ in range(2)]
    cancelled = asyncio.create_task(gate.wait())
    await asyncio.sleep(0)
    assert not any(w.done() for w in [*writers, cancelled])
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.set()
    await asyncio.wait_for(asyncio.gather(*writers), WAIT)
    assert gate.is_set() and gate._waiters is None


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[uvicorn.Server]:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        ws="sessionwatch.service.servers:LeanWebSocketProtocol",
        ws_ping_interval=None,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def test_an_app_served_by_it_sees_uvicorns_behaviour_and_the_socket_keeps_no_headers() -> (
    None
):
    seen: dict[str, Any] = {}
    echoed, closed = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        seen["headers"] = dict(scope["headers"])
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "headers": [(b"x-accepted", b"yes")]})
        while (event := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": event["text"].upper()})
            echoed.set()
        seen["disconnect"] = event
        closed.set()

    async with _serving(app) as server:
        url = f"ws://127.0.0.1:{server.config.port}/ws"
        async with connect(url, additional_headers={"X-Probe": "1"}) as ws:
            assert ws.response.headers["x-accepted"] == "yes"
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "HELLO"
            await asyncio.wait_for(echoed.wait(), WAIT)
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, LeanWebSocketProtocol)
            # Everything uvicorn sets is in a slot, and the handshake is gone.
            assert vars(protocol) == {}
            assert not hasattr(protocol, "request") and not hasattr(protocol, "response")
            # websockets' parser (a generator) still references the request: empty.
            request = protocol.conn.parser.gi_frame.f_locals["request"]
            assert request.path == "/ws" and list(request.headers.raw_items()) == []
            for _ in range(3):  # several messages in a row through the inbox
                await ws.send("again")
            for _ in range(3):
                assert await asyncio.wait_for(ws.recv(), WAIT) == "AGAIN"
        assert seen["headers"][b"x-probe"] == b"1"
        await asyncio.wait_for(closed.wait(), WAIT)
        assert seen["disconnect"]["type"] == "websocket.disconnect"
        assert seen["disconnect"]["code"] == 1000


async def test_an_app_listening_returns_and_the_socket_is_served_by_callbacks() -> None:
    """``listen`` (LISTEN_EXTENSION): the app returns, no task is left for the socket,
    events are heard in order as they arrive, held ones once released, sends and the
    close still work, and the peer's leaving is heard."""
    heard: list[Any] = []
    changed = asyncio.Event()
    handle: dict[str, Any] = {}
    sends: list[asyncio.Future[None]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        offer = scope["extensions"][LISTEN_EXTENSION]
        assert offer["receive"] == receive
        await send({"type": "websocket.accept"})

        def on_event(event: Any) -> None:
            heard.append(event)
            changed.set()
            if event.get("text") == "echo":
                sends.append(
                    asyncio.ensure_future(send({"type": "websocket.send", "text": "ECHO"}))
                )

        handle["hold"] = offer["listen"](on_event)
        handle["send"] = send
        handle["hold"](False)

    async def heard_texts(count: int) -> list[str]:
        while len([e for e in heard if e["type"] == "websocket.receive"]) < count:
            changed.clear()
            await asyncio.wait_for(changed.wait(), WAIT)
        return [e["text"] for e in heard if e["type"] == "websocket.receive"]

    async with _serving(app) as server:
        url = f"ws://127.0.0.1:{server.config.port}/ws"
        async with connect(url) as ws:
            assert [e["type"] for e in await _until(heard, 1)] == ["websocket.connect"]
            (protocol,) = server.server_state.connections
            await _until_true(lambda: not server.server_state.tasks)
            assert not hasattr(protocol, "scope")  # dropped once the app returned
            await ws.send("echo")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "ECHO"
            handle["hold"](True)
            await ws.send("one")
            await ws.send("two")
            await asyncio.sleep(0.2)
            assert await heard_texts(1) == ["echo"]  # held back
            handle["hold"](False)
            assert await heard_texts(3) == ["echo", "one", "two"]
            await ws.send("three")
            assert await heard_texts(4) == ["echo", "one", "two", "three"]
            await handle["send"]({"type": "websocket.close", "code": 4321, "reason": ""})
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4321
        await _until_true(lambda: not server.server_state.connections)


async def test_a_listening_app_hears_the_peer_leave() -> None:
    heard: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        scope["extensions"][LISTEN_EXTENSION]["listen"](heard.append)(False)

    async with _serving(app) as server:
        async with connect(f"ws://127.0.0.1:{server.config.port}/ws"):
            await _until(heard, 1)
        events = await _until(heard, 2)  # (uvicorn queues a second one when the TCP closes)
        assert [e["type"] for e in events[:2]] == ["websocket.connect", "websocket.disconnect"]
        assert events[1]["code"] == 1000


@pytest.mark.parametrize(
    ("ending", "paused"),
    [("close", True), ("return", True), ("close", False)],
    ids=["close-writing-paused", "return-writing-paused", "close-buffered"],
)
async def test_a_peer_that_does_not_read_is_cut_off_when_the_app_ends_its_socket(
    ending: str, paused: bool
) -> None:
    """The task path (the app's call serves the socket): the app sends 16 MB to a peer
    that reads nothing, then closes (within CLOSE_TIMEOUT, as sessionwatch does) or
    returns. asyncio's close writes what is buffered first, for this peer never:
    uvicorn's protocol kept the connection open (still open after 8 s, before). Now it
    is cut off at once while writing is paused (the peer has not taken what was sent
    before the close), else CLOSE_TIMEOUT after the close (the buffer's high-water mark
    raised here, so that writing never pauses)."""
    limits_set, wrote, end, ended = (asyncio.Event() for _ in range(4))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await limits_set.wait()
        await send({"type": "websocket.send", "bytes": b"x" * 16 * 2**20})
        wrote.set()
        await end.wait()
        if ending == "close":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await send({"type": "websocket.close", "code": 4003})
        ended.set()

    async with _serving(app) as server:
        sock = await open_unread(server.config.port, "/ws", {})
        try:
            (protocol,) = server.server_state.connections
            if not paused:
                protocol.transport.set_write_buffer_limits(high=2**26)
            limits_set.set()
            await asyncio.wait_for(wrote.wait(), WAIT)
            assert protocol.writable.is_set() is not paused
            assert protocol.transport.get_write_buffer_size() > 2**20
            end.set()
            await asyncio.wait_for(ended.wait(), WAIT)
            started = time.monotonic()
            while server.server_state.connections:
                took = time.monotonic() - started
                assert took < 8, f"still open {took:.1f} s after the app ended"
                await asyncio.sleep(0.01)
            took = time.monotonic() - started
            print(f"{ending}, writing paused {paused}: cut off after {took:.2f} s")
            if paused:
                assert took < 1
            else:
                assert CLOSE_TIMEOUT - 0.1 < took < CLOSE_TIMEOUT + 1.5
        finally:
            sock.close()


async def _until(items: list[Any], count: int) -> list[Any]:
    await _until_true(lambda: len(items) >= count)
    return items


async def _until_true(check: Any) -> None:
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 (uvicorn's state, no event to wait on)
            await asyncio.sleep(0.01)
