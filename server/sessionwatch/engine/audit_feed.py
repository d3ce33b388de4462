"""The audit trail as a feed a page can poll: the newest records, then those after an
opaque cursor (the demo's admin page; docs/audit.md).

The backend's cursor is where the reader stands in each stream shard (one on one Redis
or the memory ring; one per hash slot with records on a Cluster, whose entry ids come
from different clocks, so no single id would do). This module carries it to a client
and back as opaque text and refuses anything it did not make: a bad cursor raises
:class:`~sessionwatch.core.exceptions.InvalidPage` (400 ``bad_page``) before any
backend call, never reaching a script as a malformed stream id.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Final

from ..backends import Backend
from ..core import jsonlimits
from ..core.exceptions import InvalidPage
from ..core.trail import AuditRecord

__all__ = [
    "DEFAULT_FEED_SIZE",
    "MAX_FEED_SIZE",
    "AuditFeed",
    "audit_feed",
    "decode_cursor",
    "encode_cursor",
    "feed_size",
]

DEFAULT_FEED_SIZE: Final = 50
MAX_FEED_SIZE: Final = 500
# Compressed, a shard with records costs about 10 characters (measured: 164 KB for all
# 16384 of a Cluster with ids spread over 3 hours); one Redis, about 50 in all.
_MAX_CURSOR: Final = 256 * 1024  # characters of the encoded form
_MAX_RAW: Final = 2 * 1024 * 1024  # bytes once inflated (no zip bomb)
_MAX_SHARDS: Final = 16384
_MAX_SHARD_NAME: Final = 300  # a shard's key: the prefix, "audit", a slot's tag
# A stream entry id (ms-seq, each below 2^64) or the memory ring's sequence number.
_POSITION: Final = re.compile(r"[0-9]{1,19}(?:-[0-9]{1,19})?")
_BAD_CURSOR: Final = "the cursor is not one the audit feed returned"
_BAD_COUNT: Final = f"count must be a whole number from 1 to {MAX_FEED_SIZE}"


@dataclass(frozen=True, slots=True)
class AuditFeed:
    """Records, oldest first, and the cursor to ask for what comes after them."""

    records: list[AuditRecord]
    cursor: str

    def to_json(self) -> dict[str, Any]:
        return {"records": [record.to_json() for record in self.records], "cursor": self.cursor}


def encode_cursor(position: dict[str, str]) -> str:
    """The opaque form of a backend's trail cursor (URL-safe, no padding)."""
    data = json.dumps(position, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return base64.urlsafe_b64encode(zlib.compress(data.encode("ascii"), 9)).decode().rstrip("=")


def decode_cursor(text: object) -> dict[str, str]:
    """Inverse of the encoding :func:`audit_feed` hands out.

    Raises:
        InvalidPage: ``text`` is not a cursor the feed made.
    """
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_CURSOR or not text.isascii():
        raise InvalidPage(_BAD_CURSOR)
    try:
        packed = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        inflate = zlib.decompressobj()
        data = inflate.decompress(packed, _MAX_RAW)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("too large or truncated")
        position = jsonlimits.loads(data)
    except (binascii.Error, zlib.error, ValueError):
        raise InvalidPage(_BAD_CURSOR) from None
    if (
        not isinstance(position, dict)
        or len(position) > _MAX_SHARDS
        or not all(
            isinstance(shard, str)
            and isinstance(at, str)
            and 0 < len(shard) <= _MAX_SHARD_NAME
            and _POSITION.fullmatch(at)
            for shard, at in position.items()
        )
    ):
        raise InvalidPage(_BAD_CURSOR)
    return position


def feed_size(count: object) -> int:
    """``count`` checked: a whole number from 1 to :data:`MAX_FEED_SIZE`."""
    if isinstance(count, str) and count.isascii() and count.isdigit() and len(count) <= 6:
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_FEED_SIZE:
        raise InvalidPage(_BAD_COUNT)
    return count


async def audit_feed(
    backend: Backend, *, cursor: str | None = None, count: object = DEFAULT_FEED_SIZE
) -> AuditFeed:
    """Without ``cursor``, the newest ``count`` records; with one, the records after it
    (at most ``count`` per stream shard: the next call goes on from the cursor it
    returns, so none is skipped). Raises :class:`InvalidPage` for a bad cursor or
    count, :class:`~sessionwatch.core.exceptions.BackendUnavailable`."""
    size = feed_size(count)
    if cursor is None:
        records, position = await backend.audit_latest(size)
    else:
        records, position = await backend.audit_after(decode_cursor(cursor), size)
    return AuditFeed(records, encode_cursor(position))
