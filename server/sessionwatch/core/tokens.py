"""Credentials: the signed session cookie, public ids and tab tokens.

- The cookie carries ``sid`` (256 random bits) signed with itsdangerous; the list of
  secrets allows rotation (sign with the newest, accept all).
- The server never stores ``sid``: records, channels, logs and APIs use the public id,
  a domain-separated SHA-256 of it, so a leaked Redis dump holds no usable session.
- A tab token is ``{gen}.{mac}`` with ``mac`` an HMAC of ``gen`` under the session's
  random tab key, so tokens need no storage and verify in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Final

from itsdangerous import BadSignature, Signer

from .exceptions import ConfigurationError

__all__ = [
    "CookieSigner",
    "make_tab_token",
    "new_session_id",
    "new_tab_key",
    "parse_tab_token",
    "public_id",
]

_PUBLIC_ID_DOMAIN: Final = b"sessionwatch/v1/public\0"
_SESSION_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_TAB_TOKEN_RE: Final = re.compile(r"([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})")
_MIN_SECRET_LENGTH: Final = 16


def _b64(digest: bytes, length: int = 22) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")[:length]


def new_session_id() -> str:
    """A fresh 256-bit session id."""
    return secrets.token_urlsafe(32)


def new_tab_key() -> str:
    """A fresh per-session key for tab-token MACs."""
    return secrets.token_urlsafe(24)


def public_id(session_id: str) -> str:
    """The id the server stores, logs and shows for ``session_id`` (132 bits)."""
    return _b64(hashlib.sha256(_PUBLIC_ID_DOMAIN + session_id.encode("ascii")).digest())


def _tab_mac(tab_key: str, gen: int) -> str:
    return _b64(
        hmac.new(tab_key.encode("ascii"), str(gen).encode("ascii"), hashlib.sha256).digest()
    )


def make_tab_token(tab_key: str, gen: int) -> str:
    """The token of claim generation ``gen``."""
    return f"{gen}.{_tab_mac(tab_key, gen)}"


def parse_tab_token(token: str, tab_key: str) -> int | None:
    """The generation of a genuine ``token``, or ``None`` (malformed or forged)."""
    match = _TAB_TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    gen = int(match.group(1))
    if not hmac.compare_digest(match.group(2), _tab_mac(tab_key, gen)):
        return None
    return gen


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
