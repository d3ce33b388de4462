"""The rules of OpenID Connect sign-in and Back-Channel Logout, as pure functions.

No I/O and no crypto here: the signature is checked by the provider client
(:mod:`sessionwatch.engine.provider`, joserfc) before these rules read the claims.
Each rule raises :class:`ProviderTokenInvalid` with the ``error_description`` the
back-channel answer carries (docs/sso.md "Validation rules" lists them with their tests).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .exceptions import ProviderTokenInvalid

__all__ = [
    "BACKCHANNEL_EVENT",
    "LOGOUT_TOKEN_MAX_AGE",
    "MAX_LOGOUT_BODY",
    "SSO_IDENTITY_KEY",
    "LogoutClaims",
    "ProviderIdentity",
    "check_header",
    "check_id_token",
    "check_logout_token",
    "pkce_challenge",
    "random_secret",
]

BACKCHANNEL_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
# A logout token without exp is refused when issued longer ago than this (seconds), and
# its jti is remembered this long: the replay window is then bounded either way.
LOGOUT_TOKEN_MAX_AGE: Final = (
    120  # ASVS 5.0 10.5.5: "a relatively short expiration time (e.g. 2 minutes)"
)
# The session data key of the provider identity a sign-in recorded (docs/sso.md).
SSO_IDENTITY_KEY: Final = "_sessionwatch_sso"
# The largest back-channel request body read (bytes): real logout tokens are < 2 KiB.
MAX_LOGOUT_BODY: Final = 16 * 1024


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """Who signed in at which provider: recorded on the session at sign-in, so a
    back-channel logout naming the provider's session (``sid``) or user (``sub``) finds
    it, and an RP-initiated logout can name the ID token."""

    issuer: str
    subject: str
    session: str | None = None  # the provider's sid, when it sends one
    id_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"iss": self.issuer, "sub": self.subject, "sid": self.session, "idt": self.id_token}

    @classmethod
    def from_json(cls, value: Any) -> ProviderIdentity | None:
        if not isinstance(value, dict) or not isinstance(value.get("iss"), str):
            return None
        if not isinstance(value.get("sub"), str):
            return None
        sid, token = value.get("sid"), value.get("idt")
        return cls(
            value["iss"],
            value["sub"],
            sid if isinstance(sid, str) else None,
            token if isinstance(token, str) else None,
        )


@dataclass(frozen=True, slots=True)
class LogoutClaims:
    """A logout token that passed every rule: whose sessions to end, and until when its
    ``jti`` must be remembered (epoch seconds)."""

    issuer: str
    token_id: str
    session: str | None
    subject: str | None
    remember_until: int


def random_secret() -> str:
    """A fresh ``state``, ``nonce`` or PKCE verifier: 256 bits, URL-safe (43 chars)."""
    return secrets.token_urlsafe(32)


def pkce_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_header(header: Mapping[str, Any], algorithms: tuple[str, ...]) -> None:
    """The JOSE header's ``alg`` must be one of ``algorithms`` (configured; ``none`` and
    HMAC never are: an HMAC token keyed with the provider's public key is the algorithm
    confusion attack)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg not in algorithms:
        raise ProviderTokenInvalid(f"signature algorithm {alg!r} is not accepted")


def _audience_ok(claims: Mapping[str, Any], client_id: str) -> bool:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return hmac.compare_digest(aud, client_id)
    return isinstance(aud, list) and client_id in aud


def _number(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProviderTokenInvalid(f"{name} is not a number")
    return int(value)


def _common(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, now: int, skew: int
) -> tuple[int, int | None]:
    """iss, aud, iat (not in the future beyond ``skew``) and exp (not past, ``skew``
    allowed); returns (iat, exp)."""
    if claims.get("iss") != issuer:
        raise ProviderTokenInvalid("iss is not the configured issuer")
    if not _audience_ok(claims, client_id):
        raise ProviderTokenInvalid("aud does not name this client")
    iat = _number(claims, "iat")
    if iat is None:
        raise ProviderTokenInvalid("iat is missing")
    if iat > now + skew:
        raise ProviderTokenInvalid("iat is in the future")
    exp = _number(claims, "exp")
    if exp is not None and exp <= now - skew:
        raise ProviderTokenInvalid("the token has expired")
    return iat, exp


def _optional_string(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 255:
        raise ProviderTokenInvalid(f"{name} is not a non-empty string of at most 255 characters")
    return value


def check_id_token(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: int,
    skew: int,
) -> ProviderIdentity:
    """The ID token rules of OpenID Connect Core §3.1.3.7 (signature already checked):
    iss, aud (and azp with several audiences), exp (required), iat, the ``nonce`` this
    sign-in sent, and ``sub``. Returns the identity to record on the session."""
    _, exp = _common(claims, issuer=issuer, client_id=client_id, now=now, skew=skew)
    if exp is None:
        raise ProviderTokenInvalid("exp is missing")
    aud = claims.get("aud")
    azp = claims.get("azp")
    if ((isinstance(aud, list) and len(aud) > 1) or azp is not None) and azp != client_id:
        raise ProviderTokenInvalid("azp does not name this client")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
        raise ProviderTokenInvalid("nonce does not match this sign-in")
    subject = _optional_string(claims, "sub")
    if subject is None:
        raise ProviderTokenInvalid("sub is missing")
    return ProviderIdentity(issuer, subject, _optional_string(claims, "sid"))


def check_logout_token(
    claims: Mapping[str, Any], *, issuer: str, client_id: str, now: int, skew: int
) -> LogoutClaims:
    """The logout token rules of Back-Channel Logout 1.0 §2.6 (signature already
    checked): iss, aud, iat within ``skew`` (and at most :data:`LOGOUT_TOKEN_MAX_AGE`
    old without exp), exp when present, a ``jti``, the back-channel logout member of
    ``events`` (a JSON object), ``sid`` and/or ``sub``, and no ``nonce`` (an ID token
    must never pass for a logout token)."""
    iat, exp = _common(claims, issuer=issuer, client_id=client_id, now=now, skew=skew)
    if exp is None and iat < now - LOGOUT_TOKEN_MAX_AGE - skew:
        raise ProviderTokenInvalid("the token was issued too long ago")
    if "nonce" in claims:
        raise ProviderTokenInvalid("a logout token must not contain a nonce")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise ProviderTokenInvalid("events lacks the back-channel logout member")
    token_id = _optional_string(claims, "jti")
    if token_id is None:
        raise ProviderTokenInvalid("jti is missing")
    session = _optional_string(claims, "sid")
    subject = _optional_string(claims, "sub")
    if session is None and subject is None:
        raise ProviderTokenInvalid("neither sid nor sub is present")
    until = (exp if exp is not None else iat + LOGOUT_TOKEN_MAX_AGE) + skew
    return LogoutClaims(issuer, token_id, session, subject, max(until, now + 1))
