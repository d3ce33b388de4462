"""What the WebSocket door applies to a socket before and around the hub, per process.

- ``openings``: opening sockets take turns (:mod:`.admission`);
- ``address_limits``: sockets and hellos per client address (new sessions per address
  are counted by the extension, in the same object);
- ``read_deadlines``: each socket's hello and heartbeat time-out, on one loop timer
  (:mod:`.timers`).

The hub never uses them; the door (:mod:`.endpoint`, :mod:`.asgi`) does.
"""

from __future__ import annotations

from typing import Final

from ..core.config import Settings
from ..core.limits import AddressLimits
from .admission import Admission
from .connection import Connection
from .timers import Timers

__all__ = ["OPENING_WAIT", "SocketGates"]

# Seconds a handshake may wait for its turn to open (admission.py) before it is refused
# 503 ``busy``: long enough for a worker to work through a reconnect storm's queue.
OPENING_WAIT: Final = 30.0


class SocketGates:
    """The door's per-process gates (``watch.gates``).

    Args:
        settings: the extension's settings (the limits).
    """

    def __init__(self, settings: Settings) -> None:
        self._max_opening = settings.max_opening_sockets
        self.openings = Admission(self._max_opening, OPENING_WAIT)
        self.read_deadlines: Timers[Connection] = Timers(Connection.read_timed_out)
        self.address_limits = AddressLimits(
            max_sockets=settings.max_sockets_per_address,
            new_sessions_per_second=settings.max_new_sessions_per_second,
            hellos_per_second=settings.max_hellos_per_second,
        )

    def start(self) -> None:
        """Open for a serving: a fresh admission (its semaphore belongs to the loop)."""
        self.openings = Admission(self._max_opening, OPENING_WAIT)

    def stop(self) -> None:
        """Forget the read deadlines (after the hub closed every socket)."""
        self.read_deadlines.clear()

    def stats(self) -> dict[str, int]:
        """Gauges ``opening``, ``opening_queued`` and the counter ``opening_refused``."""
        openings = self.openings
        return {
            "opening": openings.opening,
            "opening_queued": openings.waiting,
            "opening_refused": openings.refused,
        }
