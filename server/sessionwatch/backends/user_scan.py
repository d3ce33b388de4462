"""Enumerating users for the admin tools, with a bounded cost per page.

No backend keeps a registry of users (one more write per sign-in, one more thing to
prune); their indexes are the registry. On Redis a page is a few ``SCAN`` steps with
``MATCH`` over the index keys (never ``KEYS``, which blocks the server for the whole
keyspace): at most :data:`SCAN_STEPS` calls, each asking ``COUNT`` = the page size, so
one page examines a bounded number of keys however many the deployment holds, and a
page may be short, even empty, yet not the last. On a Cluster each primary is scanned
in turn (the cursor names the node and its own cursor). ``SCAN`` returns every key that
exists for the whole listing at least once; a user may appear twice across pages (a
rehash) and one who signs in meanwhile may be missed, which a support listing accepts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from ..core.exceptions import InvalidPage
from ..core.paging import page_size

__all__ = [
    "SCAN_STEPS",
    "UserPage",
    "decode_cursor",
    "encode_cursor",
    "scan_position",
    "scan_users",
]

SCAN_STEPS: Final = 8  # SCAN calls per page at most (each COUNT = the page size)
_MAX_CURSOR: Final = 256
_BAD_CURSOR: Final = "the cursor is not one a user listing returned"


@dataclass(frozen=True, slots=True)
class UserPage:
    """Users that have (or recently had) sessions, in no particular order; ``next`` is
    where the listing goes on, ``None`` when it is complete."""

    users: list[str]
    next: str | None = None


def encode_cursor(text: str) -> str:
    """The opaque form of a backend's position (URL-safe, no padding)."""
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Inverse of :func:`encode_cursor`. Raises :class:`InvalidPage`."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= _MAX_CURSOR or not cursor.isascii():
        raise InvalidPage(_BAD_CURSOR)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidPage(_BAD_CURSOR) from None


def scan_position(text: str) -> int:
    """A ``SCAN`` cursor read back from a listing cursor. Raises :class:`InvalidPage`."""
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise InvalidPage(_BAD_CURSOR)
    return int(text)


Scan = Callable[..., Awaitable[Any]]  # redis-py's scan(cursor, match=, count=)


async def scan_users(
    scan: Scan, position: int, *, pattern: str, limit: int, user_of: Callable[[str], str | None]
) -> tuple[list[str], int]:
    """Scan from ``position`` until about ``limit`` users are found, the scan ends
    (position 0) or :data:`SCAN_STEPS` calls were made. Returns the users (each once)
    and the position to go on from (0: done)."""
    limit = page_size(limit)
    users: dict[str, None] = {}
    for _ in range(SCAN_STEPS):
        position, keys = await scan(position, match=pattern, count=limit)
        position = int(position)
        for key in keys:
            user = user_of(key)
            if user is not None:
                users[user] = None
        if position == 0 or len(users) >= limit:
            break
    return list(users), position
