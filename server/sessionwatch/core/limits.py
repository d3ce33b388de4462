"""Abuse limits per client address (pure: no I/O, the clock is passed in).

Limits per session and per user do not stop one client that opens many anonymous
sessions: the review's 1,500 sockets from 50 anonymous sessions of one address were
all accepted, and 200 sockets sending ``hello`` 15 times a second drove ~15k Redis
scripts in 5 s. :class:`AddressLimits` counts, per address and per process:

- open sockets (:meth:`AddressLimits.open_socket` / :meth:`~AddressLimits.close_socket`),
- new anonymous sessions a second (:meth:`AddressLimits.new_session`),
- ``hello`` messages a second, over all the address's sockets (:meth:`AddressLimits.hello`).

:class:`LoginLimits` counts sign-ins a second per user id and per address (issue 22,
item 6: one client minted 3,041 sessions for one user).

Rates are token buckets (bursts of one second's worth); the table of addresses is
bounded (least recently seen forgotten first), so a spray of addresses cannot grow it.
An IPv6 client counts by its /64 (one subscriber's prefix). A connection without an IP
address (``None``, Quart's test client ``<local>``, a Unix socket without a proxy's
``X-Forwarded-For``) is not limited here.

These buckets are per process: N workers on H hosts let N x H times a rate through.
The rates that matter across a deployment (new sessions, sign-ins) are also counted on
the backend (issue 23): a :class:`RateRule` names one, and :func:`gcra_take` is its
arithmetic, the same in the memory backend and in ``backends/lua/rate.lua``.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LOGIN_BURST_SECONDS",
    "AddressCounts",
    "AddressLimits",
    "LoginLimits",
    "RateBuckets",
    "RateCheck",
    "RateRule",
    "address_key",
    "gcra_take",
]


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
    """One token bucket per key: ``rate`` a second, bursts of ``burst`` (by default
    ``max(rate, 1)``: one second's worth).

    Args:
        rate: tokens a second.
        burst: the bucket's size.
        max_keys: keys kept; the least recently used is forgotten beyond it (a
            forgotten key starts again with a full bucket).
    """

    def __init__(self, rate: float, *, burst: float | None = None, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(rate, 1.0) if burst is None else max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def take(self, key: str, now: float) -> bool:
        """Take a token for ``key`` at monotonic time ``now``; False when empty."""
        bucket = self._refilled(key, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def has_token(self, key: str, now: float) -> bool:
        """Whether :meth:`take` would succeed now (taking nothing)."""
        return self._refilled(key, now).tokens >= 1.0

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


# Sign-ins come in small bursts (a user opening several devices, a retry): a bucket
# holds this many seconds' worth, at least one sign-in.
LOGIN_BURST_SECONDS = 5.0


class LoginLimits:
    """Sign-ins a second per user and per client address, in one process.

    Every sign-in is one login script that reads the user's sessions; an unlimited
    rate let one client mint 3,041 sessions for one user (issue 22, item 6). A sign-in
    over either rate is refused (429 ``rate_limited``) before it reaches the backend.
    Per process: with several workers or hosts the deployment's rate is this times
    their number, so the extension also counts sign-ins on the backend
    (``engine/shared_limits.py``); this bucket is the free first check.

    Args:
        per_user: sign-ins a second of one user id.
        per_address: sign-ins a second from one client address (its /64 for IPv6).
    """

    def __init__(self, *, per_user: float, per_address: float) -> None:
        self.users = RateBuckets(per_user, burst=per_user * LOGIN_BURST_SECONDS)
        self.addresses = RateBuckets(per_address, burst=per_address * LOGIN_BURST_SECONDS)

    def sign_in(self, user: str, address: str | None, now: float) -> float | None:
        """Count a sign-in of ``user`` from ``address`` at monotonic time ``now``.

        Returns ``None`` when it may go ahead, else the seconds to wait (nothing of
        the other bucket is taken when one refuses)."""
        key = address_key(address)
        if key is not None and not self.addresses.has_token(key, now):
            return self.addresses.retry_after(key)
        if not self.users.take(user, now):
            return self.users.retry_after(user)
        if key is not None:
            self.addresses.take(key, now)
        return None


@dataclass(frozen=True, slots=True)
class RateRule:
    """A rate counted across the deployment, on the backend: ``per_second`` events of
    one subject a second, in bursts of ``burst``.

    ``name`` goes into the key (``{prefix}r:{name}:{subject}``); ``per`` says what the
    subject is: a client address (as :func:`address_key` gives it) or a user id (on a
    Redis Cluster the key then shares the user's slot)."""

    name: str
    per_second: float
    burst: float
    per: Literal["address", "user"] = "address"

    @property
    def interval_ms(self) -> float:
        """Milliseconds one event uses up."""
        return 1000.0 / self.per_second

    @property
    def capacity_ms(self) -> float:
        """How far ahead of now the bucket's theoretical arrival time may run."""
        return max(self.burst, 1.0) * self.interval_ms


# One event of ``subject`` under ``rule`` (what Backend.take_rates counts).
RateCheck = tuple[RateRule, str]


def gcra_take(tat: float | None, now: int, rule: RateRule) -> tuple[float | None, int]:
    """One event of a subject at ``now`` (epoch ms) under ``rule`` (GCRA: a token
    bucket kept as one number, the theoretical arrival time ``tat``, ``None`` when the
    subject has none).

    Returns ``(new tat, 0)`` when the event is let through — the caller stores the new
    tat until it has passed — else ``(None, milliseconds until one would be)`` with
    nothing to store."""
    start = now if tat is None or tat < now else tat
    after = start + rule.interval_ms
    if after - now > rule.capacity_ms:
        return None, max(1, math.ceil(after - now - rule.capacity_ms))
    return after, 0
