"""Remember-me tokens: the cookie of a token family, its hash, and its successor.

A sign-in with ``remember=True`` starts a *family* (docs/policies.md, "Remember-me").
Its cookie carries ``{family}:{generation}:{secret}``, signed like the session cookie
(itsdangerous, the same secret keys, another salt): a value the server did not issue is
never looked up, so only a token it issued can ever count as *reused*.

- The server stores only :func:`token_hash` of the current and the previous secret.
- The successor of a token is derived, not drawn: ``HMAC(key, token)`` gives the next
  secret and the id of the session the restore creates. Two requests presenting the
  same token (two tabs after a browser restart) therefore get the *same* successor and
  the same session, and the raw successor is never stored (the grace window of
  docs/policies.md needs no plaintext on the server).
- A family id carries its user's tag (``{tag}.{random}``), so on a Redis Cluster it
  shares the user's slot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, Signer

__all__ = [
    "MAX_FAMILIES_PER_USER",
    "RememberSigner",
    "RememberToken",
    "new_family_id",
    "token_hash",
]

# A user's live families at most (as max_sessions_per_user bounds sessions): a new one
# beyond ends the oldest, so every script that reads a user's families is bounded.
MAX_FAMILIES_PER_USER: Final = 100

_HASH_DOMAIN: Final = b"sessionwatch/v1/remember\0"
_FAMILY_RE: Final = re.compile(r"[A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{22}")
_TOKEN_RE: Final = re.compile(
    r"([A-Za-z0-9_-]{4}\.[A-Za-z0-9_-]{22}):([1-9][0-9]{0,8}):([A-Za-z0-9_-]{43})"
)


def _b64(digest: bytes, length: int = 43) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii")[:length]


def new_family_id(tag: str) -> str:
    """A fresh family id in the slot of the user whose tag is ``tag``."""
    return f"{tag}.{secrets.token_urlsafe(16)[:22]}"


def token_hash(secret: str) -> str:
    """What the server keeps of a token's secret (a leaked dump holds no usable token)."""
    return _b64(hashlib.sha256(_HASH_DOMAIN + secret.encode("ascii")).digest())


@dataclass(frozen=True, slots=True)
class RememberToken:
    """The content of a remember cookie: family, generation (1 at sign-in) and secret."""

    family: str
    gen: int
    secret: str

    @classmethod
    def first(cls, family: str) -> RememberToken:
        """The token a sign-in issues."""
        return cls(family, 1, secrets.token_urlsafe(32))

    @property
    def tag(self) -> str:
        return self.family.partition(".")[0]

    def text(self) -> str:
        return f"{self.family}:{self.gen}:{self.secret}"


class RememberSigner:
    """Signs remember cookies and derives successors (keys: newest last, as the
    session cookie's)."""

    def __init__(self, keys_newest_last: Sequence[str | bytes]) -> None:
        raw = [k.encode() if isinstance(k, str) else k for k in keys_newest_last if k]
        self._signer = Signer(raw, salt="sessionwatch.remember", digest_method=hashlib.sha256)
        # The derivation key: one for every process (the newest secret), domain-separated.
        self._derive = hmac.new(raw[-1], b"sessionwatch/v1/remember-derive", "sha256").digest()

    def sign(self, token: RememberToken) -> str:
        return self._signer.sign(token.text()).decode("ascii")

    def unsign(self, value: str) -> RememberToken | None:
        """The token in a cookie value, or ``None`` when the server did not issue it."""
        if len(value) > 256:
            return None
        try:
            text = self._signer.unsign(value.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            return None
        found = _TOKEN_RE.fullmatch(text)
        if found is None or not _FAMILY_RE.fullmatch(found[1]):
            return None
        return RememberToken(found[1], int(found[2]), found[3])

    def _mac(self, purpose: bytes, token: RememberToken) -> str:
        message = purpose + b"\0" + token.text().encode("ascii")
        return _b64(hmac.new(self._derive, message, "sha256").digest())

    def successor(self, token: RememberToken) -> RememberToken:
        """The token a restore with ``token`` issues (the same for every such restore)."""
        return RememberToken(token.family, token.gen + 1, self._mac(b"next", token))

    def session_id(self, token: RememberToken) -> str:
        """The (secret) id of the session a restore with ``token`` creates, in its
        user's slot."""
        return f"{token.tag}.{self._mac(b'session', token)}"
