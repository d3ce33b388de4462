"""The TLS options of a ``rediss+cluster://`` URL's query, as redis-py's keywords.

``rediss+cluster://user:password@h:p,h:p/?ssl_ca_certs=/etc/redis/ca.pem`` — the same
names (and meanings) as a ``rediss://`` URL's query, which redis-py reads itself:

=======================  ====================================================
``ssl_ca_certs``         the CA bundle that signed the nodes' certificates
``ssl_certfile``         a client certificate (``tls-auth-clients yes``) ...
``ssl_keyfile``          ... and its key
``ssl_cert_reqs``        ``required`` (default), ``optional`` or ``none``
``ssl_check_hostname``   ``true`` (default) or ``false``
=======================  ====================================================

Every option reaches the cluster client and each pub/sub connection. An unknown name,
a repeated one, a bad value, or a TLS option on a plain ``redis+cluster://`` URL is a
:class:`~sessionwatch.core.exceptions.ConfigurationError` (it would otherwise be ignored
silently, and the connection fail or trust the system's CAs instead).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import parse_qs

from ..core.exceptions import ConfigurationError

__all__ = ["TLS_OPTIONS", "tls_options"]

TLS_OPTIONS: Final = (
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
    "ssl_check_hostname",
)
_CERT_REQS: Final = ("required", "optional", "none")
_BOOLEANS: Final = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def tls_options(query: str, *, tls: bool) -> dict[str, Any]:
    """The keyword arguments ``query`` names; ``tls``: whether the scheme is TLS."""
    try:
        pairs = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError(f"cluster URL: malformed query {query!r}") from None
    options: dict[str, Any] = {}
    for name, values in pairs.items():
        if name not in TLS_OPTIONS:
            raise ConfigurationError(
                f"cluster URL: unknown option {name!r}; known: {', '.join(TLS_OPTIONS)}"
            )
        if not tls:
            raise ConfigurationError(f"cluster URL: {name} needs the rediss+cluster:// scheme")
        if len(values) != 1 or not values[0]:
            raise ConfigurationError(f"cluster URL: {name} needs exactly one value")
        value = values[0]
        if name == "ssl_cert_reqs" and value not in _CERT_REQS:
            raise ConfigurationError(f"cluster URL: ssl_cert_reqs must be one of {_CERT_REQS}")
        if name == "ssl_check_hostname":
            if value.lower() not in _BOOLEANS:
                raise ConfigurationError("cluster URL: ssl_check_hostname must be true or false")
            options[name] = _BOOLEANS[value.lower()]
        else:
            options[name] = value
    return options
