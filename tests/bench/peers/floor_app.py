"""The floor of the benchmark: a bare WebSocket server that forwards a Redis ``PUBLISH``
to its socket, with no session logic, so every figure has its physical reference
(uvicorn's WebSocket, redis-py's pub/sub, the same machine and load generator).

- ``POST /claim``: the cookie ``floor=<id>`` names the session (random, unsigned: no
  session logic); ``HINCRBY`` bumps its generation and, from the second claim on, the
  ``superseded`` frame is published on ``floor:<id>`` as the text the tab receives.
- WebSocket ``/ws``: the tab's ``hello`` is answered ``ready`` once the worker has
  subscribed to ``floor:<id>`` (no check of the tab); every message on that channel is
  sent to the session's sockets on this worker as it is.

Each worker subscribes only to the channels of its own sockets (one pub/sub connection
per worker), so a push costs one worker one message: the least any design can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import redis.asyncio as aioredis

from .ready import with_ready_file

__all__ = ["create_app"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
_BY = {"browser": "Chrome 124", "os": "Linux", "place": "127.0.0.0/24", "same_browser": False}


def _cookie(scope: dict[str, Any]) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            morsel = SimpleCookie(value.decode("latin-1")).get("floor")
            return morsel.value if morsel is not None else None
    return None


async def _answer(send: Send, status: int, body: dict[str, Any], cookie: str | None) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    if cookie is not None:
        headers.append((b"set-cookie", f"floor={cookie}; Path=/; HttpOnly".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_app() -> Any:
    redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"], decode_responses=True)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    sockets: dict[str, set[Send]] = {}
    tasks: list[asyncio.Task[None]] = []

    async def forward() -> None:
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            text = message["data"]
            for send in list(sockets.get(message["channel"][6:], ())):
                with contextlib.suppress(Exception):  # a socket closing meanwhile
                    await send({"type": "websocket.send", "text": text})

    async def start() -> None:
        await pubsub.subscribe("floor:")  # a channel nobody publishes on: the listener's
        tasks.append(asyncio.create_task(forward()))  # connection exists from now on

    async def claim(scope: dict[str, Any], receive: Any, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        session = _cookie(scope)
        new = None
        if session is None:
            session = new = secrets.token_urlsafe(16)
        gen = await redis.hincrby(f"floor:s:{session}", "gen", 1)
        if gen > 1:
            frame = {"type": "superseded", "gen": gen, "by": {**_BY, "at": int(time.time() * 1000)}}
            await redis.publish(f"floor:{session}", json.dumps(frame))
        await _answer(send, 200, {"tab": str(gen), "gen": gen, "session": session}, new)

    async def websocket(scope: dict[str, Any], receive: Any, send: Send) -> None:
        session = _cookie(scope)
        await receive()  # websocket.connect
        if session is None:
            await send({"type": "websocket.close", "code": 4001})
            return
        await send({"type": "websocket.accept"})
        joined = False
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if not joined:  # the hello: subscribe, then say ready
                    joined = True
                    if session not in sockets:
                        sockets[session] = set()
                        await pubsub.subscribe(f"floor:{session}")
                    sockets[session].add(send)
                    await send({"type": "websocket.send", "text": '{"type":"ready"}'})
        finally:
            if joined:
                group = sockets.get(session)
                if group is not None:
                    group.discard(send)
                    if not group:
                        del sockets[session]
                        with contextlib.suppress(Exception):
                            await pubsub.unsubscribe(f"floor:{session}")

    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await websocket(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/claim" and scope["method"] == "POST":
            await claim(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "ok"}, None)
        elif scope["type"] == "http":
            await _answer(send, 404, {"error": "not_found"}, None)
        else:
            await send({"type": "websocket.close", "code": 4004})

    return with_ready_file(app, start)
