"""The OpenID provider as this app sees it: discovery, its signing keys, its token
endpoint, and the signature check of the tokens it issues.

Signatures are joserfc's (docs/sso.md says why that library); HTTP is httpx, every
exchange bounded by ``oidc_timeout`` and every answer by :data:`MAX_ANSWER` bytes.
The keys are cached; a token whose ``kid`` is unknown triggers one refetch (the
provider rotated its keys), at most once per :data:`REFETCH_EVERY` seconds so that
tokens with made-up ``kid`` values cannot make this app hammer the provider.

Needs the ``oidc`` extra (``pip install sessionwatch[oidc]``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..core import jsonlimits
from ..core.exceptions import ProviderTokenInvalid, ProviderUnavailable
from ..core.oidc import check_header

__all__ = ["MAX_ANSWER", "REFETCH_EVERY", "ProviderClient"]

logger = logging.getLogger(__name__)

MAX_ANSWER: Final = 256 * 1024  # discovery, keys, token answers are a few KiB
REFETCH_EVERY: Final = 10.0  # seconds between two refetches for an unknown kid
MAX_TOKEN: Final = 16 * 1024  # a compact JWS longer than this is refused unread
_DISCOVERY: Final = "/.well-known/openid-configuration"


class ProviderClient:
    """One OpenID provider, by issuer URL.

    Args:
        issuer: the issuer (its discovery document must name exactly it).
        client_id, client_secret: this app's registration (the secret may be empty for
            a public client: PKCE still binds the code).
        algorithms: the only signature algorithms accepted.
        timeout: seconds any one exchange may take.
        transport: an httpx transport (tests); ``None``: the network.
    """

    def __init__(
        self,
        issuer: str,
        *,
        client_id: str,
        client_secret: str = "",
        algorithms: tuple[str, ...],
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.client_secret = client_secret
        self.algorithms = algorithms
        self.timeout = timeout
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._refetched_at = -REFETCH_EVERY  # monotonic time of the last unknown-kid refetch
        self._lock = asyncio.Lock()
        self.key_fetches = 0  # how many times the keys were fetched (tests, metrics)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _exchange(
        self, method: str, url: str, *, oauth: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """One bounded request; a JSON object back, or :class:`ProviderUnavailable`.
        ``oauth``: an OAuth error answer (a used code) is :class:`ProviderTokenInvalid`."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client().stream(method, url, **kwargs) as answer:
                    body = bytearray()
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            raise ProviderUnavailable(f"{url}: answer larger than {MAX_ANSWER} B")
                    status = answer.status_code
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            raise ProviderUnavailable(f"{url}: {type(exc).__name__} {exc}".strip()) from None
        try:
            value = jsonlimits.loads(bytes(body))
        except ValueError:
            value = None
        if oauth and status >= 400 and isinstance(value, dict) and "error" in value:
            # An OAuth error (a used or expired code): the sign-in failed, not the provider.
            raise ProviderTokenInvalid(f"{url}: {value.get('error')}")
        if status != 200 or not isinstance(value, dict):
            raise ProviderUnavailable(f"{url}: answered {status} without a JSON object")
        return value

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched once, then cached); its ``issuer`` must be
        the configured one (OpenID Connect Discovery §4.3)."""
        if self._metadata is None:
            document = await self._exchange("GET", self.issuer.rstrip("/") + _DISCOVERY)
            if document.get("issuer") != self.issuer:
                raise ProviderUnavailable(
                    f"the discovery document names issuer {document.get('issuer')!r}, "
                    f"not {self.issuer!r}"
                )
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(name), str):
                    raise ProviderUnavailable(f"the discovery document lacks {name}")
            self._metadata = document
        return self._metadata

    async def _fetch_keys(self) -> KeySet:
        uri = (await self.metadata())["jwks_uri"]
        document = await self._exchange("GET", uri)
        self.key_fetches += 1
        try:
            return KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderUnavailable(f"{uri}: not a usable key set ({exc})") from None

    async def key_for(self, kid: str | None) -> Any:
        """The provider's key named ``kid`` (the only key when there is no ``kid``):
        from the cache, else after one refetch (rate-limited); else the token is refused."""
        async with self._lock:
            if self._keys is None:
                self._keys = await self._fetch_keys()
            key = _pick(self._keys, kid)
            if key is None and time.monotonic() - self._refetched_at >= REFETCH_EVERY:
                self._refetched_at = time.monotonic()
                self._keys = await self._fetch_keys()  # rotated since the last fetch?
                key = _pick(self._keys, kid)
        if key is None:
            raise ProviderTokenInvalid(f"no key of the provider has kid {kid!r}")
        return key

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a compact JWS signed by the provider with a configured
        algorithm (never ``none``, never HMAC). Raises :class:`ProviderTokenInvalid`, or
        :class:`ProviderUnavailable` when the keys cannot be fetched."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 2:
            raise ProviderTokenInvalid("not a compact signed JWT")
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError) as exc:
            raise ProviderTokenInvalid(f"unreadable JWT ({exc})") from None
        check_header(header, self.algorithms)
        kid = header.get("kid")
        key = await self.key_for(kid if isinstance(kid, str) else None)
        try:
            verified = jws.deserialize_compact(token, key, algorithms=list(self.algorithms))
            claims = jsonlimits.loads(verified.payload)
        except (JoseError, ValueError) as exc:
            raise ProviderTokenInvalid(f"the signature does not verify ({exc})") from None
        if not isinstance(claims, dict):
            raise ProviderTokenInvalid("the payload is not a JSON object")
        return claims

    async def redeem(self, code: str, verifier: str, redirect_uri: str) -> Mapping[str, Any]:
        """Exchange an authorization code (with its PKCE verifier) at the token
        endpoint; the answer must carry an ``id_token``."""
        endpoint = (await self.metadata())["token_endpoint"]
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.client_id,
        }
        auth = (self.client_id, self.client_secret) if self.client_secret else None
        answer = await self._exchange("POST", endpoint, oauth=True, data=form, auth=auth)
        if not isinstance(answer.get("id_token"), str):
            raise ProviderTokenInvalid("the token endpoint sent no id_token")
        return answer


def _pick(keys: KeySet, kid: str | None) -> Any:
    if kid is None:
        return keys.keys[0] if len(keys.keys) == 1 else None
    for key in keys.keys:
        if key.kid == kid:
            return key
    return None
