"""The admin scope's bearer keys: ``SESSIONWATCH_ADMIN_KEYS="alice:KEY,oncall:KEY"``.

Admin keys are configured apart from the session API's keys (an upstream app's key
cannot list or revoke other users' sessions) and each has a name: the name is the
``actor`` of every revocation made with it, so the audit trail says which admin (or
tool) acted, never the key itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .exceptions import ConfigurationError

__all__ = ["ADMIN_KEY_NAME_RE", "AdminKey", "check_bearer_key", "parse_admin_keys"]

ADMIN_KEY_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MIN_KEY_LENGTH: Final = 24
MAKE_A_KEY: Final = "python -c 'import secrets; print(secrets.token_urlsafe())'"


@dataclass(frozen=True, slots=True)
class AdminKey:
    """One admin key: its name (shown in audit lines) and its secret."""

    name: str
    secret: str = ""

    def __repr__(self) -> str:  # never the secret, in a traceback or a log
        return f"AdminKey({self.name!r})"


def check_bearer_key(key: str, source: str) -> None:
    """Refuse a bearer key that is short, not printable ASCII or holds a space."""
    if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise ConfigurationError(
            f"{source}: each key must be at least {MIN_KEY_LENGTH} printable ASCII characters "
            f"without spaces (e.g. {MAKE_A_KEY})"
        )


def parse_admin_keys(entries: Iterable[str], source: str) -> tuple[AdminKey, ...]:
    """``name:key`` entries as :class:`AdminKey` values.

    Raises:
        ConfigurationError: an entry without a name, a bad name, a weak key, or a name
            given twice; the message names ``source`` and never shows a key.
    """
    keys: list[AdminKey] = []
    for entry in entries:
        name, colon, secret = entry.partition(":")
        if not colon or not ADMIN_KEY_NAME_RE.fullmatch(name):
            raise ConfigurationError(
                f"{source}: each entry is NAME:KEY, the name of letters, digits, '_', '.', "
                "'-' (at most 64)"
            )
        check_bearer_key(secret, source)
        if any(key.name == name for key in keys):
            raise ConfigurationError(f"{source}: the name {name!r} is given twice")
        keys.append(AdminKey(name, secret))
    return tuple(keys)
