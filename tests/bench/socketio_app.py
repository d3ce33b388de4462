"""The comparison server: tab takeover as it is commonly built today with
python-socketio and ``AsyncRedisManager`` behind a Quart app (several workers).

- ``POST /claim``: the session id lives in Quart's signed cookie session; the claim
  bumps the session's generation in Redis (``HINCRBY``, one round trip) and emits
  ``superseded{gen, by}`` to the session's room (the manager publishes it on Redis, one
  round trip; every worker receives every emit and looks the room up locally).
- Socket.IO ``connect``: the cookie names the session, the tab (its generation) comes as
  the auth payload and is checked against Redis (``HGET``); the socket joins the room
  ``s:<public id>`` (a hash of the session id, as sessionwatch's channels use).

Two round trips per claim, like sessionwatch's (load + claim scripts); no expiry,
device records or policies, so it does less work per claim than sessionwatch.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import socketio
from quart import Quart, jsonify, request, session

__all__ = ["create_app"]


def _public(session_id: str) -> str:
    digest = hashlib.sha256(b"bench/public\0" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def create_app() -> Any:
    url = os.environ["BENCH_REDIS_URL"]
    redis = aioredis.Redis.from_url(url, decode_responses=True)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(url),
        transports=["websocket"],
        logger=False,
        engineio_logger=False,
    )
    app = Quart(__name__)
    app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    cookie_name = app.config["SESSION_COOKIE_NAME"]

    @app.before_serving
    async def mark_ready() -> None:
        ready_dir = os.environ.get("BENCH_READY_DIR")
        if ready_dir:
            Path(ready_dir, f"ready-{os.getpid()}").touch()  # noqa: ASYNC240 (once, at start-up)

    @app.get("/healthz")
    async def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.post("/claim")
    async def claim() -> Any:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            return jsonify({"error": "origin_forbidden"}), 403
        session_id = session.get("sid")
        if session_id is None:
            session_id = secrets.token_urlsafe(32)
            session["sid"] = session_id
        public = _public(session_id)
        gen = await redis.hincrby(f"sio:s:{public}", "gen", 1)
        if gen > 1:
            by = {
                "browser": "Chrome 124",
                "os": "Linux",
                "place": "127.0.0.0/24",
                "at": int(time.time() * 1000),
                "same_browser": False,
            }
            await sio.emit("superseded", {"gen": gen, "by": by}, room=f"s:{public}")
        return jsonify({"tab": str(gen), "gen": gen, "session": public})

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", "")).get(cookie_name)
        if cookie is None:
            raise socketio.exceptions.ConnectionRefusedError("no_session")
        try:
            data = serializer.loads(cookie.value)
        except Exception:
            raise socketio.exceptions.ConnectionRefusedError("no_session") from None
        public = _public(str(data.get("sid")))
        gen = await redis.hget(f"sio:s:{public}", "gen")
        if gen is None or not isinstance(auth, dict) or auth.get("tab") != gen:
            raise socketio.exceptions.ConnectionRefusedError("tab_invalid")
        await sio.enter_room(sid, f"s:{public}")

    return socketio.ASGIApp(sio, other_asgi_app=app)
