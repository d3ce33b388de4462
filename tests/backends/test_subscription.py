"""The pub/sub reader on its taken-over connection (backends/subscription.py): bursts
arrive whole and in order, and a connection that goes silent is found by its own
health check and replaced, followed by a resync."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from sessionwatch.backends.base import ChannelMessage
from sessionwatch.backends.subscription import RedisSubscription


async def _next(iterator: Any, timeout: float = 5.0) -> ChannelMessage:
    message: ChannelMessage = await asyncio.wait_for(anext(iterator), timeout)
    return message


async def test_a_burst_arrives_whole_and_in_order(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    subscription = RedisSubscription(client.connection_pool)
    messages = aiter(subscription)
    reader = asyncio.ensure_future(_next(messages))  # the reader confirms subscriptions
    try:
        await subscription.subscribe("sub:a", "sub:b")
        async with client.pipeline(transaction=False) as pipe:
            for i in range(2000):
                pipe.publish("sub:a" if i % 2 else "sub:b", str(i))
            await pipe.execute()
        got = [await reader] + [await _next(messages) for _ in range(1999)]
        assert [m.payload for m in got] == [str(i) for i in range(2000)]
        assert {m.channel for m in got} == {"sub:a", "sub:b"}
        await subscription.unsubscribe("sub:a")
        await client.publish("sub:a", "gone")
        await client.publish("sub:b", "kept")
        assert (await _next(messages)).payload == "kept"
    finally:
        await subscription.aclose()
        await client.aclose()


async def test_a_silent_connection_is_found_and_replaced(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    subscription = RedisSubscription(
        client.connection_pool, health_interval=0.2, reply_timeout=0.3, max_backoff=0.1
    )
    messages = aiter(subscription)
    first = asyncio.ensure_future(_next(messages, 10))
    try:
        await subscription.subscribe("sub:quiet")
        # Redis answers nobody (not even the health check's PING) for 1.5 s: the reader
        # must give the connection up on its own, reconnect once Redis answers and
        # tell the consumer to resync.
        await admin.client_pause(1500, all=True)
        marker = await first
        assert marker.resync
        assert subscription.reconnects == 1
        await admin.publish("sub:quiet", "after")
        assert (await _next(messages)).payload == "after"
    finally:
        await subscription.aclose()
        await client.aclose()
        await admin.aclose()


async def test_a_listener_gets_each_message_as_it_is_read(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    subscription = RedisSubscription(client.connection_pool, max_backoff=0.1)
    heard: list[str] = []

    def listener(message: ChannelMessage) -> None:
        if message.payload == "boom":
            raise RuntimeError("a bug in the consumer")  # logged; the reader goes on
        heard.append(message.payload)

    subscription.listen(listener)
    messages = aiter(subscription)
    marker = asyncio.ensure_future(_next(messages, 10))  # drives the connection
    try:
        await subscription.subscribe("sub:l")
        for payload in ("a", "boom", "b", "c"):
            await admin.publish("sub:l", payload)
        for _ in range(100):
            if len(heard) == 3:
                break
            await asyncio.sleep(0.01)
        assert heard == ["a", "b", "c"]
        assert not marker.done()  # the iterator yields no message, only resyncs
        await admin.client_kill_filter(_type="pubsub")
        assert (await marker).resync
        await admin.publish("sub:l", "after")
        for _ in range(100):
            if heard[-1] == "after":
                break
            await asyncio.sleep(0.01)
        assert heard == ["a", "b", "c", "after"]
    finally:
        await subscription.aclose()
        await client.aclose()
        await admin.aclose()


async def test_a_message_for_the_listener_does_not_wake_the_reader_task(redis_url: str) -> None:
    # With a listener, a read is handed on in the protocol's callback; the reader task
    # (health checks, losses, resyncs) must stay asleep, not step once per push.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    subscription = RedisSubscription(client.connection_pool, max_backoff=0.1)
    heard: list[str] = []
    subscription.listen(lambda message: heard.append(message.payload))
    waits = 0
    wait = subscription._wait

    async def counted(timeout: float) -> None:
        nonlocal waits
        waits += 1
        await wait(timeout)

    subscription._wait = counted  # type: ignore[method-assign]
    marker = asyncio.ensure_future(_next(aiter(subscription), 10))
    try:
        await subscription.subscribe("sub:w")
        before = waits
        for i in range(50):  # one read each: every publish is answered before the next
            await admin.publish("sub:w", str(i))
        for _ in range(200):
            if len(heard) == 50:
                break
            await asyncio.sleep(0.005)
        assert heard == [str(i) for i in range(50)]
        assert waits - before <= 2  # the 1 s health-check tick at most (was 50: one per read)
        await admin.client_kill_filter(_type="pubsub")  # a loss still wakes it at once
        assert (await marker).resync
    finally:
        await subscription.aclose()
        await client.aclose()
        await admin.aclose()


async def test_a_health_checks_pong_is_an_answer_not_a_loss(redis_url: str) -> None:
    # redis-py 8 speaks RESP3, where Redis answers a subscribed client's PING with a
    # plain PONG (RESP2: ["pong", ""]). The reader took it for a broken stream: a
    # warning, a reconnect and a resync of every local tab after each 15 s of silence.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    subscription = RedisSubscription(
        client.connection_pool, health_interval=0.1, reply_timeout=0.5, max_backoff=0.05
    )
    subscription.listen(lambda message: None)
    marker = asyncio.ensure_future(_next(aiter(subscription), 10))
    try:
        await subscription.subscribe("sub:idle")
        await subscription.unsubscribe("sub:idle")
        await asyncio.sleep(1.5)  # about four health checks (one each 1 s tick at most)
        assert subscription.reconnects == 0
        assert not marker.done()  # no resync: the connection was never lost
    finally:
        await subscription.aclose()
        await client.aclose()
