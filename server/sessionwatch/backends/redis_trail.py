"""Reading the audit trail on Redis: consumer groups over the stream shards.

The scripts append (``_prelude.lua`` ``audit``); this reads. One Redis has one stream,
``{prefix}audit``; a Redis Cluster one shard per hash slot (``{prefix}audit:{S}``, see
:mod:`.keys`). Every read is ``lua/trail.lua``: one call per Redis node for all the
shards it serves (a Cluster's primaries: 16384 shards in as many calls as there are
primaries, each a few milliseconds of Redis time; docs/audit.md). A record's id is its
entry id, followed by ``@slot`` on a Cluster: unique across the deployment, the key to
de-duplicate a redelivery.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from ..core.trail import AuditRecord, entry_order
from .keys import KeyNames

__all__ = ["RedisTrail", "TrailCursor"]

# Where a reader of the whole trail stands: the last entry id seen per shard.
TrailCursor = dict[str, str]

_SOURCE = resources.files(__package__).joinpath("lua", "trail.lua").read_text("utf-8")
_SHA = hashlib.sha1(_SOURCE.encode(), usedforsecurity=False).hexdigest()


async def run_trail_script(
    execute: Callable[..., Any], keys: Sequence[str], argv: Sequence[Any]
) -> Any:
    """``lua/trail.lua`` on shards ``keys`` through ``execute`` (a client's or a node's
    ``execute_command``; loaded when the node does not know it yet). ``argv``: what,
    group, consumer, count, then per shard its cursor (after), or the idle time
    (reclaim)."""
    args = [*argv[:4], len(keys), *keys, *argv[4:]]
    try:
        return await execute("EVALSHA", _SHA, 0, *args)
    except NoScriptError:  # loaded, not EVAL'd: an ACL user needs only evalsha
        await execute("SCRIPT", "LOAD", _SOURCE)
        return await execute("EVALSHA", _SHA, 0, *args)


class RedisTrail:
    """The trail-reading half of :class:`~.redis.RedisBackend` (a mixin: it uses the
    backend's client, names and :meth:`call`)."""

    _redis: aioredis.Redis
    names: KeyNames
    call: Callable[..., Any]

    # -- the shards, one Redis (a Cluster overrides) -------------------------------

    def audit_shards(self) -> list[str]:
        """Every stream shard of the trail (one on one Redis)."""
        return [self.names.audit()]

    def _record_id(self, shard: str, entry_id: str) -> str:
        return entry_id

    def _shard_of(self, record_id: str) -> tuple[str, str]:
        return self.names.audit(), record_id

    async def _per_node(
        self, shards: Sequence[str], argv: Callable[[Sequence[str]], list[Any]]
    ) -> list[tuple[str, Any]]:
        """``lua/trail.lua`` on ``shards`` with ``argv(shards)``: (shard, entries) for each
        shard with records."""
        reply = await self.call(run_trail_script, self._redis.execute_command, shards, argv(shards))
        return [(shards[int(i) - 1], entries) for i, entries in reply]

    async def _sweep(
        self,
        what: str,
        group: str = "",
        consumer: str = "",
        count: int = 100,
        *extra: Any,
        cursor: TrailCursor | None = None,
    ) -> list[AuditRecord]:
        def argv(shards: Sequence[str]) -> list[Any]:
            tail = [cursor.get(shard, "") for shard in shards] if cursor is not None else []
            return [what, group, consumer, count, *tail, *extra]

        found = await self._per_node(self.audit_shards(), argv)
        records: list[AuditRecord] = []
        for shard, entries in found:
            if cursor is not None and entries:
                cursor[shard] = entries[0 if what == "latest" else -1][0]
            records += [
                AuditRecord.from_fields(
                    self._record_id(shard, entry_id), dict(zip(flat[::2], flat[1::2], strict=True))
                )
                for entry_id, flat in entries
                if flat  # an entry trimmed while pending
            ]
        records.sort(key=lambda record: entry_order(record.id))
        return records

    # -- consumer groups ---------------------------------------------------------------

    async def audit_read(self, group: str, consumer: str, *, count: int = 100) -> list[AuditRecord]:
        """Records no consumer of ``group`` was given yet (at most ``count`` per shard),
        now pending for ``consumer`` until :meth:`audit_ack`. A shard without the group
        (one not in the settings' list) gets it, from its oldest record."""
        return await self._sweep("read", group, consumer, count)

    async def audit_reclaim(
        self, group: str, consumer: str, *, idle_ms: int, count: int = 100
    ) -> list[AuditRecord]:
        """Records of ``group`` delivered at least ``idle_ms`` ago and never
        acknowledged (their consumer died, say), now pending for ``consumer``."""
        return await self._sweep("reclaim", group, consumer, count, idle_ms)

    async def audit_ack(self, group: str, ids: Sequence[str]) -> None:
        """Acknowledge records of ``group``: never delivered again."""
        by_shard: dict[str, list[str]] = {}
        for record_id in ids:
            shard, entry_id = self._shard_of(record_id)
            by_shard.setdefault(shard, []).append(entry_id)
        for shard, entry_ids in by_shard.items():
            await self.call(self._redis.xack, shard, group, *entry_ids)

    # -- plain reading (audit tail) ------------------------------------------------------

    async def audit_latest(self, count: int) -> tuple[list[AuditRecord], TrailCursor]:
        """The newest ``count`` records, oldest first, and a cursor after them all."""
        cursor: TrailCursor = {}
        records = await self._sweep("latest", "", "", count, cursor=cursor)
        return records[-count:] if count > 0 else [], cursor

    async def audit_after(
        self, cursor: TrailCursor, count: int = 1000
    ) -> tuple[list[AuditRecord], TrailCursor]:
        """Records after ``cursor`` (at most ``count`` per shard), oldest first, and the
        cursor after them."""
        moved = dict(cursor)
        return await self._sweep("after", "", "", count, cursor=moved), moved
