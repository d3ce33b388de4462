"""Forwarded headers, believed only from the proxies the operator names.

``X-Forwarded-Proto`` decides whether the session cookie is ``Secure`` and
``__Host-``-prefixed and which origin is the app's own; ``X-Forwarded-For`` is the
client address that the per-address limits count. Anyone can send them, so they count
only on connections from a configured proxy (``--forwarded-allow-ips``). Malformed
values change nothing: the connection keeps its own scheme and peer address.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Final

__all__ = ["FORWARDED_HOST", "TrustedProxies", "parse_proxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The scope key holding a trusted proxy's X-Forwarded-Host (absent otherwise).
FORWARDED_HOST: Final = "sessionwatch.forwarded_host"
_SECURE = {"https": True, "wss": True, "http": False, "ws": False}


def parse_proxies(value: str) -> tuple[_Network, ...] | None:
    """Comma-separated addresses or networks; ``None`` stands for ``*`` (any peer).
    Raises :class:`ValueError` naming a bad item."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    if not items:
        raise ValueError("empty list of proxy addresses")
    if "*" in items:
        return None
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(networks)


class TrustedProxies:
    """ASGI middleware: on connections from ``proxies`` (see :func:`parse_proxies`),
    set the scope's scheme from ``X-Forwarded-Proto``, its client from the nearest
    untrusted ``X-Forwarded-For`` hop and :data:`FORWARDED_HOST` from
    ``X-Forwarded-Host`` (its first host: the browser's)."""

    def __init__(self, app: Any, proxies: str) -> None:
        self.app = app
        self.networks = parse_proxies(proxies)

    def trusted(self, host: str) -> bool:
        if self.networks is None:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        kind = scope.get("type")
        client = scope.get("client")
        if kind in ("http", "websocket") and client and self.trusted(str(client[0])):
            scope = self._forwarded(scope, kind)
        await self.app(scope, receive, send)

    def _forwarded(self, scope: Any, kind: str) -> Any:
        protos = []
        hosts = []
        hops: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-proto":
                protos.append(value.decode("latin-1").strip())
            elif name == b"x-forwarded-host":
                hosts.append(value.decode("latin-1").split(",")[0].strip())
            elif name == b"x-forwarded-for":
                hops.extend(hop.strip() for hop in value.decode("latin-1").split(","))
        scope = dict(scope)
        if len(protos) == 1 and protos[0] in _SECURE:  # several: ambiguous, ignored
            secure = _SECURE[protos[0]]
            if kind == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = "https" if secure else "http"
        if len(hosts) == 1 and hosts[0]:  # several lines: ambiguous, ignored
            scope[FORWARDED_HOST] = hosts[0]
        client = self._client(hops)
        if client is not None:
            scope["client"] = (client, 0)
        return scope

    def _client(self, hops: list[str]) -> str | None:
        """The nearest hop that is not one of our proxies (all valid addresses), or
        ``None`` when the list is empty or malformed."""
        addresses = []
        for hop in hops:
            try:
                addresses.append(str(ipaddress.ip_address(hop)))
            except ValueError:
                return None
        for address in reversed(addresses):
            if not self.trusted(address):
                return address
        return addresses[0] if addresses else None
