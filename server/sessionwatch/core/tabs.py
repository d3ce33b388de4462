"""Tabs (docs/protocol.md §2): how a request names its tab, what a tab token is, and
which tab of a session is the active one.

- A request names its tab with the :data:`TAB_HEADER` header (API calls) or the
  :data:`TAB_FORM_FIELD` form field (plain HTML forms), carrying the tab token.
- A tab token is ``{gen}.{mac}`` with ``mac`` an HMAC of ``gen`` under the session's
  random tab key, so tokens need no storage and verify in constant time
  (:func:`verify_tab_token`, the one MAC check, made once per request or hello).
- The supersede rule (:func:`tab_status`): with exclusive tabs only the newest claim's
  generation is active; older ones are superseded; a generation the session never
  issued is invalid. The HTTP check and the live hub both apply it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Final, Literal, TypeAlias

__all__ = [
    "MAX_TAB_TOKEN_LENGTH",
    "TAB_FORM_FIELD",
    "TAB_HEADER",
    "TabStatus",
    "make_tab_token",
    "new_tab_key",
    "tab_status",
    "verify_tab_token",
]

TAB_HEADER: Final = "X-SessionWatch-Tab"
TAB_FORM_FIELD: Final = "_sessionwatch_tab"
# Longer input is refused before any parsing (a real token is at most 39 characters).
MAX_TAB_TOKEN_LENGTH: Final = 64

TabStatus: TypeAlias = Literal["active", "superseded", "invalid", "missing"]
"""Whether a request's tab is its session's active tab: ``missing`` (no token),
``invalid`` (malformed, forged or never issued), ``superseded`` or ``active``."""

_TAB_TOKEN_RE: Final = re.compile(r"([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})")


def new_tab_key() -> str:
    """A fresh per-session key for tab-token MACs."""
    return secrets.token_urlsafe(24)


def _tab_mac(tab_key: str, gen: int) -> str:
    digest = hmac.new(tab_key.encode("ascii"), str(gen).encode("ascii"), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")[:22]


def make_tab_token(tab_key: str, gen: int) -> str:
    """The token of claim generation ``gen``."""
    return f"{gen}.{_tab_mac(tab_key, gen)}"


def verify_tab_token(token: str | None, tab_key: str) -> int | None:
    """The generation of a genuine ``token``, or ``None`` (absent, too long, malformed
    or forged). The MAC is compared in constant time."""
    if not token or len(token) > MAX_TAB_TOKEN_LENGTH:
        return None
    match = _TAB_TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    gen = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _tab_mac(tab_key, gen)):
        return None
    return gen


def tab_status(gen: int | None, current_gen: int, *, exclusive: bool) -> TabStatus:
    """The supersede rule: the status of a tab holding a verified token of generation
    ``gen`` (``None``: its token did not verify) in a session whose newest claim is
    ``current_gen``. With ``exclusive`` tabs only the newest generation is active."""
    if gen is None or gen > current_gen:
        return "invalid"
    if exclusive and gen != current_gen:
        return "superseded"
    return "active"
