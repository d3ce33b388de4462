"""Every user's live sessions, a page at a time: what the admin tools list (the
``sessionwatch sessions list`` command, the admin API, the demo's admin page).

A page is a bounded enumeration of users (:meth:`Backend.list_users`: a few ``SCAN``
steps on Redis) and, for each user found, the first :data:`SESSIONS_PER_USER` of their
sessions with live tab counts (one listing script each, as a user's own listing). A
user with more carries a cursor for :meth:`SessionEngine.list_sessions`; a user whose
sessions have all ended is left out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from ..core.paging import page_size
from .operations import SessionEngine, SessionInfo

__all__ = ["SESSIONS_PER_USER", "Roster", "UserSessions", "roster"]

SESSIONS_PER_USER: Final = 20


@dataclass(frozen=True, slots=True)
class UserSessions:
    """One user's first sessions; ``next_cursor`` lists the rest (``None``: no more)."""

    user: str
    sessions: list[SessionInfo]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "sessions": [session_json(info) for info in self.sessions],
            "next_cursor": self.next_cursor,
        }


@dataclass(frozen=True, slots=True)
class Roster:
    """A page of users with their sessions; ``next_cursor`` continues the listing."""

    users: list[UserSessions]
    next_cursor: str | None


def session_json(info: SessionInfo) -> dict[str, Any]:
    """A session as the admin tools show it (no ``current``: no asking session)."""
    item = info.to_json()
    item.pop("current", None)
    item["user"] = info.user
    return item


async def roster(
    engine: SessionEngine, *, cursor: str | None = None, limit: str | int | None = None
) -> Roster:
    """About ``limit`` users (default 50, at most 100) from ``cursor`` with their first
    sessions. Raises :class:`~sessionwatch.core.exceptions.InvalidPage` for a bad
    cursor or limit, :class:`~sessionwatch.core.exceptions.BackendUnavailable`."""
    page = await engine.backend.list_users(cursor=cursor, limit=page_size(limit))
    listed = await asyncio.gather(
        *(engine.list_sessions(user, limit=SESSIONS_PER_USER) for user in page.users)
    )
    users = [
        UserSessions(user, found.sessions, found.next_cursor)
        for user, found in zip(page.users, listed, strict=True)
        if found.sessions
    ]
    return Roster(sorted(users, key=lambda entry: entry.user), page.next)
