"""Which ``Origin`` may use the API and open sockets (docs/protocol.md §2, §3), and
which methods need that check.

One rule for the claim route, the Quart WebSocket view and the raw ASGI handshake:
an exact match against the allow-list, which defaults to the app's own origin only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .config import Settings

__all__ = ["SAFE_METHODS", "OriginRule", "is_unsafe_method", "own_origin_of"]

# RFC 9110 §9.2.1. Every other method, one the server does not know included, may
# change state: it gets the origin check and needs the active tab.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def is_unsafe_method(method: str) -> bool:
    """Whether a request of ``method`` may change state (anything but a safe method)."""
    return method not in SAFE_METHODS


@dataclass(frozen=True, slots=True)
class OriginRule:
    """``allowed``: the allowed origins (empty: the app's own origin only);
    ``allow_missing``: whether a request without ``Origin`` is accepted."""

    allowed: tuple[str, ...] = ()
    allow_missing: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OriginRule:
        return cls(tuple(settings.allowed_origins), settings.allow_missing_origin)

    def allows(self, origin: str | None, own: str) -> bool:
        """Exact match of ``origin`` against the allow-list (``own``: the app's own
        origin as this request sees it)."""
        if origin is None:
            return self.allow_missing
        return origin in (self.allowed or (own,))

    def foreign(self, origin: str | None, sec_fetch_site: str | None, own: str) -> str | None:
        """Why a request with these ``Origin`` and ``Sec-Fetch-Site`` headers was sent by
        a page of a foreign origin, or ``None``: its ``Origin`` is not allowed, or,
        without ``Origin``, ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site`` (a
        sibling subdomain is same-site but not same-origin)."""
        if origin is not None:
            return None if self.allows(origin, own) else f"Origin {origin}"
        if sec_fetch_site in ("cross-site", "same-site"):
            return f"Sec-Fetch-Site {sec_fetch_site}"
        return None


def own_origin_of(scheme: str, host: str) -> str:
    """The origin of a request to ``host`` over ``scheme`` (ws maps to http, wss to
    https): scheme://host[:port]."""
    return f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}"
