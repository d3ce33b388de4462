"""Abuse limits per client address (pure: no I/O, the clock is passed in).

Limits per session and per user do not stop one client that opens many anonymous
sessions: the review's 1,500 sockets from 50 anonymous sessions of one address were
all accepted, and 200 sockets sending ``hello`` 15 times a second drove ~15k Redis
scripts in 5 s. :class:`AddressLimits` counts, per address and per process:

- open sockets (:meth:`AddressLimits.open_socket` / :meth:`~AddressLimits.close_socket`),
- new anonymous sessions a second (:meth:`AddressLimits.new_session`),
- ``hello`` messages a second, over all the address's sockets (:meth:`AddressLimits.hello`).

Rates are token buckets (bursts of one second's worth); the table of addresses is
bounded (least recently seen forgotten first), so a spray of addresses cannot grow it.
An IPv6 client counts by its /64 (one subscriber's prefix). A connection without an IP
address (``None``, Quart's test client ``<local>``, a Unix socket without a proxy's
``X-Forwarded-For``) is not limited here.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["AddressCounts", "AddressLimits", "RateBuckets", "address_key"]


def address_key(address: str | None) -> str | None:
    """What the limits count ``address`` as: an IPv4 address itself, an IPv6 address
    by its /64, anything else (no address, ``<local>``) as ``None`` (not limited)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateBuckets:
    """One token bucket per key: ``rate`` a second, bursts of ``max(rate, 1)``.

    Args:
        rate: tokens a second.
        max_keys: keys kept; the least recently used is forgotten beyond it (a
            forgotten key starts again with a full bucket).
    """

    def __init__(self, rate: float, *, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now: float) -> bool:
        """Take a token for ``key`` at monotonic time ``now``; False when empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` has a token again (0 when it has one)."""
        bucket = self._buckets.get(key)
        if bucket is None or bucket.tokens >= 1.0:
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


class AddressCounts:
    """Open things (sockets, connections) per address key, at most ``limit`` each.

    Keys are what :func:`address_key` returns; an address with nothing open holds no
    entry, so the table is as large as the addresses holding something open.
    """

    __slots__ = ("_counts", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}

    def add(self, key: str) -> bool:
        """Count one more for ``key``; False (nothing counted) at the limit."""
        count = self._counts.get(key, 0)
        if count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def discard(self, key: str) -> None:
        """Forget one counted by :meth:`add`."""
        count = self._counts.get(key, 0) - 1
        if count > 0:
            self._counts[key] = count
        else:
            self._counts.pop(key, None)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)


class AddressLimits:
    """The per-address limits of one process.

    Args:
        max_sockets: open sockets per address.
        new_sessions_per_second: anonymous sessions an address may start a second.
        hellos_per_second: ``hello`` messages an address's sockets may send a second.
    """

    def __init__(
        self, *, max_sockets: int, new_sessions_per_second: float, hellos_per_second: float
    ) -> None:
        self.max_sockets = max_sockets
        self._sockets = AddressCounts(max_sockets)
        self.sessions = RateBuckets(new_sessions_per_second)
        self.hellos = RateBuckets(hellos_per_second)

    def open_socket(self, address: str | None) -> bool:
        """Count a new socket of ``address``; False (nothing counted) at the cap."""
        key = address_key(address)
        return key is None or self._sockets.add(key)

    def close_socket(self, address: str | None) -> None:
        """Forget a socket counted by :meth:`open_socket`."""
        key = address_key(address)
        if key is not None:
            self._sockets.discard(key)

    def sockets(self, address: str) -> int:
        return self._sockets.count(address_key(address) or "")

    def new_session(self, address: str | None, now: float) -> bool:
        """May ``address`` start another anonymous session now?"""
        key = address_key(address)
        return key is None or self.sessions.take(key, now)

    def session_retry_after(self, address: str | None) -> float:
        """Seconds until ``address`` may start a session again."""
        key = address_key(address)
        return 0.0 if key is None else self.sessions.retry_after(key)

    def hello(self, address: str | None, now: float) -> bool:
        """May a socket of ``address`` have its ``hello`` checked now?"""
        key = address_key(address)
        return key is None or self.hellos.take(key, now)
