"""OpenID providers for the single sign-on tests.

- :class:`ScriptedProvider`: discovery, keys and a token endpoint answered in-process
  through an httpx transport, with keys the tests hold, so each validation case can mint
  exactly the token it needs (tests/security/test_backchannel_logout.py).
- :class:`NodeProvider`: panva's ``oidc-provider`` (OpenID-certified, from npm; its lock
  file is tests/support/oidc_provider/package-lock.json) started on loopback, for the
  browser tests (tests/e2e/test_sso_chromium.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from sessionwatch.core.oidc import BACKCHANNEL_EVENT

from .processes import ManagedProcess

ISSUER = "https://idp.test/realms/acme"
CLIENT_ID = "sessionwatch-app"
CLIENT_SECRET = "client-secret-for-tests-only"
PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class ScriptedProvider:
    """A provider whose every answer the test controls.

    ``published`` are the keys its JWKS serves (change it to rotate); ``key_requests``
    counts JWKS fetches; ``down`` makes every exchange fail to connect.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
        self.published: list[RSAKey] = [self.key]
        self.key_requests = 0
        self.down = False
        self.codes: dict[str, dict[str, Any]] = {}  # code -> what the sign-in sent
        self.named_issuer = ISSUER  # what the discovery document says (an impostor's: other)

    # -- tokens ------------------------------------------------------------------------

    def sign(
        self, claims: dict[str, Any], *, key: Any = None, alg: str = "RS256", **header: Any
    ) -> str:
        key = key or self.key
        protected = {"alg": alg, "kid": getattr(key, "kid", None) or "k1", **header}
        protected = {k: v for k, v in protected.items() if v is not None}
        return jwt.encode(protected, claims, key, algorithms=[alg])

    def logout_claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "sid": "provider-session-alice",
            "sub": "alice-sub",
            "events": {BACKCHANNEL_EVENT: {}},
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def logout_token(self, **changes: Any) -> str:
        return self.sign(self.logout_claims(**changes))

    @staticmethod
    def unsigned(claims: dict[str, Any]) -> str:
        """``alg: none``: no signature at all."""
        header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64(json.dumps(claims).encode())}."

    def hmac_with_public_key(self, claims: dict[str, Any]) -> str:
        """The algorithm confusion attack: HS256 keyed with the provider's public key."""
        # Made by hand: joserfc refuses to take a public key as an HMAC secret.
        header = b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode())
        signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
        public_pem = self.key.as_pem(private=False)
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    # -- the sign-in -------------------------------------------------------------------

    def authorize(self, location: str, *, sub: str, sid: str, **id_claims: Any) -> str:
        """What the provider does with the browser sent to ``location``: the
        callback query (``code`` and ``state``) for a sign-in as ``sub`` in provider
        session ``sid``."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        code = uuid.uuid4().hex
        self.codes[code] = {"query": query, "sub": sub, "sid": sid, "claims": id_claims}
        return f"code={code}&state={query['state']}"

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        sent = self.codes.pop(form.get("code", ""), None)
        if sent is None:
            return httpx.Response(400, json={"error": "invalid_grant"})
        challenge = b64(hashlib.sha256(form["code_verifier"].encode()).digest())
        if challenge != sent["query"]["code_challenge"]:
            return httpx.Response(400, json={"error": "invalid_grant"})
        now = int(self.clock())
        claims = {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": sent["sub"],
            "sid": sent["sid"],
            "nonce": sent["query"]["nonce"],
            "iat": now,
            "exp": now + 300,
            **sent["claims"],
        }
        return httpx.Response(200, json={"id_token": self.sign(claims), "token_type": "Bearer"})

    # -- the transport -----------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/realms/acme/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.named_issuer,
                    "authorization_endpoint": ISSUER + "/auth",
                    "token_endpoint": ISSUER + "/token",
                    "jwks_uri": ISSUER + "/certs",
                    "end_session_endpoint": ISSUER + "/logout",
                },
            )
        if path == "/realms/acme/certs":
            self.key_requests += 1
            return httpx.Response(200, json=KeySet(self.published).as_dict(private=False))
        if path == "/realms/acme/token" and request.method == "POST":
            return self._token(request)
        return httpx.Response(404, json={"error": "not_found"})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


class NodeProvider(ManagedProcess):
    """panva's oidc-provider on loopback (tests/support/oidc_provider/provider.mjs),
    with one client registered for the app at ``app_origin``: its redirect URI, its
    ``backchannel_logout_uri`` (sid required) and its post-logout redirect."""

    ready_path = "/.well-known/openid-configuration"
    name = "oidc-provider"

    def __init__(self, *, app_origin: str, url_prefix: str = "/_sessionwatch") -> None:
        super().__init__()
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "oidc-provider is not installed: (cd tests/support/oidc_provider && npm ci)"
            )
        self.issuer = self.url
        self.client = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [f"{app_origin}{url_prefix}/oidc/callback"],
            "post_logout_redirect_uris": [f"{app_origin}/login"],
            "backchannel_logout_uri": f"{app_origin}{url_prefix}/oidc/backchannel-logout",
            "backchannel_logout_session_required": True,
        }
        self.env.update(
            {"PORT": str(self.port), "ISSUER": self.issuer, "CLIENT": json.dumps(self.client)}
        )
        self.command = ["node", str(PROVIDER_DIR / "provider.mjs")]

    def app_env(self) -> dict[str, str]:
        """The environment that points ``sessionwatch demo`` or ``serve`` at it."""
        return {
            "SESSIONWATCH_OIDC_ISSUER": self.issuer,
            "SESSIONWATCH_OIDC_CLIENT_ID": CLIENT_ID,
            "SESSIONWATCH_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        }
