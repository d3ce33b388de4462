"""Backends, chosen by URL scheme and imported lazily (redis-py only when used).

========================  =============================================
``memory://``             :class:`~.memory.MemoryBackend` (one process)
``redis://``              :class:`~.redis.RedisBackend`
``rediss://``             Redis over TLS
``redis+sentinel://``     ``h1:26379,h2:26379/service_name?db=0``
``redis+cluster://``      :class:`~.redis_cluster.RedisClusterBackend`:
                          ``h1:6379,h2:6379/`` (sharded pub/sub)
``rediss+cluster://``     Redis Cluster over TLS
========================  =============================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlsplit

from ..core.exceptions import ConfigurationError
from ..core.trail import AuditSettings
from .base import Backend, ChannelMessage, Claim, Lookup, SessionRecord, Subscription, Timeouts

if TYPE_CHECKING:  # imported when a Redis URL is used: redis-py is an extra
    from .redis import RedisBackend

__all__ = [
    "Backend",
    "ChannelMessage",
    "Claim",
    "Lookup",
    "SessionRecord",
    "Subscription",
    "Timeouts",
    "backend_from_url",
    "redact_url",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages and logs.

    Read as text, not parsed: a malformed URL (``rediss//:pw@host``, a ``/`` in the
    password) must not show its password either. Everything before the last ``@`` after
    the scheme's ``//`` is the user information; only the user name is kept."""
    head, at, hosts = url.rpartition("@")
    if not at:
        return url
    scheme, slashes, userinfo = head.rpartition("//")
    if not slashes:
        scheme, userinfo = "", head
        if ":" in head and not head.startswith(":"):  # "redis:/u:pw" or "u:pw"
            scheme, _, userinfo = head.partition(":")
            scheme += ":"
            if ":" not in userinfo:  # "u:pw": the first part was the user, not a scheme
                scheme, userinfo = "", head
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{slashes}{user}:***@{hosts}"


_MISSING_REDIS = (
    "the {scheme}:// backend needs redis-py: pip install 'sessionwatch[redis]' "
    "(or 'sessionwatch[service]' for the service)"
)


def _check_redis_url(url: str) -> None:
    """Refuse what redis-py would silently ignore or crash on: a database that is not a
    number (``redis://host/abc``, ``?db=x``) and a port that is not one."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        if not parts.scheme.endswith("sentinel") and parts.scheme != "unix":
            parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        # not the parser's text: it quotes what it took for the port, which can be
        # part of the password ("redis://u:pa/ss@h" splits at the "/")
        raise ConfigurationError(
            f"invalid Redis URL {shown}: the port must be a number such as redis://host:6379"
        ) from None
    dbs = parse_qs(parts.query).get("db", [])
    if parts.scheme in ("redis", "rediss"):
        path = parts.path.strip("/")
        if path:
            dbs.append(path)
    for db in dbs:
        if not db.isdigit() or not db.isascii():
            raise ConfigurationError(
                f"invalid Redis URL {shown}: the database must be a number such as "
                f"redis://host:6379/0, got {db!r}"
            )


def _redis_backend(scheme: str) -> type[RedisBackend]:
    """The Redis backend class of ``scheme`` (a Redis or Cluster scheme), imported now:
    without redis-py a :class:`ConfigurationError` names the extra to install."""
    try:
        if scheme in _CLUSTER_SCHEMES:
            from .redis_cluster import RedisClusterBackend

            return RedisClusterBackend
        from .redis import RedisBackend

        return RedisBackend
    except ImportError as error:
        raise ConfigurationError(_MISSING_REDIS.format(scheme=scheme)) from error


def backend_from_url(
    url: str,
    *,
    key_prefix: str = "sw:",
    clock: Callable[[], float] = time.time,
    durable_ends: int | Literal["auto"] = "auto",
    durable_ends_timeout: float = 1.0,
    audit: AuditSettings | None = None,
) -> Backend:
    """The backend a URL names. Raises :class:`ConfigurationError` for an unknown scheme
    or a malformed URL (the message never shows the URL's password). ``durable_ends``
    and ``durable_ends_timeout`` apply to the Redis backends (:mod:`.durable_ends`); the
    memory backend has no replicas. ``audit``: how the audit trail is kept (``None``:
    on, with the defaults)."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else repr(url)
        raise ConfigurationError(
            f"backend must be a URL such as memory:// or redis://host, got {shown!r}"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(key_prefix=key_prefix, clock=clock, audit=audit)
    if scheme in _REDIS_SCHEMES or scheme in _CLUSTER_SCHEMES:
        if scheme in _REDIS_SCHEMES:
            _check_redis_url(url)
        return _redis_backend(scheme)(
            url,
            key_prefix=key_prefix,
            durable_ends=durable_ends,
            durable_ends_timeout=durable_ends_timeout,
            audit=audit,
        )
    raise ConfigurationError(
        f"unknown backend scheme {scheme!r} in {redact_url(url)!r}; use memory://, "
        "redis://, rediss://, redis+sentinel:// or redis+cluster://"
    )
