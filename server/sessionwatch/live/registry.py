"""This process's sockets, by session and by user, and the channels they hold.

A channel is reference-counted by its local sockets: it is subscribed when the first
socket of its session (or user) arrives and unsubscribed when the last one leaves. The
per-session and per-user socket caps are checked here, where the sockets are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..backends.base import Subscription, session_channel, user_channel
from ..core.exceptions import BackendUnavailable
from .connection import Connection, TooManySockets

__all__ = ["Group", "Registry", "SessionGroup", "UserGroup"]

logger = logging.getLogger(__name__)


class Group:
    """The local sockets of one channel."""

    __slots__ = ("channel", "conns", "ready")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.conns: set[Connection] = set()
        self.ready: asyncio.Future[None] | None = None  # the pending subscribe

    def subscribed(self, ready: asyncio.Future[None]) -> None:
        # Dropped once done: a finished task kept per session costs ~0.7 KB.
        if self.ready is ready:
            self.ready = None


class SessionGroup(Group):
    """A session's local sockets and its expiry deadline (kept by :mod:`.expiry`)."""

    __slots__ = ("checking", "expires_at", "id", "timer", "warned")

    def __init__(self, channel: str, public_id: str) -> None:
        super().__init__(channel)
        self.id = public_id
        self.expires_at: int | None = None
        self.warned: int | None = None  # the deadline ``expiring`` was sent for
        self.timer: list[Any] | None = None  # its entry in the expiry timers
        self.checking = False


class UserGroup(Group):
    """A signed-in user's local sockets (the ``signed_in`` notices)."""

    __slots__ = ()


class Registry:
    """The local sockets and their channel groups.

    Args:
        key_prefix: the backend's key prefix (channel names).
        max_per_session: sockets one session may hold in this process.
        max_per_user: sockets one user may hold in this process.
    """

    def __init__(self, key_prefix: str, *, max_per_session: int, max_per_user: int) -> None:
        self._prefix = key_prefix
        self._max_per_session = max_per_session
        self._max_per_user = max_per_user
        self.subscription: Subscription | None = None  # set while the hub runs
        self.sockets: set[Connection] = set()
        self.channels: dict[str, Group] = {}  # channel -> local sockets
        self.sessions: dict[str, SessionGroup] = {}
        self.users: dict[str, UserGroup] = {}
        self.empty = asyncio.Event()  # set while no socket is registered
        self.empty.set()

    def current(self, group: SessionGroup) -> bool:
        """True while ``group`` is its session's registered group (not forgotten)."""
        return self.sessions.get(group.id) is group

    async def attach(self, conn: Connection) -> None:
        """Register a socket and wait until its channels are subscribed (so a state
        check made afterwards cannot miss an event).

        Raises:
            TooManySockets: the session or the user holds its maximum of sockets here.
            BackendUnavailable: there is no subscription (the hub is not running).
        """
        subscription = self.subscription
        if subscription is None:
            raise BackendUnavailable("the live-push hub is not running")
        session = self.sessions.get(conn.session)
        if session is not None and len(session.conns) >= self._max_per_session:
            raise TooManySockets("too many sockets for this session")
        user = self.users.get(conn.user) if conn.user else None
        if user is not None and len(user.conns) >= self._max_per_user:
            raise TooManySockets("too many sockets for this user")
        groups: list[Group] = []
        if session is None:
            session = SessionGroup(session_channel(self._prefix, conn.session), conn.session)
            self.sessions[conn.session] = session
        groups.append(session)
        if conn.user:
            if user is None:
                user = UserGroup(user_channel(self._prefix, conn.user))
                self.users[conn.user] = user
            groups.append(user)
        self.sockets.add(conn)
        self.empty.clear()
        waits = []
        for group in groups:
            if not group.conns:
                self.channels[group.channel] = group
                group.ready = asyncio.ensure_future(subscription.subscribe(group.channel))
                group.ready.add_done_callback(group.subscribed)
            group.conns.add(conn)
            if group.ready is not None:
                waits.append(group.ready)
        for ready in waits:
            with contextlib.suppress(Exception):  # logged by the subscription
                await asyncio.shield(ready)

    def forget(self, conn: Connection) -> tuple[list[str], SessionGroup | None]:
        """Unregister a socket. Returns the channels it was the last local socket of
        (to :meth:`release`) and its session's group if that is gone with it."""
        if conn not in self.sockets:
            return [], None
        self.sockets.discard(conn)
        gone = []
        session = self.sessions.get(conn.session)
        user = self.users.get(conn.user) if conn.user else None
        for group in (session, user):
            if group is None:
                continue
            group.conns.discard(conn)
            if not group.conns:
                gone.append(group.channel)
                del self.channels[group.channel]
        ended = None
        if session is not None and not session.conns:
            del self.sessions[conn.session]
            ended = session
        if user is not None and not user.conns and conn.user:
            del self.users[conn.user]
        if not self.sockets:
            self.empty.set()
        return gone, ended

    async def release(self, channels: list[str]) -> None:
        """Unsubscribe channels no local socket holds any more (failures logged)."""
        # Unsubscribe updates the subscription's channel set before it awaits, so a
        # socket attaching meanwhile subscribes afresh.
        if channels and self.subscription is not None:
            try:
                await self.subscription.unsubscribe(*channels)
            except Exception:
                logger.exception("unsubscribe failed")
