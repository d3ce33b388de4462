"""The nginx configuration of the proxy demo, the one docs/any-stack.md explains.

``SESSIONWATCH_SNIPPET`` is what any nginx site in front of sessionwatch needs (the
browser client's routes, the internal verify locations and the refusal location);
``PROTECT_SNIPPET`` goes into every location that forward-auth protects.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["PROTECT_SNIPPET", "SESSIONWATCH_SNIPPET", "nginx_config"]

SESSIONWATCH_SNIPPET = r"""
# The browser client (client.js, /claim, /state, the WebSocket): straight to sessionwatch.
location /_sessionwatch/ {
    proxy_pass http://sessionwatch;
    proxy_http_version 1.1;
    proxy_set_header Host $http_host;
    # the browser's scheme (the __Host- cookie, the own origin) and address, believed
    # from this proxy only (sessionwatch serve --forwarded-allow-ips)
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $sessionwatch_connection;
    proxy_read_timeout 1h;
}
# The session API is for the upstream app, never for browsers.
location /_sessionwatch/api/ {
    return 404;
}
# Forward-auth: auth_request /_sessionwatch_auth/<auto|session|tab|none>, and with
# step-up /_sessionwatch_auth/<rule>/max-age/<seconds> (an empty max_age: none).
location ~ ^/_sessionwatch_auth/(auto|session|tab|none)(?:/max-age/([0-9]+))?$ {
    internal;
    proxy_pass http://sessionwatch/_sessionwatch/verify?require=$1&max_age=$2;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-URI $request_uri;
    # the site's own origin for the Origin check: set here, never the client's
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
}
# auth_request passes only 401 and 403 on: sessionwatch's /refusal answers the real
# status and body (409 tab_superseded, 503 backend_unavailable, ...) of a refusal.
location @sessionwatch_refusal {
    rewrite ^ /_sessionwatch/refusal break;
    proxy_method GET;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Original-Method $request_method;
    proxy_set_header X-Original-URI $request_uri;
    proxy_set_header X-SessionWatch-Refusal $sessionwatch_refusal;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_pass http://sessionwatch;
}
"""

PROTECT_SNIPPET = r"""
auth_request_set $sessionwatch_user $upstream_http_x_sessionwatch_user;
auth_request_set $sessionwatch_session $upstream_http_x_sessionwatch_session;
auth_request_set $sessionwatch_tab $upstream_http_x_sessionwatch_tab_status;
auth_request_set $sessionwatch_refusal $upstream_http_x_sessionwatch_refusal;
error_page 401 403 = @sessionwatch_refusal;
# A remember cookie restored a session inside /verify: its two cookies go to the browser
# (auth_request keeps only one of several Set-Cookie lines, so /verify names each alone;
# an empty value adds no header). add_header here replaces any of the server level.
auth_request_set $sessionwatch_set_session $upstream_http_x_sessionwatch_set_session;
auth_request_set $sessionwatch_set_remember $upstream_http_x_sessionwatch_set_remember;
add_header Set-Cookie $sessionwatch_set_session always;
add_header Set-Cookie $sessionwatch_set_remember always;
# Always set (empty: not sent), so a client cannot send its own.
proxy_set_header X-SessionWatch-User $sessionwatch_user;
proxy_set_header X-SessionWatch-Session $sessionwatch_session;
proxy_set_header X-SessionWatch-Tab-Status $sessionwatch_tab;
proxy_set_header Host $http_host;
proxy_set_header X-Real-IP $remote_addr;
proxy_http_version 1.1;
proxy_set_header Connection "";
"""

_HTTP = """
daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $sessionwatch_connection {{ default upgrade; "" ""; }}
    upstream sessionwatch {{ server 127.0.0.1:{sessionwatch_port}; keepalive 64; }}
{upstreams}
{servers}
}}
"""

_PROTECTED_SERVER = """
    # {name}: every page says who it is (none), /api/ needs the active tab (auto:
    # unsafe methods), /logout a session and an allowed origin.
    server {{
        listen 127.0.0.1:{port};
        include {dir}/sessionwatch.conf;
        location /api/ {{
            auth_request /_sessionwatch_auth/auto;
            include {dir}/protect.conf;
            proxy_pass http://{name};
        }}
        location = /logout {{
            auth_request /_sessionwatch_auth/session;
            include {dir}/protect.conf;
            proxy_pass http://{name};
        }}
        location / {{
            auth_request /_sessionwatch_auth/none;
            include {dir}/protect.conf;
            proxy_pass http://{name};
        }}
    }}
"""

_PLAIN_SERVER = """
    # {name} without forward-auth (the benchmark's baseline).
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{name};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""


def nginx_config(
    directory: Path,
    *,
    sessionwatch_port: int,
    upstreams: Mapping[str, int],
    protected: Mapping[str, int],
    plain: Mapping[str, int] | None = None,
    workers: int = 1,
    servers: str = "",
) -> Path:
    """Write ``nginx.conf`` and its snippets into ``directory``; returns its path.

    Args:
        sessionwatch_port: where ``sessionwatch serve`` listens.
        upstreams: upstream name -> its port.
        protected: upstream name -> the nginx port that serves it with forward-auth.
        plain: upstream name -> an nginx port that serves it without (benchmarks).
        workers: nginx worker processes.
        servers: more ``server {}`` blocks, as written (a TLS site in the tests).
    """
    (directory / "sessionwatch.conf").write_text(SESSIONWATCH_SNIPPET)
    (directory / "protect.conf").write_text(PROTECT_SNIPPET)
    blocks = "".join(
        f"    upstream {name} {{ server 127.0.0.1:{port}; keepalive 64; }}\n"
        for name, port in upstreams.items()
    )
    servers += "".join(
        _PROTECTED_SERVER.format(name=name, port=port, dir=directory)
        for name, port in protected.items()
    )
    servers += "".join(
        _PLAIN_SERVER.format(name=name, port=port) for name, port in (plain or {}).items()
    )
    path = directory / "nginx.conf"
    path.write_text(
        _HTTP.format(
            workers=workers,
            dir=directory,
            sessionwatch_port=sessionwatch_port,
            upstreams=blocks,
            servers=servers,
        )
    )
    return path
