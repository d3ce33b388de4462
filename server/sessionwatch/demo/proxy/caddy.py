"""The Caddy configuration of the proxy demo (``--proxy caddy``), the Caddyfile that
docs/any-stack.md explains, with ``sessionwatch serve`` run as
``SESSIONWATCH_FORWARD_AUTH=caddy``.

Caddy from Debian would otherwise reach out: automatic HTTPS (ACME, a local CA it
installs into the system trust store) and an admin endpoint. The global options turn
both off, every site is plain HTTP bound to loopback, and its data and config folders
are the demo's own directory (:func:`caddy_environment`), so nothing leaves the machine
and nothing is written outside the demo's directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["SITE_SNIPPET", "caddy_config", "caddy_environment", "find_caddy", "site_routes"]

# What every site in front of sessionwatch needs (docs/any-stack.md, "Caddy");
# SESSIONWATCH stands for its address.
SITE_SNIPPET = """
	# Nobody but the proxy sets the identity headers, nor nginx's original-request ones.
	request_header -X-SessionWatch-User
	request_header -X-SessionWatch-Session
	request_header -X-SessionWatch-Tab-Status
	request_header -X-Original-Method
	request_header -X-Original-URI
	request_header -X-SessionWatch-Set-Session
	request_header -X-SessionWatch-Set-Remember
	# A remember cookie restored a session inside /verify: its cookies, which
	# forward_auth copies into the request, go onto the answer (docs/policies.md).
	@sessionwatch_set_session header_regexp X-SessionWatch-Set-Session .
	@sessionwatch_set_remember header_regexp X-SessionWatch-Set-Remember .
	# The session API is for the upstream app, never for browsers.
	handle /_sessionwatch/api/* {
		respond 404
	}
	# The browser client (client.js, /claim, /state, the WebSocket).
	handle /_sessionwatch/* {
		reverse_proxy SESSIONWATCH
	}"""

# One protected route: ``forward_auth`` asks /verify with the given rule, then the app.
_PROTECTED = """
	handle {matcher}{{
		route {{
			forward_auth SESSIONWATCH {{
				uri /_sessionwatch/verify?require={rule}
				copy_headers X-SessionWatch-User X-SessionWatch-Session X-SessionWatch-Tab-Status X-SessionWatch-Set-Session X-SessionWatch-Set-Remember
			}}
			header @sessionwatch_set_session +Set-Cookie "{{http.request.header.X-SessionWatch-Set-Session}}"
			header @sessionwatch_set_remember +Set-Cookie "{{http.request.header.X-SessionWatch-Set-Remember}}"
			request_header -X-SessionWatch-Set-Session
			request_header -X-SessionWatch-Set-Remember
			reverse_proxy {upstream}
		}}
	}}"""

_GLOBAL = """{{
	# Loopback only, no reaching out: no admin endpoint, no ACME, no local CA.
	admin off
	auto_https off
	skip_install_trust
	storage file_system {dir}/caddy-data
	grace_period 2s
}}
"""


def find_caddy() -> str | None:
    """The path of ``caddy`` (Debian: apt-get install caddy), or ``None``."""
    return shutil.which("caddy") or next(
        (p for p in ("/usr/bin/caddy", "/usr/local/bin/caddy") if os.access(p, os.X_OK)), None
    )


def caddy_environment(directory: Path) -> dict[str, str]:
    """Caddy's data, config and home folders inside ``directory``."""
    return {
        "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "caddy-data"),
        "XDG_CONFIG_HOME": str(directory / "caddy-config"),
    }


def site_routes(*, sessionwatch: str, upstream: str) -> str:
    """The body of one site block (docs/any-stack.md shows it for ``app.example.com``):
    every page says who it is (none), /api/ needs the active tab (auto: unsafe methods),
    /logout a session and an allowed origin."""
    routes = "".join(
        _PROTECTED.format(matcher=matcher, rule=rule, upstream=upstream)
        for matcher, rule in (("/api/* ", "auto"), ("/logout ", "session"), ("", "none"))
    )
    return (SITE_SNIPPET + routes).replace("SESSIONWATCH", sessionwatch).strip("\n")


def caddy_config(
    directory: Path,
    *,
    sessionwatch_port: int,
    upstreams: Mapping[str, int],
    protected: Mapping[str, int],
    plain: Mapping[str, int] | None = None,
) -> Path:
    """Write ``Caddyfile`` into ``directory``; returns its path.

    Args:
        sessionwatch_port: where ``sessionwatch serve`` listens.
        upstreams: upstream name -> its port.
        protected: upstream name -> the Caddy port that serves it with forward-auth.
        plain: upstream name -> a Caddy port that serves it without (benchmarks).
    """
    sessionwatch = f"127.0.0.1:{sessionwatch_port}"
    blocks = [_GLOBAL.format(dir=directory)]
    for name, port in protected.items():
        body = site_routes(sessionwatch=sessionwatch, upstream=f"127.0.0.1:{upstreams[name]}")
        blocks.append(f"# {name}\nhttp://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n{body}\n}}\n")
    for name, port in (plain or {}).items():
        blocks.append(
            f"# {name} without forward-auth\nhttp://127.0.0.1:{port} {{\n"
            f"\tbind 127.0.0.1\n\treverse_proxy 127.0.0.1:{upstreams[name]}\n}}\n"
        )
    path = directory / "Caddyfile"
    path.write_text("".join(blocks))
    return path
