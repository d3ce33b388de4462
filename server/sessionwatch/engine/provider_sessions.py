"""Sessions signed in through an OpenID provider: linked at sign-in to the provider's
session (``sid``) and user (``sub``), and ended when the provider's back-channel
logout token names them (Back-Channel Logout 1.0; docs/sso.md).

The links live on the backend (:meth:`Backend.link`), so any worker of any host finds
the sessions another one signed in; so does the memory of used ``jti`` values
(:meth:`Backend.first_use`). Every end goes through :class:`SessionEngine`, whose tabs
get ``revoked{reason: "signed_out_at_provider"}`` live.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Final

from ..core.audit import security_event
from ..core.exceptions import BackendUnavailable, ProviderTokenInvalid
from ..core.oidc import LogoutClaims, ProviderIdentity
from .operations import SessionEngine

__all__ = ["SIGNED_OUT_AT_PROVIDER", "ProviderSessions", "link_digest"]

SIGNED_OUT_AT_PROVIDER: Final = "signed_out_at_provider"


def link_digest(issuer: str, kind: str, value: str) -> str:
    """The opaque backend name of one provider session (``kind`` ``sid``), user
    (``sub``) or logout token (``jti``): provider ids never appear in key names."""
    raw = "\0".join((issuer, kind, value)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:40]


class ProviderSessions:
    """Links sessions to their provider identity and ends them on its word."""

    def __init__(self, engine: SessionEngine) -> None:
        self.engine = engine

    async def link(self, public_id: str, identity: ProviderIdentity, *, until: int) -> None:
        """Link session ``public_id`` to ``identity``'s sub and sid until ``until`` (ms:
        the session's absolute expiry). Raises :class:`BackendUnavailable`."""
        links = [link_digest(identity.issuer, "sub", identity.subject)]
        if identity.session is not None:
            links.append(link_digest(identity.issuer, "sid", identity.session))
        await self.engine.backend.link(links, public_id, until=until, now=self.engine.now_ms())

    async def log_out(self, claims: LogoutClaims) -> int:
        """End every session the validated logout token names: those of its ``sid``
        when it has one, else every session of its ``sub`` (with both, the sessions of
        that sid — Back-Channel Logout 1.0 §2.4). Returns how many ended.

        Raises:
            ProviderTokenInvalid: the token's ``jti`` was used before (a replay).
            BackendUnavailable: the backend failed; the ``jti`` is forgotten again so the
                provider may send the token once more.
        """
        engine = self.engine
        now = engine.now_ms()
        seen = link_digest(claims.issuer, "jti", claims.token_id)
        if not await engine.backend.first_use(seen, until=claims.remember_until * 1000, now=now):
            security_event("provider_logout_refused", logging.WARNING, reason="replayed_jti")
            raise ProviderTokenInvalid("this logout token was used before (jti replayed)")
        # check_logout_token requires a sid or a sub.
        kind, value = ("sid", claims.session) if claims.session else ("sub", claims.subject or "")
        try:
            linked = await engine.backend.linked(link_digest(claims.issuer, kind, value), now=now)
            actor = f"provider:{claims.issuer}"  # who ended it, in the audit line
            ended = 0
            for public_id in linked:
                if await engine.revoke_session(
                    public_id, reason=SIGNED_OUT_AT_PROVIDER, actor=actor
                ):
                    ended += 1
        except BackendUnavailable:
            try:
                await engine.backend.forget_use(seen)
            except BackendUnavailable:
                pass  # remembered: a resend is refused as a replay until the token's end
            raise
        security_event("provider_logout", issuer=claims.issuer, by=kind, sessions=ended)
        return ended
