"""Credentials: the signed session cookie and public ids.

- The cookie carries ``sid`` (256 random bits) signed with itsdangerous; the list of
  secrets allows rotation (sign with the newest, accept all).
- The server never stores ``sid``: records, channels, logs and APIs use the public id,
  a domain-separated SHA-256 of it, so a leaked Redis dump holds no usable session.
- A session id minted at login starts with its user's *tag* (``{tag}.{random}``), a
  4-character hash of the user id that the public id keeps (``{tag}.{hash}``): on a
  Redis Cluster the tag is the hash tag that puts a user's sessions, index and channels
  in one slot. Anonymous ids carry no tag (each is its own slot).

Tab tokens (format, MAC check, supersede rule) are :mod:`.tabs`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Final

from itsdangerous import BadSignature, Signer

from .exceptions import ConfigurationError

__all__ = [
    "PUBLIC_ID_RE",
    "VERIFIED_CACHE",
    "CookieSigner",
    "new_session_id",
    "public_id",
    "slot_tag",
    "user_tag",
]

_PUBLIC_ID_DOMAIN: Final = b"sessionwatch/v1/public\0"
_USER_TAG_DOMAIN: Final = b"sessionwatch/v1/tag\0"
_TAG_LENGTH: Final = 4  # 24 bits: far more tags than Redis Cluster's 16384 slots
_SESSION_ID_RE: Final = re.compile(r"(?:[A-Za-z0-9_-]{4}\.)?[A-Za-z0-9_-]{43}")
# The shape of what public_id() returns (the user's tag, then the digest).
PUBLIC_ID_RE: Final = re.compile(r"(?:[A-Za-z0-9_-]{4}\.)?[A-Za-z0-9_-]{22}")
_MIN_SECRET_LENGTH: Final = 16


def _b64(digest: bytes, length: int = 22) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")[:length]


def user_tag(user_id: str) -> str:
    """The tag shared by every session id minted for ``user_id`` (not secret)."""
    return _b64(hashlib.sha256(_USER_TAG_DOMAIN + user_id.encode("utf-8")).digest(), _TAG_LENGTH)


def new_session_id(tag: str | None = None) -> str:
    """A fresh 256-bit session id, prefixed with ``tag`` (see :func:`user_tag`)."""
    random_part = secrets.token_urlsafe(32)
    return f"{tag}.{random_part}" if tag else random_part


def public_id(session_id: str) -> str:
    """The id the server stores, logs and shows for ``session_id`` (132 bits), keeping
    the session id's tag when it has one."""
    digest = _b64(hashlib.sha256(_PUBLIC_ID_DOMAIN + session_id.encode("ascii")).digest())
    tag, dot, _ = session_id.partition(".")
    return f"{tag}.{digest}" if dot else digest


def slot_tag(public_id: str) -> str:
    """What a public id shares its Redis Cluster slot with: its tag, or (untagged) itself."""
    tag, dot, _ = public_id.partition(".")
    return tag if dot else public_id


VERIFIED_CACHE: Final = 4096  # genuine cookie values whose verification is remembered


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
        # Cookie values verified lately (every request of a tab repeats its cookie): a
        # genuine value's id never changes under these keys, so its HMAC is computed
        # once. Only genuine values are kept (a flood of forged ones cannot evict them
        # faster than they are used, and each forgery is still checked), at most
        # VERIFIED_CACHE of them, the oldest dropped first.
        self._verified: dict[str, str] = {}

    def sign(self, session_id: str) -> str:
        """The cookie value for ``session_id``."""
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, value: str) -> str | None:
        """The session id in a cookie value, or ``None`` if it is not genuine."""
        session_id = self._verified.get(value)
        if session_id is not None:
            return session_id
        try:
            session_id = self._signer.unsign(value.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            return None
        if not _SESSION_ID_RE.fullmatch(session_id):
            return None
        verified = self._verified
        if len(verified) >= VERIFIED_CACHE:
            # The oldest (dicts keep insertion order); a sync view in another thread
            # may have changed it meanwhile: then there is nothing to drop here.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del verified[next(iter(verified))]
        verified[value] = session_id
        return session_id
