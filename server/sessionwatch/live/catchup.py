"""Catch-up: local sockets checked against stored state.

Events tell sockets what changed; a socket that may have missed one (it just said
``hello``, the pub/sub connection was lost, a deadline passed) is told the truth of a
fresh state read instead: ``ready``, ``superseded`` or a terminal close. The supersede
rule (:func:`~sessionwatch.core.tabs.tab_status`) is applied with the tab policy of the
moment, asked for on each use: the policy can change while the app runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..backends.base import Backend, Lookup, Timeouts
from ..core.events import TERMINAL_CLOSE_CODES, CloseCode, ended_message, ready_message
from ..core.tabs import tab_status
from .connection import Connection
from .registry import Registry, SessionGroup
from .routing import Deliveries

__all__ = ["CatchUp"]


class CatchUp:
    """Tells sockets the truth of stored state.

    Args:
        backend: where the sessions are read.
        timeouts: the sessions' timeouts, as the backend takes them.
        now_ms: the clock, in epoch milliseconds.
        registry: the local sockets.
        deliveries: where the notices sent are counted.
        set_deadline: moves a session's expiry deadline.
        exclusive_tabs: whether a newer claim supersedes older tabs *now* (the policy's
            :attr:`~sessionwatch.core.policy.Policy.exclusive_tabs`, read on each call).
    """

    def __init__(
        self,
        backend: Backend,
        timeouts: Timeouts,
        now_ms: Callable[[], int],
        registry: Registry,
        deliveries: Deliveries,
        set_deadline: Callable[[SessionGroup, int], None],
        exclusive_tabs: Callable[[], bool],
    ) -> None:
        self._backend = backend
        self._timeouts = timeouts
        self._now_ms = now_ms
        self._sessions = registry.sessions
        self._deliveries = deliveries
        self._set_deadline = set_deadline
        self._exclusive_tabs = exclusive_tabs

    async def load(self, session_id: str) -> Lookup:
        """The session's current state, without touching it (a socket's check)."""
        return await self._backend.load(
            session_id, timeouts=self._timeouts, now=self._now_ms(), touch=False
        )

    def settle(self, conn: Connection, found: Lookup) -> None:
        """Tell ``conn`` the truth of a state read made after it subscribed: ``ready``,
        ``superseded``, or a terminal close (4007 for a token that does not verify)."""
        record = found.record
        if conn.closing:
            return
        if record is None:
            self.end([conn], found.ended)
            return
        gen = conn.gen
        status = tab_status(gen, record.gen, exclusive=self._exclusive_tabs())
        if status == "invalid" or gen is None:
            conn.finish(CloseCode.TAB_INVALID)
            return
        group = self._sessions.get(conn.session)
        expires_at = record.expires_at(self._timeouts.idle)
        if group is not None:
            self._set_deadline(group, expires_at)
            expires_at = max(expires_at, group.expires_at or 0)
        if status == "superseded":
            self._deliveries.count("superseded", conn.supersede(record.gen, record.claimed_by))
        elif conn.told_gen <= gen:  # else a newer claim was already pushed
            conn.push(ready_message(gen, expires_at, record.id, record.user))

    async def check(self, group: SessionGroup) -> None:
        """Re-read a session and correct its sockets (expiry and resync). Raises what
        the backend raises (:class:`~sessionwatch.core.exceptions.BackendUnavailable`)."""
        found = await self.load(group.id)
        record = found.record
        if record is None:
            group.expires_at = None  # over: no more timers while its sockets close
            self.end(group.conns, found.ended)
            return
        exclusive = self._exclusive_tabs()
        told = sum(
            conn.supersede(record.gen, record.claimed_by)
            for conn in list(group.conns)
            if conn.bound and tab_status(conn.gen, record.gen, exclusive=exclusive) == "superseded"
        )
        self._deliveries.count("superseded", told)
        self._set_deadline(group, record.expires_at(self._timeouts.idle))

    def end(self, conns: Iterable[Connection], ended: str | None) -> None:
        """Close sockets of a session that stored state says is over. The event (with
        its ``by``/``reason``) normally got there first; this is the fallback."""
        kind = ended if ended in TERMINAL_CLOSE_CODES else "rotated"
        message = ended_message(kind) if kind != "rotated" else None
        open_conns = [conn for conn in conns if not conn.closing]
        for conn in open_conns:
            conn.finish(TERMINAL_CLOSE_CODES[kind], message)
        self._deliveries.count(kind, len(open_conns))
