"""The demo's policy switcher: the form's three choices and the :class:`Policy` they make.

The chosen policy lives in the demo process (``watch.policy``): with several workers,
the form changes the policy of the worker that served it; start those with the
``SESSIONWATCH_*`` policy variables instead (docs/deployment.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import LIMIT_ACTIONS, LimitAction, Policy

__all__ = ["DemoPolicy"]


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    """The switchable part of the policy, as the demo's form shows it."""

    one_tab: bool = True
    devices: int | None = None
    on_limit: LimitAction = "evict_oldest"

    def to_policy(self) -> Policy:
        return Policy(
            tabs_per_session=1 if self.one_tab else None,
            sessions_per_user=self.devices,
            on_limit=self.on_limit,
        )

    @classmethod
    def of(cls, policy: Policy) -> DemoPolicy:
        """The form's view of ``policy`` (a callable session limit shows as none)."""
        limit = policy.sessions_per_user
        return cls(
            one_tab=policy.exclusive_tabs,
            devices=limit if isinstance(limit, int) else None,
            on_limit=policy.on_limit,
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
        if on_limit not in LIMIT_ACTIONS:
            raise ValueError("on_limit must be 'evict_oldest', 'deny' or 'ask'")
        return cls(one_tab=tabs == "one", devices=devices, on_limit=on_limit)
