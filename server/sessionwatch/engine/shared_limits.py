"""The abuse rates counted across the whole deployment, on the backend (issue 23).

The extension's own buckets (:mod:`sessionwatch.core.limits`) are per process: with N
workers on H hosts one address could start N x H times ``max_new_sessions_per_second``
sessions and sign in N x H times as often as allowed. The same rates are counted here a
second time, on the backend every process shares (:meth:`Backend.take_rates`: one small
script on Redis), after the free per-process check has let the request through:

- a new anonymous session: one count per client address (``new_sessions``);
- a sign-in: one per user id (``logins_user``) and one per client address
  (``logins_address``), in one script, all or nothing (on a Redis Cluster the two
  keys live in different slots: two scripts at once, and a refusal by one leaves the
  other's count taken).

Hellos are not counted here: each costs one backend read already, and a shared count
would be a second script per hello, doubling what a hello storm costs Redis instead of
capping it; the per-process bucket refuses them at no cost (docs/security.md).

Times are the wall clock (as the per-process buckets use real time, not the extension's
injectable clock). A backend that cannot be reached raises
:class:`~sessionwatch.BackendUnavailable`: the request fails closed (503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..backends import Backend
from ..core.audit import security_event
from ..core.config import Settings
from ..core.exceptions import RateLimited
from ..core.limits import LOGIN_BURST_SECONDS, RateCheck, RateRule, address_key

__all__ = ["DeploymentLimits"]


class DeploymentLimits:
    """New sessions and sign-ins a second, per address and per user, for every process.

    Args:
        backend: the shared backend.
        settings: the rates (the ``max_*_per_second`` settings) and whether to count
            them here at all (``shared_rate_limits``).
        clock: seconds since the epoch (tests pass their own).
    """

    def __init__(
        self, backend: Backend, settings: Settings, clock: Callable[[], float] = time.time
    ) -> None:
        self._backend = backend
        self._clock = clock
        self.enabled = settings.shared_rate_limits
        per_second = settings.max_new_sessions_per_second
        # Bursts as the per-process buckets have them (core.limits).
        self.new_sessions = RateRule("new_sessions", per_second, max(per_second, 1.0))
        per_address = settings.max_logins_per_address_per_second
        self.logins_per_address = RateRule(
            "logins_address", per_address, per_address * LOGIN_BURST_SECONDS
        )
        per_user = settings.max_logins_per_user_per_second
        self.logins_per_user = RateRule(
            "logins_user", per_user, per_user * LOGIN_BURST_SECONDS, per="user"
        )

    def _now(self) -> int:
        return int(self._clock() * 1000)

    async def new_session(self, address: str | None) -> None:
        """Count a new anonymous session of ``address``.

        Raises:
            RateLimited: the address started its deployment-wide share already.
            BackendUnavailable: the backend cannot be reached.
        """
        key = address_key(address)
        if not self.enabled or key is None:
            return
        wait = await self._backend.take_rates([(self.new_sessions, key)], now=self._now())
        if wait:
            security_event(
                "rate_limited",
                logging.WARNING,
                limit="new_sessions",
                scope="deployment",
                address=address,
            )
            raise RateLimited(wait / 1000)

    async def sign_in(self, user: str, address: str | None) -> None:
        """Count a sign-in of ``user`` from ``address``.

        Raises:
            RateLimited: the user or the address signed in too often, deployment-wide.
            BackendUnavailable: the backend cannot be reached.
        """
        if not self.enabled:
            return
        key = address_key(address)
        checks: list[RateCheck] = [(self.logins_per_user, user)]
        if key is not None:
            checks.append((self.logins_per_address, key))
        wait = await self._backend.take_rates(checks, now=self._now())
        if wait:
            security_event(
                "rate_limited",
                logging.WARNING,
                limit="logins",
                scope="deployment",
                user=user,
                address=address,
            )
            raise RateLimited(wait / 1000)
