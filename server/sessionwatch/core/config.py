"""Settings: defaults, validation, and the one place that reads configuration.

Precedence: keyword argument to :class:`~sessionwatch.SessionWatch` > ``app.config``
key ``SESSIONWATCH_<NAME>`` > environment (only through :func:`settings_from_env`, used
by the service) > default. Every bad value raises :class:`ConfigurationError` naming the
key it came from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from .admin_keys import AdminKey, check_bearer_key, parse_admin_keys
from .exceptions import ConfigurationError
from .policy import POLICY_KEYS

__all__ = [
    "CONFIG_PREFIX",
    "FORWARD_AUTH_PROXIES",
    "OIDC_ALGORITHMS",
    "SERVICE_KEYS",
    "Settings",
    "coerce",
    "is_local_path",
    "parse_address",
    "settings_from_env",
]

CONFIG_PREFIX: Final = "SESSIONWATCH_"
FORWARD_AUTH_PROXIES: Final = ("nginx", "traefik", "caddy")
# Read by the service (service/cli.py, service/app.py), not by the extension.
SERVICE_KEYS: Final = frozenset(
    {
        "SESSIONWATCH_SERVICE_METRICS",
        "SESSIONWATCH_SERVICE_METRICS_TOKEN",
        "SESSIONWATCH_SERVICE_READYZ_DETAIL",
        "SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS",
        "SESSIONWATCH_SERVICE_HEADER_TIMEOUT",
        "SESSIONWATCH_SERVICE_BODY_TIMEOUT",
    }
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the extension, with its default. Durations are seconds."""

    backend: str = "memory://"
    key_prefix: str = "sw:"
    url_prefix: str = "/_sessionwatch"
    # Session lifetime.
    idle_timeout: float = 30 * 60
    absolute_timeout: float = 12 * 60 * 60
    refresh_every: float = 60.0
    # How long "revoked"/"expired" is remembered for a dead session id (for 401 reasons).
    tombstone_ttl: float = 12 * 60 * 60
    # Cookie: hardened defaults; Quart's SESSION_COOKIE_* keys override name/domain/path/
    # httponly/samesite/partitioned when they differ from Quart's own defaults.
    cookie_secure: bool = True
    cookie_samesite: str = "Lax"
    max_cookie_length: int = 512
    # Secrets: newest last. Defaults to [*SECRET_KEY_FALLBACKS, SECRET_KEY].
    secret_keys: tuple[str, ...] = ()
    # WebSocket / live push.
    allowed_origins: tuple[str, ...] = ()  # empty: the app's own origin only
    allow_missing_origin: bool = False
    hello_timeout: float = 5.0
    expiring_lead: float = 60.0
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    # Push ``presence`` to a user's tabs when one of their sessions gains or loses a
    # live tab (a count and a publish per session per change, coalesced): off by
    # default, the session listing (``live_tabs``) counts them either way.
    presence_events: bool = False
    max_frame: int = 4096
    max_messages_per_second: float = 20.0
    max_sockets_per_session: int = 32
    max_sockets_per_user: int = 128
    # Per client address and per process (one client with many anonymous sessions).
    max_sockets_per_address: int = 256
    max_new_sessions_per_second: float = 10.0
    max_hellos_per_second: float = 50.0
    # Sign-ins a second per user id and per client address (token buckets holding 5
    # seconds' worth; 429 rate_limited beyond). 25 at once per user
    # lets a sign-in race of one user's devices through (integration/test_login_race_processes).
    max_logins_per_user_per_second: float = 5.0
    max_logins_per_address_per_second: float = 10.0
    # Also count new sessions and sign-ins on the backend, so that the rates above hold
    # for the whole deployment (every worker and host), not each process (issue 23):
    # one small script per new session and per sign-in. Off: per process only.
    shared_rate_limits: bool = True
    # Hard ceiling of live sessions per user, whatever the policy: at it a sign-in
    # evicts the user's oldest session (a policy limit within it keeps its own action).
    max_sessions_per_user: int = 100
    # Open connections (HTTP, idle keep-alive, WebSocket) per peer address and worker
    # under ``sessionwatch serve`` (uvicorn, hypercorn): twice the sockets, for each
    # tab's socket and its page loads.
    max_connections_per_address: int = 512
    send_queue_size: int = 32
    # Sockets being opened (session check to registration) at once per process; more
    # queue. Half the Redis pool, so that page loads keep the rest.
    max_opening_sockets: int = 32
    # Trust X-Forwarded-For for the client address (set only behind a proxy you run).
    trust_forwarded_for: bool = False
    # The proxy that asks forward-auth's /verify (docs/any-stack.md): nginx, traefik or
    # caddy. Its header style names the original request; never chosen by the request.
    forward_auth: str = "nginx"
    # Bearer keys of the session API (/api/v1, docs/any-stack.md); several for rotation.
    # Empty: the API is off.
    api_keys: tuple[str, ...] = ()
    # Bearer keys of the admin scope (/api/v1/admin and nothing else, docs/admin.md),
    # each NAME:KEY; the name is the actor of what the key revokes. Empty: admin API off.
    admin_keys: tuple[str, ...] = ()
    # host:port: the session API answers only there (``sessionwatch serve --api-bind``
    # listens on it too); empty: on every address the service listens on.
    api_address: str = ""
    # The scheme browsers reach the app with, which names the cookie the session API
    # issues (called server to server, it cannot see the browser's): "https" (the
    # __Host- name, as browser requests over HTTPS get it) or "http". Empty: https when
    # the service believes a proxy's X-Forwarded-Proto (--forwarded-allow-ips), else http.
    public_scheme: str = ""
    # Step-up (recent_login_required, forward-auth's max_age): where a navigation that
    # needs a fresh sign-in is sent (a local path; ?next= carries where it was going).
    # Empty: it gets the 401 page.
    reauth_url: str = ""
    # Durable ends (docs/reliability.md): a write that ends access (logout, revocation,
    # eviction) is answered only once this many Redis replicas have it (WAIT), else 503.
    # "auto": one while the primary has a replica online; 0: off (asynchronous).
    durable_ends: int | Literal["auto"] = "auto"
    # Seconds an end waits for its replicas (at most 4: the Redis reply timeout is 5).
    durable_ends_timeout: float = 1.0
    # Single sign-on through an OpenID provider (docs/sso.md); an empty issuer: off.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    # Empty: {the request's origin}{url_prefix}/oidc/callback.
    oidc_redirect_uri: str = ""
    # Where the provider sends the browser after an RP-initiated logout (empty: none).
    oidc_post_logout_redirect_uri: str = ""
    oidc_scopes: tuple[str, ...] = ("openid",)
    # The ID token claim that becomes the user id at sign-in.
    oidc_user_claim: str = "sub"
    # The only signature algorithms accepted (asymmetric only: never none, never HMAC).
    oidc_algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    # Seconds any one exchange with the provider may take (discovery, keys, token).
    oidc_timeout: float = 5.0
    # Seconds of clock difference with the provider tolerated on iat and exp.
    oidc_clock_skew: float = 60.0
    # Remember-me (docs/policies.md, "Remember-me"): the cookie's name (``__Host-``
    # prefixed over HTTPS), the lifetime of a token family from its sign-in, and how long
    # the token just rotated away still yields the same successor (two tabs of one
    # browser restoring at once), instead of being taken for a stolen copy.
    remember_cookie_name: str = "sw_remember"
    remember_lifetime: float = 30 * 24 * 60 * 60
    remember_grace: float = 10.0
    # The audit trail (docs/audit.md): every change's record, written in its own step.
    audit_trail: bool = True
    # Seconds a record is kept (approximately), also the window of new_device/new_place.
    audit_retention: float = 30 * 24 * 3600.0
    # Records kept at most per stream shard (approximate MAXLEN; the memory ring's size).
    audit_max_records: int = 100_000
    # Seconds a hook's record may stay unacknowledged before another worker delivers
    # it again (longer than the slowest hook).
    hook_reclaim_after: float = 30.0

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            _check(spec.name, getattr(self, spec.name), spec.name)
        if self.absolute_timeout < self.idle_timeout:
            raise ConfigurationError(
                "absolute_timeout must be at least idle_timeout "
                f"({self.absolute_timeout} < {self.idle_timeout})"
            )
        if self.refresh_every >= self.idle_timeout:
            raise ConfigurationError("refresh_every must be shorter than idle_timeout")
        if {key.secret for key in self.admin_key_list} & set(self.api_keys):
            raise ConfigurationError(
                "admin_keys: an admin key must not also be a session API key (api_keys)"
            )
        if self.oidc_issuer and not self.oidc_client_id:
            raise ConfigurationError("oidc_client_id is required with oidc_issuer")

    @property
    def admin_key_list(self) -> tuple[AdminKey, ...]:
        """:attr:`admin_keys` as named keys."""
        return parse_admin_keys(self.admin_keys, "admin_keys")

    @classmethod
    def resolve(cls, keywords: Mapping[str, Any], config: Mapping[str, Any]) -> Settings:
        """Merge keyword arguments over ``SESSIONWATCH_*`` keys of ``config``."""
        names = {spec.name for spec in dataclasses.fields(cls)}
        unknown = set(keywords) - names
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name in names:
            key = CONFIG_PREFIX + name.upper()
            if name in keywords and keywords[name] is not None:
                values[name] = coerce(name, keywords[name], source=name)
            elif key in config and config[key] is not None:
                values[name] = coerce(name, config[key], source=key)
        return cls(**values)


_DURATIONS: Final = {
    "idle_timeout",
    "absolute_timeout",
    "refresh_every",
    "tombstone_ttl",
    "hello_timeout",
    "expiring_lead",
    "heartbeat_interval",
    "heartbeat_timeout",
    "max_messages_per_second",
    "max_new_sessions_per_second",
    "max_hellos_per_second",
    "max_logins_per_user_per_second",
    "max_logins_per_address_per_second",
    "durable_ends_timeout",
    "oidc_timeout",
    "oidc_clock_skew",
    "remember_lifetime",
    "remember_grace",
    "audit_retention",
    "hook_reclaim_after",
}
_COUNTS: Final = {
    "audit_max_records",
    "max_cookie_length",
    "max_frame",
    "max_sockets_per_session",
    "max_sockets_per_user",
    "max_sockets_per_address",
    "max_sessions_per_user",
    "max_connections_per_address",
    "send_queue_size",
    "max_opening_sockets",
}
_FLAGS: Final = {
    "cookie_secure",
    "allow_missing_origin",
    "trust_forwarded_for",
    "shared_rate_limits",
    "presence_events",
    "audit_trail",
}
_LISTS: Final = {
    "secret_keys",
    "allowed_origins",
    "api_keys",
    "admin_keys",
    "oidc_scopes",
    "oidc_algorithms",
}
# Asymmetric signatures only: HMAC would take the client secret (or, confused, the
# provider's public key) as its key, and none is no signature.
OIDC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_OIDC_TIMEOUT: Final = 30.0
_TRUE: Final = {"1", "true", "yes", "on"}
MAX_DURABLE_ENDS_TIMEOUT: Final = 4.0
_FALSE: Final = {"0", "false", "no", "off"}


def is_local_path(value: str) -> bool:
    """Whether ``value`` is a path on this site (``/…``), never another site's URL
    (``//host``, ``/\\host``): safe to redirect to."""
    return value.startswith("/") and not value.startswith("//") and "\\" not in value


def coerce(name: str, value: Any, *, source: str) -> Any:
    """Convert ``value`` (possibly a string from the environment) to ``name``'s type
    and check its range.

    Raises :class:`ConfigurationError` naming ``source`` when it cannot.
    """
    converted = _convert(name, value, source)
    _check(name, converted, source)
    return converted


def _convert(name: str, value: Any, source: str) -> Any:
    try:
        if name in _DURATIONS:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
            return float(number)
        if name in _COUNTS:
            count = int(value, 10) if isinstance(value, str) else value
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"expected an integer, got {type(value).__name__}")
            return count
        if name in _FLAGS:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise TypeError(f"expected true or false, got {value!r}")
        if name == "durable_ends":
            return _replica_count(value)
        if name in _LISTS:
            if isinstance(value, str):
                return tuple(item.strip() for item in value.split(",") if item.strip())
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise TypeError("expected a list of strings or a comma-separated string")
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


def _check(name: str, value: Any, source: str) -> None:
    if name in _DURATIONS and not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{source}: must be a positive number of seconds, got {value}")
    if name in _COUNTS and value < 1:
        raise ConfigurationError(f"{source}: must be at least 1, got {value}")
    if name == "durable_ends" and value != "auto" and (isinstance(value, bool) or value < 0):
        raise ConfigurationError(
            f"{source}: must be auto, off or a number of replicas, got {value!r}"
        )
    if name == "durable_ends_timeout" and value > MAX_DURABLE_ENDS_TIMEOUT:
        raise ConfigurationError(
            f"{source}: must be at most {MAX_DURABLE_ENDS_TIMEOUT} seconds (the Redis reply "
            f"timeout is 5), got {value}"
        )
    if name == "cookie_samesite" and value not in ("Strict", "Lax", "None"):
        raise ConfigurationError(f"{source}: must be Strict, Lax or None, got {value!r}")
    if name == "public_scheme" and value not in ("", "http", "https"):
        raise ConfigurationError(f"{source}: must be https or http, got {value!r}")
    if name == "url_prefix" and (not value.startswith("/") or value.endswith("/")):
        raise ConfigurationError(f"{source}: must start with / and not end with /, got {value!r}")
    if name == "forward_auth" and value not in FORWARD_AUTH_PROXIES:
        raise ConfigurationError(
            f"{source}: must be one of {', '.join(FORWARD_AUTH_PROXIES)}, got {value!r}"
        )
    if name == "reauth_url" and value and not is_local_path(value):
        raise ConfigurationError(f"{source}: must be a local path (/...), got {value!r}")
    if name == "remember_cookie_name" and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ConfigurationError(f"{source}: letters, digits, _ and - only, got {value!r}")
    if name == "key_prefix" and not value:
        raise ConfigurationError(f"{source}: must not be empty")
    if name == "api_address" and value and parse_address(value) is None:
        raise ConfigurationError(
            f"{source}: expected host:port (e.g. 127.0.0.1:9000), got {value!r}"
        )
    if name == "api_keys":
        for key in value:
            check_bearer_key(key, source)
    if name == "admin_keys":
        parse_admin_keys(value, source)
    if name == "oidc_algorithms":
        if not value or any(alg not in OIDC_ALGORITHMS for alg in value):
            raise ConfigurationError(
                f"{source}: each must be one of {', '.join(sorted(OIDC_ALGORITHMS))} "
                f"(asymmetric only: never none or HMAC), got {', '.join(value) or 'none'}"
            )
    if name == "oidc_scopes" and "openid" not in value:
        raise ConfigurationError(f"{source}: must include openid, got {' '.join(value)!r}")
    if name == "oidc_timeout" and value > MAX_OIDC_TIMEOUT:
        raise ConfigurationError(f"{source}: must be at most {MAX_OIDC_TIMEOUT} seconds")
    if name in ("oidc_issuer", "oidc_redirect_uri", "oidc_post_logout_redirect_uri") and value:
        if not value.startswith(("https://", "http://")) or any(c.isspace() for c in value):
            raise ConfigurationError(f"{source}: expected an http(s) URL, got {value!r}")
    if name == "allowed_origins":
        for origin in value:
            if origin != origin.rstrip("/") or "://" not in origin:
                raise ConfigurationError(
                    f"{source}: origins look like https://app.example.com, got {origin!r}"
                )


def _replica_count(value: Any) -> int | str:
    """``durable_ends``: ``"auto"``, a count of replicas, or off (``0``, ``off``, ``false``)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "auto":
            return "auto"
        if word in _FALSE:
            return 0
        if word.isdigit() and word.isascii():
            return int(word)
        raise ValueError(f"expected auto, off or a number of replicas, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected auto, off or a number of replicas, got {value!r}")


def parse_address(value: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` (``[v6]:port`` for IPv6), or ``None``."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if any(c.isspace() for c in host) or "/" in host:
        return None
    return host, int(port)


def settings_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from ``SESSIONWATCH_*`` environment variables (and ``REDIS_URL``).

    Used by the service; a library user configures through ``app.config`` instead.
    ``public_scheme`` defaults to ``https`` when the service believes a TLS proxy
    (``SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS``): browsers then reach it over HTTPS.
    The policy's keys are :func:`~sessionwatch.core.policy.policy_from_env`'s.
    """
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {
        k: v
        for k, v in environ.items()
        if k.startswith(CONFIG_PREFIX) and k not in SERVICE_KEYS | POLICY_KEYS
    }
    names = {spec.name.upper() for spec in dataclasses.fields(Settings)}
    for key in config:
        if key[len(CONFIG_PREFIX) :] not in names:
            raise ConfigurationError(f"{key}: unknown setting")
    proxies = environ.get("SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS", "").strip()
    if proxies and not config.get(CONFIG_PREFIX + "PUBLIC_SCHEME"):
        config[CONFIG_PREFIX + "PUBLIC_SCHEME"] = "https"
    if "REDIS_URL" in environ and CONFIG_PREFIX + "BACKEND" not in config:
        config[CONFIG_PREFIX + "BACKEND"] = environ["REDIS_URL"]
    return Settings.resolve(overrides, config)
