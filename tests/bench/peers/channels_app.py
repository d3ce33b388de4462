"""The Django Channels peer: tab takeover as a Django shop builds it with Channels 4 and
``channels_redis``'s ``RedisPubSubChannelLayer`` (uvicorn, several workers), the same job
as python-socketio's app (``tests/bench/socketio_app.py``):

- ``POST /claim`` (an async Django view): the session id lives in Django's signed-cookie
  session (``django.contrib.sessions.backends.signed_cookies``, no database); the claim
  bumps the session's generation in Redis (``HINCRBY``) and ``group_send``s
  ``superseded{gen, by}`` to the session's group (one ``PUBLISH`` on the group's channel;
  only the workers with a member subscribe to it).
- WebSocket ``/ws`` (an ``AsyncJsonWebsocketConsumer`` behind ``SessionMiddlewareStack``):
  the cookie names the session; the tab's ``hello`` carries the tab (its generation),
  checked against Redis (``HGET``); the consumer joins the group ``s.<public id>`` and
  answers ``ready``; a ``superseded`` group message becomes the frame
  ``{"type": "superseded", gen, by}``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from typing import Any

import django
import redis.asyncio as aioredis
from django.conf import settings

from .ready import with_ready_file

__all__ = ["create_app"]

urlpatterns: list[Any] = []  # ROOT_URLCONF: filled by create_app once Django is set up
_BY = {"browser": "Chrome 124", "os": "Linux", "place": "127.0.0.0/24", "same_browser": False}


def _public(session_id: str) -> str:
    digest = hashlib.sha256(b"bench/public\0" + session_id.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def create_app() -> Any:
    url = os.environ["BENCH_REDIS_URL"]
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ["SECRET_KEY"],
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["channels"],
        # startproject's session and common middleware (the latter sets Content-Length);
        # the claim checks Origin itself, as the other peers do, instead of a CSRF token.
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [url]},
            }
        },
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

    from channels.generic.websocket import AsyncJsonWebsocketConsumer
    from channels.layers import get_channel_layer
    from channels.routing import ProtocolTypeRouter, URLRouter
    from channels.sessions import SessionMiddlewareStack
    from django.core.asgi import get_asgi_application
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    redis = aioredis.Redis.from_url(url, decode_responses=True)

    async def healthz(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"status": "ok"})

    async def claim(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return JsonResponse({"error": "method_not_allowed"}, status=405)
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.get_host()}":
            return JsonResponse({"error": "origin_forbidden"}, status=403)
        session_id = await request.session.aget("sid")
        if session_id is None:
            session_id = secrets.token_urlsafe(32)
            await request.session.aset("sid", session_id)
        public = _public(session_id)
        gen = await redis.hincrby(f"channels:s:{public}", "gen", 1)
        if gen > 1:
            by = {**_BY, "at": int(time.time() * 1000)}
            layer = get_channel_layer()
            await layer.group_send(f"s.{public}", {"type": "superseded", "gen": gen, "by": by})
        return JsonResponse({"tab": str(gen), "gen": gen, "session": public})

    class TabConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
        group: str | None = None

        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            if self.group is not None or not isinstance(content, dict):
                return
            if content.get("type") != "hello":
                return
            session_id = self.scope["session"].get("sid")
            if session_id is None:
                await self.close(code=4001)
                return
            public = _public(session_id)
            gen = await redis.hget(f"channels:s:{public}", "gen")
            if gen is None or str(content.get("tab")) != gen:
                await self.close(code=4001)
                return
            self.group = f"s.{public}"
            await self.channel_layer.group_add(self.group, self.channel_name)
            await self.send_json({"type": "ready"})

        async def superseded(self, event: dict[str, Any]) -> None:
            await self.send_json({"type": "superseded", "gen": event["gen"], "by": event["by"]})

        async def disconnect(self, code: int) -> None:
            if self.group is not None:
                await self.channel_layer.group_discard(self.group, self.channel_name)

    urlpatterns[:] = [path("claim", claim), path("healthz", healthz)]
    application = ProtocolTypeRouter(
        {
            "http": get_asgi_application(),
            "websocket": SessionMiddlewareStack(URLRouter([path("ws", TabConsumer.as_asgi())])),
        }
    )
    return with_ready_file(application)
