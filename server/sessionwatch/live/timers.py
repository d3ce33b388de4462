"""Many deadlines on one event-loop timer.

A loop timer per socket or per session costs about 0.6 KB each (a ``TimerHandle`` and
the context it copies); the hub needs one per session (expiry) and one per socket
(hello and heartbeat time-outs), most of them idle for minutes. :class:`Timers` keeps
them in a heap of small entries instead and arms a single loop timer for the earliest.

Moving a deadline later, which every heartbeat does, only updates the item's entry in
place: the entry still fires at the old time, finds the new one and is pushed back once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Timed", "Timers"]

logger = logging.getLogger(__name__)

# A loop timer may run up to its clock's resolution early; entries due this close are due.
_EARLY = 0.001
_WHEN, _SEQ, _ITEM, _DUE = range(4)


class Timed(Protocol):
    """An object :class:`Timers` can schedule: it holds its own entry (``None``: none)."""

    timer: list[Any] | None


_T = TypeVar("_T", bound=Timed)


class Timers(Generic[_T]):
    """Calls ``fire(item)`` once at each item's deadline (event-loop time, seconds).

    An item has at most one deadline; a cancelled or replaced entry stays in the heap
    until it comes up, unless more than half of the heap is stale, when it is rebuilt.
    ``fire`` must not raise (an exception is logged and the other timers still run).
    """

    def __init__(self, fire: Callable[[_T], None]) -> None:
        self._fire = fire
        # Entries are lists [when, seq, item or None (stale), due]: a heap of lists
        # compares ``when`` then the unique ``seq``, never the items.
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._stale = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def __len__(self) -> int:
        """Items scheduled."""
        return len(self._heap) - self._stale

    @property
    def entries(self) -> int:
        """Entries held, stale ones included: what the timers cost in memory. At most
        about twice :func:`len` (plus 64), since a mostly stale heap is rebuilt."""
        return len(self._heap)

    def at(self, item: _T, when: float) -> None:
        """Call ``fire(item)`` at loop time ``when`` instead of its previous deadline."""
        entry = item.timer
        if entry is not None:
            if entry[_WHEN] <= when:  # fires early, then is pushed back to ``due``
                entry[_DUE] = when
                return
            self._forget(entry)
        entry = [when, next(self._seq), item, when]
        item.timer = entry
        heapq.heappush(self._heap, entry)
        if when < self._armed_at:
            self._arm(when)

    def cancel(self, item: _T) -> None:
        """Forget the item's deadline, if any."""
        entry = item.timer
        if entry is not None:
            item.timer = None
            self._forget(entry)

    def clear(self) -> None:
        """Forget every deadline."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf
        for entry in self._heap:
            if entry[_ITEM] is not None:
                entry[_ITEM].timer = None
        self._heap.clear()
        self._stale = 0

    def _forget(self, entry: list[Any]) -> None:
        entry[_ITEM] = None
        self._stale += 1
        if self._stale > 64 and self._stale * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[_ITEM] is not None]
            heapq.heapify(self._heap)
            self._stale = 0

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = asyncio.get_running_loop().call_at(when, self._run)

    def _run(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        heap = self._heap
        now = asyncio.get_running_loop().time() + _EARLY
        due: list[_T] = []
        while heap and heap[0][_WHEN] <= now:
            entry = heap[0]
            item = entry[_ITEM]
            if item is None:
                heapq.heappop(heap)
                self._stale -= 1
            elif entry[_DUE] > now:  # moved later meanwhile
                entry[_WHEN] = entry[_DUE]
                heapq.heapreplace(heap, entry)
            else:
                heapq.heappop(heap)
                item.timer = None
                due.append(item)
        if heap:
            self._arm(heap[0][_WHEN])
        for item in due:  # after re-arming: ``fire`` may schedule again
            try:
                self._fire(item)
            except Exception:
                logger.exception("timer callback failed")
