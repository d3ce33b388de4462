"""Reading the audit trail on Redis: consumer groups over the stream shards.

The scripts append (``_prelude.lua`` ``audit``); this reads. One Redis has one stream,
``{prefix}audit``; a Redis Cluster one shard per hash slot (``{prefix}audit:{S}``, see
:mod:`.keys`), each read by one command of a pipeline per primary, so a sweep of every
shard costs a bounded 16384 cheap commands whatever the number of users
(docs/audit.md). A record's id is its entry id, followed by ``@slot`` on a Cluster:
unique across the deployment, the key to de-duplicate a redelivery.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from ..core.trail import AuditRecord

__all__ = ["RedisTrail", "TrailCursor", "entry_order"]

# Where a reader of the whole trail stands: the last entry id seen per shard.
TrailCursor = dict[str, str]


def entry_order(record_id: str) -> tuple[int, int, int]:
    """Sort key of a record id: time, sequence, then shard (a Cluster's ``@slot``)."""
    entry, _, slot = record_id.partition("@")
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0), int(slot or 0)


def _missing_group(result: Any) -> bool:
    return isinstance(result, ResponseError) and str(result).startswith("NOGROUP")


class RedisTrail:
    """The trail-reading half of :class:`~.redis.RedisBackend` (a mixin: it uses the
    backend's client, names and :meth:`call`)."""

    _redis: Any
    names: Any
    call: Callable[..., Any]
    _made_groups: set[str]

    # -- the shards, one Redis (a Cluster overrides) -------------------------------

    def audit_shards(self) -> list[str]:
        """Every stream shard of the trail (one on one Redis)."""
        return [self.names.audit()]

    def _record_id(self, shard: str, entry_id: str) -> str:
        return entry_id

    def _shard_of(self, record_id: str) -> tuple[str, str]:
        return self.names.audit(), record_id

    def _pipeline(self) -> Any:
        return self._redis.pipeline(transaction=False)

    def _make_stream(self) -> bool:
        return True  # one stream: a group made before the first record makes it

    async def _each(self, shards: Sequence[str], command: Callable[[Any, str], None]) -> list[Any]:
        """``command(pipe, shard)`` for every shard in one pipeline (per primary on a
        Cluster); each reply or error in the shards' order."""

        async def run() -> list[Any]:
            pipe = self._pipeline()
            for shard in shards:
                command(pipe, shard)
            return list(await pipe.execute(raise_on_error=False))

        replies: list[Any] = await self.call(run)
        return replies

    def _records(self, shard: str, entries: Any) -> list[AuditRecord]:
        return [
            AuditRecord.from_fields(self._record_id(shard, entry_id), fields)
            for entry_id, fields in entries or ()
            if fields is not None  # an entry trimmed while pending
        ]

    # -- consumer groups ---------------------------------------------------------------

    async def audit_read(self, group: str, consumer: str, *, count: int = 100) -> list[AuditRecord]:
        """Records no consumer of ``group`` was given yet (at most ``count`` per shard),
        now pending for ``consumer`` until :meth:`audit_ack`. A shard without the group
        (a group not in the settings' list) gets it the first time, from its oldest
        record."""
        shards = self.audit_shards()
        replies = await self._each(
            shards, lambda pipe, shard: pipe.xreadgroup(group, consumer, {shard: ">"}, count)
        )
        if group not in self._made_groups:
            self._made_groups.add(group)
            orphans = [s for s, reply in zip(shards, replies, strict=True) if _missing_group(reply)]
            if orphans:
                mk = self._make_stream()
                await self._each(
                    orphans, lambda pipe, shard: pipe.xgroup_create(shard, group, "0", mkstream=mk)
                )
                return await self.audit_read(group, consumer, count=count)
        records: list[AuditRecord] = []
        for shard, reply in zip(shards, replies, strict=True):
            if isinstance(reply, Exception):
                if _missing_group(reply):
                    continue  # no such shard yet
                raise reply
            for _, entries in reply or ():
                records += self._records(shard, entries)
        records.sort(key=lambda record: entry_order(record.id))
        return records

    async def audit_reclaim(
        self, group: str, consumer: str, *, idle_ms: int, count: int = 100
    ) -> list[AuditRecord]:
        """Records of ``group`` delivered at least ``idle_ms`` ago and never
        acknowledged (their consumer died, say), now pending for ``consumer``."""
        shards = self.audit_shards()
        replies = await self._each(
            shards,
            lambda pipe, shard: pipe.xautoclaim(shard, group, consumer, idle_ms, "0-0", count),
        )
        records: list[AuditRecord] = []
        for shard, reply in zip(shards, replies, strict=True):
            if isinstance(reply, Exception):
                if _missing_group(reply) or "no such key" in str(reply).lower():
                    continue
                raise reply
            records += self._records(shard, reply[1])
        records.sort(key=lambda record: entry_order(record.id))
        return records

    async def audit_ack(self, group: str, ids: Sequence[str]) -> None:
        """Acknowledge records of ``group``: never delivered again."""
        by_shard: dict[str, list[str]] = {}
        for record_id in ids:
            shard, entry_id = self._shard_of(record_id)
            by_shard.setdefault(shard, []).append(entry_id)
        if by_shard:
            await self._each(list(by_shard), lambda pipe, s: pipe.xack(s, group, *by_shard[s]))

    # -- plain reading (audit tail) ------------------------------------------------------

    async def audit_latest(self, count: int) -> tuple[list[AuditRecord], TrailCursor]:
        """The newest ``count`` records, oldest first, and a cursor after them all."""
        shards = self.audit_shards()
        replies = await self._each(shards, lambda pipe, s: pipe.xrevrange(s, count=count))
        cursor: TrailCursor = {}
        merged: list[AuditRecord] = []
        for shard, reply in zip(shards, replies, strict=True):
            if isinstance(reply, Exception) or not reply:
                continue
            cursor[shard] = reply[0][0]
            merged += self._records(shard, reply)
        newest = heapq.nlargest(count, merged, key=lambda record: entry_order(record.id))
        return newest[::-1], cursor

    async def audit_after(
        self, cursor: TrailCursor, count: int = 1000
    ) -> tuple[list[AuditRecord], TrailCursor]:
        """Records after ``cursor`` (at most ``count`` per shard), oldest first, and the
        cursor after them."""
        shards = self.audit_shards()
        replies = await self._each(
            shards,
            lambda pipe, s: pipe.xrange(
                s, min="(" + cursor[s] if s in cursor else "-", count=count
            ),
        )
        moved = dict(cursor)
        records: list[AuditRecord] = []
        for shard, reply in zip(shards, replies, strict=True):
            if isinstance(reply, Exception) or not reply:
                continue
            moved[shard] = reply[-1][0]
            records += self._records(shard, reply)
        records.sort(key=lambda record: entry_order(record.id))
        return records, moved
