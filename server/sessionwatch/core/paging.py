"""Pages of a user's sessions (pure: no I/O).

A listing returns at most :data:`MAX_PAGE_SIZE` sessions per call, in a stable order —
oldest first, by ``(created, public id)``, the order of the user's index — and an
opaque cursor naming the last session it returned; the next call starts right after it.
The cursor stays valid when that session ends meanwhile (the order is by value, not by
position). One call to the backend thus reads a bounded number of records: a user with
thousands of sessions cannot make one listing cost thousands of reads (issue 22, item 6).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

from .exceptions import InvalidPage

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "PageCursor",
    "page_size",
]

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 100
_MAX_CURSOR: Final = 128  # characters of the encoded form
_BAD_CURSOR: Final = "the cursor is not one a listing returned"
_BAD_LIMIT: Final = "limit must be a whole number of at least 1 (pages hold at most 100)"
_POSITION: Final = re.compile(
    r"(0|[1-9][0-9]{0,15}):([A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64})?)"
)


@dataclass(frozen=True, slots=True, order=True)
class PageCursor:
    """Where a page ended: the ``created`` time (ms) and public id of its last session."""

    created: int
    public_id: str

    def encode(self) -> str:
        """The opaque form handed to clients (URL-safe, no padding)."""
        raw = f"{self.created}:{self.public_id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """Inverse of :meth:`encode`.

        Raises:
            InvalidPage: ``text`` is not a cursor this module made (a ``ValueError``).
        """
        if not isinstance(text, str) or not 0 < len(text) <= _MAX_CURSOR or not text.isascii():
            raise InvalidPage(_BAD_CURSOR)
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
        except (binascii.Error, ValueError):
            raise InvalidPage(_BAD_CURSOR) from None
        found = _POSITION.fullmatch(raw)
        if found is None:
            raise InvalidPage(_BAD_CURSOR)
        return cls(int(found.group(1)), found.group(2))


def page_size(requested: str | int | None) -> int:
    """The page size for a requested ``limit``: the default when none is given, at most
    :data:`MAX_PAGE_SIZE` (larger requests are clamped).

    Raises:
        InvalidPage: ``requested`` is not a whole number of at least 1.
    """
    if requested is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(requested, str):
        if not requested.isascii() or not requested.isdigit() or len(requested) > 6:
            raise InvalidPage(_BAD_LIMIT)
        requested = int(requested)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise InvalidPage(_BAD_LIMIT)
    return min(requested, MAX_PAGE_SIZE)
