"""The demo's policy switcher: one shared policy for every worker process.

The choice is the backend's shared value ``demo:policy`` (:meth:`Backend.get_value`):
on Redis every worker applies the same rule; on the memory backend (one process) it
lives in this process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ... import Backend, BackendUnavailable, Policy

__all__ = ["DemoPolicy", "PolicyStore"]

logger = logging.getLogger(__name__)

_CACHE_SECONDS = 1.0
_NAME = "demo:policy"  # the backend's shared value holding the policy


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    """The switchable part of the policy, as the demo's form shows it."""

    one_tab: bool = True
    devices: int | None = None
    on_limit: Literal["evict_oldest", "deny"] = "evict_oldest"

    def to_policy(self) -> Policy:
        return Policy(
            tabs_per_session=1 if self.one_tab else None,
            sessions_per_user=self.devices,
            on_limit=self.on_limit,
        )

    @classmethod
    def from_form(cls, form: Any) -> DemoPolicy:
        """Parse the switcher form (or its JSON). Raises :class:`ValueError` naming the
        field for anything the form cannot send (answered 400 ``bad_request``)."""
        tabs = form.get("tabs", "one")
        if tabs not in ("one", "many"):
            raise ValueError("tabs must be 'one' or 'many'")
        devices_raw = form.get("devices", "")
        devices: int | None
        if devices_raw in ("", None):
            devices = None
        elif isinstance(devices_raw, int) and not isinstance(devices_raw, bool):
            devices = devices_raw
        elif isinstance(devices_raw, str) and devices_raw.isascii() and devices_raw.isdigit():
            devices = int(devices_raw)  # ASCII digits only: "²".isdigit() is true too
        else:
            raise ValueError("devices must be empty or a whole number from 1 to 10")
        if devices is not None and not 1 <= devices <= 10:
            raise ValueError("devices must be empty or a whole number from 1 to 10")
        on_limit = form.get("on_limit", "evict_oldest")
        if on_limit not in ("evict_oldest", "deny"):
            raise ValueError("on_limit must be 'evict_oldest' or 'deny'")
        return cls(one_tab=tabs == "one", devices=devices, on_limit=on_limit)


class PolicyStore:
    """Reads and writes the demo policy, cached for a second per process."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._cached: tuple[float, DemoPolicy] | None = None

    async def get(self, *, fresh: bool = False) -> DemoPolicy:
        """The shared policy; up to a second old unless ``fresh``."""
        now = time.monotonic()
        if not fresh and self._cached is not None and now - self._cached[0] < _CACHE_SECONDS:
            return self._cached[1]
        raw = await self._backend.get_value(_NAME)  # BackendUnavailable → 503
        policy = DemoPolicy(**json.loads(raw)) if raw else DemoPolicy()
        self._cached = (now, policy)
        return policy

    async def set(self, policy: DemoPolicy) -> None:
        body = {"one_tab": policy.one_tab, "devices": policy.devices, "on_limit": policy.on_limit}
        await self._backend.set_value(_NAME, json.dumps(body))
        self._cached = (time.monotonic(), policy)

    async def follow(self, apply: Callable[[DemoPolicy], None]) -> None:
        """Apply the shared policy now and then every second, until cancelled (another
        worker's change arrives within a second; a Redis outage keeps the last one)."""
        failing = False
        while True:
            try:
                apply(await self.get())
                failing = False
            except BackendUnavailable as exc:
                if not failing:
                    logger.warning("demo policy not refreshed; keeping the last one: %s", exc)
                failing = True
            await asyncio.sleep(_CACHE_SECONDS)
