"""The memory backend's audit trail: a bounded ring with consumer groups.

The same records and reading calls as a Redis stream (:mod:`.redis_trail`), for one
process: the ring keeps the newest ``max_records`` (and none older than the retention),
a group remembers what it was given and what is pending, unacknowledged.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.trail import AuditRecord, AuditSettings

__all__ = ["MemoryTrail"]

_SHARD = "memory"  # the cursor's one shard


@dataclass
class _Group:
    last: int = 0  # sequence of the last record given out
    pending: dict[int, tuple[str, float]] = field(default_factory=dict)  # seq -> consumer, when


class MemoryTrail:
    """Records in a ring; ``settings`` may be replaced (``enabled``, sizes) at any time."""

    def __init__(
        self, settings: AuditSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._ring: deque[tuple[int, str, dict[str, str]]] = deque()  # seq, id, fields
        self._seq = 0
        self._last_ms = 0
        self._in_ms = 0  # records with the id's millisecond so far
        self._groups: dict[str, _Group] = {}
        self._known: dict[str, dict[str, int]] = {}  # user -> device/place key -> last use
        self._monotonic = monotonic

    # -- writing (inside a backend operation's step) -----------------------------------

    def append(
        self,
        event: str,
        session: str,
        user: str | None,
        device: dict[str, Any],
        now: int,
        actor: str,
        **fields: Any,
    ) -> None:
        """One record, as ``_prelude.lua`` ``audit`` writes it."""
        settings = self.settings
        if not settings.enabled:
            return
        self._seq += 1
        if now > self._last_ms:
            self._last_ms, self._in_ms = now, 0
        else:  # ids grow as a stream's do, whatever the caller's clock
            self._in_ms += 1
        record_id = f"{self._last_ms}-{self._in_ms}"
        entry = {
            "event": event,
            "session": session,
            "user": user or "",
            "device": _dumps(device),
            "at": str(now),
            "actor": actor,
        }
        entry.update({k: v if isinstance(v, str) else _dumps(v) for k, v in fields.items()})
        self._ring.append((self._seq, record_id, entry))
        oldest = now - settings.retention_ms
        while self._ring and (
            len(self._ring) > settings.max_records or int(self._ring[0][2]["at"]) < oldest
        ):
            self._ring.popleft()

    def novelty(self, user: str | None, device: dict[str, Any], now: int) -> dict[str, bool] | None:
        """``new_device``/``new_place`` of ``user`` on ``device`` (then remembered), as
        ``_prelude.lua`` ``novelty``; ``None`` when anonymous or the trail is off."""
        if not self.settings.enabled or not user:
            return None
        known = self._known.setdefault(user, {})
        since = now - self.settings.retention_ms
        d = f"device {device.get('browser')}|{device.get('os')}"
        p = f"place {device.get('place')}"
        marks = {"new_device": known.get(d, -1) < since, "new_place": known.get(p, -1) < since}
        if (marks["new_device"] or marks["new_place"]) and len(known) >= 256:
            known.clear()
        known[d] = known[p] = now
        return marks

    # -- reading -------------------------------------------------------------------------

    def _record(self, seq: int, record_id: str, entry: dict[str, str]) -> AuditRecord:
        return AuditRecord.from_fields(record_id, entry)

    async def audit_read(self, group: str, consumer: str, *, count: int = 100) -> list[AuditRecord]:
        state = self._groups.setdefault(group, _Group())
        out: list[AuditRecord] = []
        for seq, record_id, entry in self._ring:
            if seq > state.last and len(out) < count:
                state.last = seq
                state.pending[seq] = (consumer, self._monotonic())
                out.append(self._record(seq, record_id, entry))
        return out

    async def audit_reclaim(
        self, group: str, consumer: str, *, idle_ms: int, count: int = 100
    ) -> list[AuditRecord]:
        state = self._groups.setdefault(group, _Group())
        now = self._monotonic()
        out: list[AuditRecord] = []
        for seq, record_id, entry in self._ring:
            given = state.pending.get(seq)
            if given is not None and (now - given[1]) * 1000 >= idle_ms and len(out) < count:
                state.pending[seq] = (consumer, now)
                out.append(self._record(seq, record_id, entry))
        return out

    async def audit_ack(self, group: str, ids: Sequence[str]) -> None:
        state = self._groups.setdefault(group, _Group())
        wanted = set(ids)
        for seq, record_id, _ in self._ring:
            if record_id in wanted:
                state.pending.pop(seq, None)

    async def audit_latest(self, count: int) -> tuple[list[AuditRecord], dict[str, str]]:
        newest = list(self._ring)[-count:] if count > 0 else []
        cursor = {_SHARD: str(self._ring[-1][0])} if self._ring else {}
        return [self._record(*item) for item in newest], cursor

    async def audit_after(
        self, cursor: dict[str, str], count: int = 1000
    ) -> tuple[list[AuditRecord], dict[str, str]]:
        after = int(cursor.get(_SHARD, "0"))
        items = [item for item in self._ring if item[0] > after][:count]
        moved = {_SHARD: str(items[-1][0])} if items else dict(cursor)
        return [self._record(*item) for item in items], moved


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
