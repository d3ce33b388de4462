"""Credentials: the signed session cookie and public ids.

- The cookie carries ``sid`` (256 random bits) signed with itsdangerous; the list of
  secrets allows rotation (sign with the newest, accept all).
- The server never stores ``sid``: records, channels, logs and APIs use the public id,
  a domain-separated SHA-256 of it, so a leaked Redis dump holds no usable session.

Tab tokens (format, MAC check, supersede rule) are :mod:`.tabs`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Final

from itsdangerous import BadSignature, Signer

from .exceptions import ConfigurationError

__all__ = ["CookieSigner", "new_session_id", "public_id"]

_PUBLIC_ID_DOMAIN: Final = b"sessionwatch/v1/public\0"
_SESSION_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_MIN_SECRET_LENGTH: Final = 16


def _b64(digest: bytes, length: int = 22) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")[:length]


def new_session_id() -> str:
    """A fresh 256-bit session id."""
    return secrets.token_urlsafe(32)


def public_id(session_id: str) -> str:
    """The id the server stores, logs and shows for ``session_id`` (132 bits)."""
    return _b64(hashlib.sha256(_PUBLIC_ID_DOMAIN + session_id.encode("ascii")).digest())


class CookieSigner:
    """Signs and verifies the session id carried by the cookie.

    Args:
        secrets_newest_last: the secret keys; the last signs, all verify.
    """

    def __init__(self, secrets_newest_last: Sequence[str | bytes]) -> None:
        keys = [k for k in secrets_newest_last if k]
        if not keys:
            raise ConfigurationError(
                "SECRET_KEY is not set: sessionwatch needs it to sign session cookies"
            )
        for key in keys:
            if len(key) < _MIN_SECRET_LENGTH:
                raise ConfigurationError(
                    f"secret keys must be at least {_MIN_SECRET_LENGTH} characters long"
                )
        self._signer = Signer(
            [k.encode() if isinstance(k, str) else k for k in keys],
            salt="sessionwatch.cookie",
            digest_method=hashlib.sha256,
        )

    def sign(self, session_id: str) -> str:
        """The cookie value for ``session_id``."""
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, value: str) -> str | None:
        """The session id in a cookie value, or ``None`` if it is not genuine."""
        try:
            session_id = self._signer.unsign(value.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            return None
        return session_id if _SESSION_ID_RE.fullmatch(session_id) else None
