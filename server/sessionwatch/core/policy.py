"""Session policies: pure rules, no I/O.

A :class:`Policy` says how many tabs of one session may be active and how many sessions
one user may hold, and what happens at the limit. Backends apply it atomically: the
memory backend calls :func:`select_evictions` directly, the Redis script ``login.lua``
implements the same rule (the contract tests hold both to it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from .exceptions import ConfigurationError

__all__ = [
    "LIMIT_ACTIONS",
    "POLICY_KEYS",
    "LimitAction",
    "Policy",
    "SessionLimit",
    "bounded_limit",
    "policy_from_env",
    "select_evictions",
]

LimitAction: TypeAlias = Literal["evict_oldest", "deny", "ask"]
LIMIT_ACTIONS: Final = ("evict_oldest", "deny", "ask")
SessionLimit: TypeAlias = "int | Callable[[str], int | None] | None"


@dataclass(frozen=True, slots=True)
class Policy:
    """What sessionwatch enforces.

    Args:
        tabs_per_session: ``1`` — the newest claimed tab wins, older tabs are refused
            (409) and told; ``None`` — every claimed tab of the session stays valid.
        sessions_per_user: the most live sessions (devices, browsers) one user may hold:
            an ``int``, ``None`` for no limit, or a callable ``user_id -> int | None``
            for per-role limits and exemptions.
        on_limit: at the limit, ``"evict_oldest"`` ends the oldest sessions (their tabs
            are told ``evicted``); ``"deny"`` makes ``login`` raise
            :class:`~sessionwatch.SessionLimitReached`; ``"ask"`` makes it raise
            :class:`~sessionwatch.SessionChoiceRequired` with a pending sign-in that
            ``complete_login`` finishes, evicting the sessions the user chose.
        ask_timeout: seconds a pending sign-in of ``"ask"`` stays valid (default 300).
    """

    tabs_per_session: Literal[1] | None = 1
    sessions_per_user: int | Callable[[str], int | None] | None = None
    on_limit: LimitAction = "evict_oldest"
    ask_timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.tabs_per_session not in (1, None):
            raise ConfigurationError(
                f"tabs_per_session must be 1 or None, got {self.tabs_per_session!r}"
            )
        if self.on_limit not in LIMIT_ACTIONS:
            raise ConfigurationError(
                f"on_limit must be 'evict_oldest', 'deny' or 'ask', got {self.on_limit!r}"
            )
        timeout = self.ask_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (1 <= timeout <= 3600)
        ):
            raise ConfigurationError(f"ask_timeout must be 1 to 3600 seconds, got {timeout!r}")
        if not callable(self.sessions_per_user):
            _validate_limit(self.sessions_per_user, "sessions_per_user")

    @property
    def refuses_at_limit(self) -> bool:
        """True when a sign-in at the limit changes nothing (``deny`` and ``ask``)."""
        return self.on_limit != "evict_oldest"

    @property
    def exclusive_tabs(self) -> bool:
        """True when a new claim supersedes the session's older tabs."""
        return self.tabs_per_session == 1

    def session_limit(self, user_id: str) -> int | None:
        """The session limit for ``user_id`` (``None``: unlimited).

        Raises :class:`ConfigurationError` when a callable limit returns a bad value, so
        a broken rule fails closed instead of silently allowing everything.
        """
        limit = self.sessions_per_user
        if callable(limit):
            limit = limit(user_id)
            _validate_limit(limit, "sessions_per_user(user_id)")
        return limit


def _validate_limit(limit: object, name: str) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"{name} must be None or an integer >= 1, got {limit!r}")


def select_evictions(existing: Sequence[tuple[str, int]], limit: int | None) -> list[str]:
    """Which sessions a new login must end to stay within ``limit``.

    Args:
        existing: ``(public_id, created_ms)`` of the user's other live sessions — not
            including the session that is logging in, so a re-login never counts twice.
        limit: the user's limit, ``None`` for none.

    Returns:
        The public ids to evict, oldest first (empty when within the limit). The caller
        applies ``deny`` when this is non-empty.
    """
    if limit is None or len(existing) < limit:
        return []
    ordered = sorted(existing, key=lambda item: (item[1], item[0]))
    return [public_id for public_id, _ in ordered[: len(existing) - limit + 1]]


def bounded_limit(limit: int | None, deny: bool, ceiling: int | None) -> tuple[int | None, bool]:
    """The limit a login applies and whether it refuses at it, given the policy's
    ``limit`` and ``deny`` and the deployment's hard ``ceiling`` on live sessions per
    user (``max_sessions_per_user``; ``None``: none).

    The policy's limit and action hold when they are within the ceiling; otherwise (no
    policy limit, or a larger one) the ceiling applies and the oldest sessions are
    evicted: a sign-in always succeeds, so whoever fills the ceiling cannot lock the
    user out (issue 22, item 6). Backends call it inside their atomic login step.
    """
    if ceiling is None or (limit is not None and limit <= ceiling):
        return limit, deny
    return ceiling, False


TABS_PER_SESSION_KEY: Final = "SESSIONWATCH_TABS_PER_SESSION"
SESSIONS_PER_USER_KEY: Final = "SESSIONWATCH_SESSIONS_PER_USER"
ON_LIMIT_KEY: Final = "SESSIONWATCH_ON_LIMIT"
# The policy's environment variables (read here, not by Settings).
POLICY_KEYS: Final = frozenset({TABS_PER_SESSION_KEY, SESSIONS_PER_USER_KEY, ON_LIMIT_KEY})
_UNLIMITED: Final = ("unlimited", "none")


def policy_from_env(environ: Mapping[str, str] | None = None) -> Policy:
    """The :class:`Policy` of ``SESSIONWATCH_TABS_PER_SESSION`` (``1``, the default, or
    ``unlimited``), ``SESSIONWATCH_SESSIONS_PER_USER`` (a whole number >= 1, or
    ``unlimited``, the default) and ``SESSIONWATCH_ON_LIMIT`` (``evict_oldest``, the
    default, ``deny`` or ``ask``), from ``environ`` (default: the process's environment). An
    empty value means the default.

    Raises:
        ConfigurationError: a value is not one of those; the message names the key.
    """
    source = os.environ if environ is None else environ

    def read(key: str) -> str:
        return source.get(key, "").strip().lower()

    tabs = read(TABS_PER_SESSION_KEY)
    if tabs not in ("", "1", *_UNLIMITED):
        raise ConfigurationError(f"{TABS_PER_SESSION_KEY}: must be 1 or unlimited, got {tabs!r}")
    sessions = read(SESSIONS_PER_USER_KEY)
    limit: int | None = None
    if sessions not in ("", *_UNLIMITED):
        if not (sessions.isascii() and sessions.isdigit()) or int(sessions) < 1:
            raise ConfigurationError(
                f"{SESSIONS_PER_USER_KEY}: must be a whole number >= 1 or unlimited, "
                f"got {sessions!r}"
            )
        limit = int(sessions)
    on_limit = read(ON_LIMIT_KEY) or "evict_oldest"
    if on_limit not in LIMIT_ACTIONS:
        raise ConfigurationError(
            f"{ON_LIMIT_KEY}: must be evict_oldest, deny or ask, got {on_limit!r}"
        )
    return Policy(
        tabs_per_session=None if tabs in _UNLIMITED else 1,
        sessions_per_user=limit,
        on_limit=on_limit,  # type: ignore[arg-type]  # one of LIMIT_ACTIONS, checked above
    )
