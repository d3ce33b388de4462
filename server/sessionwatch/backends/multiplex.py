"""Scripts of many concurrent callers pipelined on one Redis connection.

Every request of a protected route, every claim and every socket's hello runs one
script. Through redis-py each call checks a connection out of the pool, packs the
command with its encoder, writes it, reads the reply through a stream reader and gives
the connection back: about 150 µs of worker CPU per call on the benchmark machine, more
than the script's own run in Redis (issue 17). Here one connection serves every caller
of the process: a call packs its command, queues a future and waits; the commands of one
event-loop iteration go out in one write, and a protocol feeds what arrives to hiredis'
reader and resolves the futures in order (Redis answers a connection's commands in the
order it received them).

The connection itself is made by redis-py's pool and then taken over (``takeover.py``);
when it fails it is closed and given back, and the next call takes a fresh one.

Failure semantics, which ``RedisBackend.call`` turns into retries or 503s:

- no connection could be made, or the connection was lost before a command was written
  (it sat in the write buffer): :class:`NotSent`, safe to send again;
- ``READONLY`` (a demoted primary after a failover) or ``NOSCRIPT`` (a flushed script
  cache, a promoted replica: ``SCRIPT LOAD`` is not replicated): the script did not
  run. ``NOSCRIPT`` is answered by ``SCRIPT LOAD`` and ``EVALSHA`` again, in one write
  (not ``EVAL``: an ACL user needs only ``evalsha`` and ``script|load``, deployment.md);
  ``READONLY`` closes the connection (the next one is made to the new primary) and
  raises :class:`NotSent`;
- the connection lost after the write: the script may have run, so ``ConnectionError``
  (never sent again);
- no reply within ``timeout`` seconds: ``TimeoutError``, told only once the caller's own
  ``timeout`` has passed, never earlier. By then its script can no longer start in
  Redis: each script carries a deadline in Redis' clock at most ``SCRIPT_BUDGET``
  (4 s, ``deadline.py``) after it was sent, less than ``timeout`` (5 s), so one that
  Redis reaches later refuses itself (``LATE``) and the answer "failed" stays true
  (issue 22, item 1). The connection is therefore never closed while a caller still
  waits on it: the first timeout *retires* it (no new command goes on it; the next
  call takes a fresh connection), it keeps reading and matching replies in order, each
  remaining caller gets its reply or, at its own deadline, its ``TimeoutError``, and it
  is closed once nobody waits any more. Before, the first timeout closed the
  connection and failed every later caller at once although their scripts, already
  written, still ran when Redis woke (a 503 after 1.6 s, then the takeover anyway).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from typing import Any, Protocol

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .takeover import ReplyProtocol, give_back, take_over

__all__ = ["Multiplexer", "NotSent", "ScriptError", "ScriptRunner", "pack"]

logger = logging.getLogger(__name__)


class NotSent(RedisConnectionError):
    """The command was never written: no connection could be made for it, or a demoted
    primary refused it (``READONLY``). Safe to send again."""


class ScriptError(RedisError):
    """Redis answered the script with an error (a Lua error, ``LATE`` from the deadline
    fence, ``OOM``): it took no effect the caller can rely on."""


class ScriptRunner(Protocol):
    """What runs the backend's scripts: a :class:`Multiplexer` on one Redis, a
    ``cluster_multiplex.ClusterMultiplexer`` (one per primary) on a Cluster."""

    async def evalsha(self, source: str, keys: list[str], args: list[Any]) -> Any: ...

    async def aclose(self) -> None: ...


def pack(*args: str | int | bytes) -> bytes:
    """One command in RESP: ``*<n>`` then ``$<len>`` and the bytes of each argument."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Waiter:
    __slots__ = ("asking", "deadline", "future", "retry")

    def __init__(
        self,
        future: asyncio.Future[Any],
        deadline: float,
        retry: tuple[Any, ...] | None,
        asking: bool = False,
    ) -> None:
        self.future = future
        self.deadline = deadline
        self.retry = retry  # source, then EVALSHA's tail: sent again on NOSCRIPT
        self.asking = asking  # the command follows an ASKING (a Cluster's ASK redirect)


_ASKING = pack("ASKING")


def _ignored(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # an ASKING refused: the command after it says what happened


def _loaded(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        # The EVALSHA after it then fails with NOSCRIPT: say why.
        logger.warning("Redis refused SCRIPT LOAD: %s", future.exception())


class _ReplyProtocol(ReplyProtocol):
    """Matches replies to waiters, in order."""

    def __init__(self, link: _Link) -> None:
        super().__init__()
        self._link = link

    def replied(self, reply: Any) -> bool:
        self._link.answer(reply)
        return True

    def failed(self, exc: RedisConnectionError) -> None:
        self._link.abort(exc)


class _Link:
    """One taken-over connection: its transport, the waiters in send order and the
    bytes not yet written. *Open* it takes commands; *retired* (after a timeout) it
    takes none but still reads, until no caller waits on it; *closed* it is gone."""

    def __init__(self, owner: Multiplexer, connection: Any, transport: Any) -> None:
        self.owner = owner
        self.connection = connection  # redis-py's, given back to its pool at the end
        self.transport: asyncio.Transport = transport
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.unsent: list[bytes] = []
        self.retired = False
        self.closed = False
        self._flush_scheduled = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def send(self, command: bytes, waiter: _Waiter) -> None:
        if self.closed or self.retired:  # lost or retired since the caller picked it
            waiter.future.set_exception(NotSent("the connection was lost before the write"))
            return
        self._write(command, waiter)

    def _write(self, command: bytes, waiter: _Waiter) -> None:
        if waiter.asking:
            # ASKING applies to the next command of the connection: queued right before
            # it, in the same write, with a waiter of its own whose reply is dropped.
            future = self._loop.create_future()
            future.add_done_callback(_ignored)
            self._queue(_ASKING, _Waiter(future, waiter.deadline, None))
        self._queue(command, waiter)

    def _queue(self, command: bytes, waiter: _Waiter) -> None:
        self.waiters.append(waiter)
        self.unsent.append(command)
        if not self._flush_scheduled:
            # Everything queued in this loop iteration goes out in one write.
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        watchdog = self._watchdog
        if watchdog is None or waiter.deadline < watchdog.when():
            # (a command sent again keeps its caller's deadline, which may come first)
            if watchdog is not None:
                watchdog.cancel()
            self._arm(waiter.deadline)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or not self.unsent:
            return
        data = b"".join(self.unsent)
        self.unsent.clear()
        self.transport.write(data)

    def answer(self, reply: Any) -> None:
        try:
            waiter = self.waiters.popleft()
        except IndexError:
            self.abort(RedisConnectionError("Redis sent a reply nobody asked for"))
            return
        future = waiter.future
        if isinstance(reply, hiredis.ReplyError):
            message = str(reply)
            if message.startswith("NOSCRIPT") and waiter.retry is not None:
                # The cache was flushed (a restart, SCRIPT FLUSH, a promoted replica):
                # the script did not run. Loaded, then run by SHA again.
                if not future.done():  # (a caller told "failed" is not run after all)
                    source, *tail = waiter.retry
                    load = self._loop.create_future()
                    load.add_done_callback(_loaded)
                    self._queue(
                        pack("SCRIPT", "LOAD", source), _Waiter(load, waiter.deadline, None)
                    )
                    retry = _Waiter(future, waiter.deadline, None, waiter.asking)
                    self._write(pack("EVALSHA", _sha(source), *tail), retry)
            elif message.startswith("READONLY"):
                if not future.done():
                    future.set_exception(NotSent(f"Redis refused a write: {message}"))
                self.abort(RedisConnectionError("the primary was demoted"))
                return
            elif not future.done():
                future.set_exception(ScriptError(message))
        elif not future.done():
            future.set_result(reply)
        elif not future.cancelled():
            # Its caller was told "failed" at its deadline, yet the script ran: it
            # started in time and its reply took longer than the margin between the
            # script's start budget and the timeout. Never expected; said loudly.
            logger.error("a Redis script answered after its caller was told it failed")
        if self.retired:
            self._close_when_nobody_waits()

    def _arm(self, deadline: float) -> None:
        self._watchdog = self._loop.call_at(deadline, self._check)

    def _check(self) -> None:
        """Fail every caller whose deadline has passed, and only those (see the module
        docstring: their scripts can no longer start); retire the connection."""
        self._watchdog = None
        if self.closed:
            return
        now = self._loop.time()
        expired = False
        earliest: float | None = None
        for waiter in self.waiters:
            if waiter.future.done():
                continue
            if waiter.deadline > now:
                # Not in send order: a command sent again (NOSCRIPT, a Cluster's
                # redirect) keeps its caller's earlier deadline.
                if earliest is None or waiter.deadline < earliest:
                    earliest = waiter.deadline
                continue
            waiter.future.set_exception(RedisTimeoutError("Timeout reading from Redis"))
            expired = True
        if earliest is not None:
            self._arm(earliest)
        if expired:
            self.retire()
        if self.retired:
            self._close_when_nobody_waits()

    def retire(self) -> None:
        """Take no more commands; close once every caller has its answer. Commands
        not yet written fail with :class:`NotSent` (sent again on a fresh connection)."""
        if self.retired:
            return
        self.retired = True
        for _ in range(len(self.unsent)):  # the newest waiters are the unwritten ones
            waiter = self.waiters.pop()
            if not waiter.future.done():
                waiter.future.set_exception(NotSent("not written: the connection retired"))
        self.unsent.clear()
        self.owner.retired(self)

    def _close_when_nobody_waits(self) -> None:
        if not self.unsent and all(waiter.future.done() for waiter in self.waiters):
            self.abort(RedisConnectionError("the retired connection is no longer needed"))

    async def settled(self) -> None:
        """Return when every caller has its answer (a reply, or a failure at its
        deadline); cancelling this wait cancels none of them."""
        waiting = [waiter.future for waiter in self.waiters if not waiter.future.done()]
        if waiting:
            await asyncio.wait(waiting)

    def abort(self, exc: RedisError) -> None:
        """Close the connection and fail every waiter: the ones whose command was never
        written with :class:`NotSent`, the others with ``exc``."""
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        unsent = len(self.unsent)
        self.unsent.clear()
        waiters = list(self.waiters)
        self.waiters.clear()
        written = len(waiters) - unsent
        for index, waiter in enumerate(waiters):
            if waiter.future.done():
                continue
            if index < written:
                waiter.future.set_exception(type(exc)(str(exc)))
            else:
                waiter.future.set_exception(NotSent(f"not written: {exc}"))
        self.transport.abort()
        self.owner.lost(self)


class Multiplexer:
    """Runs scripts by SHA on one shared connection taken from ``pool`` (a redis-py
    asyncio connection pool; its connections must speak RESP2 and decode responses).

    Args:
        pool: where connections come from (and go back to when they fail).
        timeout: seconds a reply may take; then its caller is told it failed and the
            connection retired (see above). More than the scripts' start budget
            (``deadline.py``), so that no script can start after its caller was told.
    """

    def __init__(self, pool: Any, *, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None
        self._released: set[asyncio.Task[None]] = set()
        self._retired: set[_Link] = set()  # still read until nobody waits on them

    async def evalsha(
        self,
        source: str,
        keys: list[str],
        args: list[Any],
        *,
        deadline: float | None = None,
        asking: bool = False,
    ) -> Any:
        """Run the script ``source`` (cached by SHA in Redis; sent whole only when Redis
        answers ``NOSCRIPT``) and return its reply.

        ``deadline`` (the loop's clock): when its caller is told it failed, instead of
        ``timeout`` from now; a Cluster's redirect sends a script again with the
        deadline of its first send (``cluster_multiplex.py``). ``asking``: preceded by
        ``ASKING`` (a Cluster's ``ASK`` redirect, on the slot's importing node)."""
        sha = _sha(source)
        link = self._link
        if link is None or link.closed:
            link = await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        tail = (len(keys), *keys, *args)
        if deadline is None:
            deadline = loop.time() + self._timeout
        waiter = _Waiter(future, deadline, (source, *tail), asking)
        link.send(pack("EVALSHA", sha, *tail), waiter)
        return await future

    async def _connect(self) -> _Link:
        """The current link, made once however many callers ask at the same time; in
        its own task, so a caller cancelled meanwhile does not abort it for the rest."""
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._take_over())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Link]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._link = task.result()

    async def _take_over(self) -> _Link:
        link = _Link(self, None, None)
        link.connection, link.transport = await take_over(self._pool, _ReplyProtocol(link))
        return link

    def retired(self, link: _Link) -> None:
        """``link`` takes no more commands: the next call connects anew."""
        if self._link is link:
            self._link = None
        self._retired.add(link)

    def lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        self._retired.discard(link)
        task = asyncio.get_running_loop().create_task(give_back(self._pool, link.connection))
        self._released.add(task)
        task.add_done_callback(self._released.discard)

    async def aclose(self) -> None:
        """Close every connection once its callers have their answers (at most
        ``timeout`` seconds: none is told "failed" while its script could still run)."""
        link, self._link = self._link, None
        if link is not None:
            link.retire()
        links = list(self._retired)
        await asyncio.gather(*(link.settled() for link in links))
        for link in links:
            link.abort(RedisConnectionError("the backend was closed"))
        if self._released:
            await asyncio.gather(*self._released, return_exceptions=True)


_SHAS: dict[str, str] = {}


def _sha(source: str) -> str:
    sha = _SHAS.get(source)
    if sha is None:
        sha = _SHAS[source] = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis' script id)
    return sha
