"""Backends, chosen by URL scheme and imported lazily (redis-py only when used).

========================  =============================================
``memory://``             :class:`~.memory.MemoryBackend` (one process)
``redis://``              :class:`~.redis.RedisBackend`
``rediss://``             Redis over TLS
``redis+sentinel://``     ``h1:26379,h2:26379/service_name?db=0``
========================  =============================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from ..core.exceptions import ConfigurationError
from .base import Backend, ChannelMessage, Claim, Lookup, SessionRecord, Subscription, Timeouts

__all__ = [
    "Backend",
    "ChannelMessage",
    "Claim",
    "Lookup",
    "SessionRecord",
    "Subscription",
    "Timeouts",
    "backend_from_url",
]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")


def backend_from_url(
    url: str, *, key_prefix: str = "sw:", clock: Callable[[], float] = time.time
) -> Backend:
    """The backend a URL names. Raises :class:`ConfigurationError` for an unknown scheme."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"backend must be a URL such as memory:// or redis://host, got {url!r}"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(key_prefix=key_prefix, clock=clock)
    if scheme in _REDIS_SCHEMES:
        from .redis import RedisBackend

        return RedisBackend(url, key_prefix=key_prefix)
    raise ConfigurationError(
        f"unknown backend scheme {scheme!r} in {url!r}; use memory://, redis://, rediss:// "
        "or redis+sentinel://"
    )
