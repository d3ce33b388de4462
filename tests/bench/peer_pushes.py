"""The direct pushes of the peers: for each, the Redis ``PUBLISH`` its documented way of
emitting from outside the server sends (what the claimer's ``direct`` mode publishes,
so the push path is measured without HTTP, as for sessionwatch's claim script).

- ``sio``: python-socketio's emit message (``AsyncPubSubManager.emit``), as a write-only
  ``AsyncRedisManager`` publishes it on ``socketio``;
- ``node``: ``@socket.io/redis-emitter``'s message, ``[uid, packet, {rooms, except,
  flags}]`` in MessagePack, on ``socket.io#/#<room>#`` (the room's channel that
  ``@socket.io/redis-adapter`` pattern-subscribes to);
- ``channels``: ``channel_layer.group_send(group, message)`` of ``RedisPubSubChannelLayer``:
  the layer's MessagePack serialisation on ``asgi__group__<group>``;
- ``floor``: the frame itself on ``floor:<session>``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["push_encoder"]

Encoder = Callable[[str, dict[str, Any]], tuple[str, bytes | str]]


def push_encoder(kind: str) -> Encoder:
    """``encode(public id, {gen, by}) -> (channel, payload)`` for peer ``kind``."""
    if kind == "sio":
        host_id = uuid.uuid4().hex

        def sio(public: str, data: dict[str, Any]) -> tuple[str, bytes | str]:
            message = {
                "method": "emit", "event": "superseded", "data": [data], "binary": False,
                "namespace": "/", "room": f"s:{public}", "skip_sid": None,
                "callback": None, "host_id": host_id,
            }  # fmt: skip
            return "socketio", json.dumps(message)

        return sio
    if kind == "node":
        import msgpack

        def node(public: str, data: dict[str, Any]) -> tuple[str, bytes | str]:
            room = f"s:{public}"
            packet = {"type": 2, "data": ["superseded", data], "nsp": "/"}
            options = {"rooms": [room], "except": [], "flags": {}}
            return f"socket.io#/#{room}#", msgpack.packb(["emitter", packet, options])

        return node
    if kind == "channels":
        from channels_redis.pubsub import RedisPubSubChannelLayer

        layer = RedisPubSubChannelLayer()  # serialises only; never connects

        def channels(public: str, data: dict[str, Any]) -> tuple[str, bytes | str]:
            payload = layer.serialize({"type": "superseded", **data})
            return f"asgi__group__s.{public}", payload

        return channels
    if kind == "floor":

        def floor(public: str, data: dict[str, Any]) -> tuple[str, bytes | str]:
            return f"floor:{public}", json.dumps({"type": "superseded", **data})

        return floor
    raise ValueError(f"no direct push for {kind!r}")
