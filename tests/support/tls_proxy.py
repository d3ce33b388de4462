"""nginx terminating TLS in front of a ``sessionwatch serve``, configured with the
snippets docs/any-stack.md documents (the browser client's routes, forward-auth) and
two protected locations, ``/app`` (``auth_request`` ``auto``; the answer's
``X-Test-User`` says who forward-auth let through) and ``/fresh`` (the same with
step-up: a sign-in at most 1 second old). The certificate is self-signed for
127.0.0.1, made with ``openssl`` per instance; :meth:`TlsProxy.client_context`
trusts exactly it."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from sessionwatch.demo.proxy.nginx import nginx_config
from sessionwatch.demo.proxy.runner import find_nginx

from .processes import ManagedProcess
from .redis_server import free_port

__all__ = ["TlsProxy"]

_SERVERS = """
    server {{
        listen 127.0.0.1:{port};
        location = /ready {{ return 200 "ready"; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        include {dir}/sessionwatch.conf;
        location = /app {{
            auth_request /_sessionwatch_auth/auto;
            include {dir}/protect.conf;
            add_header X-Test-User $sessionwatch_user always;
            proxy_pass http://sessionwatch/healthz;
        }}
        location = /fresh {{
            auth_request /_sessionwatch_auth/auto/max-age/1;
            include {dir}/protect.conf;
            add_header X-Test-User $sessionwatch_user always;
            proxy_pass http://sessionwatch/healthz;
        }}
    }}
"""


class TlsProxy(ManagedProcess):
    """nginx with TLS on :attr:`tls_port` for the service on ``service_port`` (plain
    HTTP on :attr:`port` answers only the readiness probe)."""

    name = "nginx-tls"
    ready_path = "/ready"

    def __init__(self, service_port: int) -> None:
        super().__init__()
        self.tls_port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sessionwatch-tls-"))
        self.directory.chmod(0o755)  # nginx's workers (nobody when run as root) use it
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec"),
                *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"),
                *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
                *("-keyout", str(self.directory / "key.pem")),
                *("-out", str(self.cert)),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        servers = _SERVERS.format(dir=self.directory, port=self.port, tls_port=self.tls_port)
        config = nginx_config(
            self.directory,
            sessionwatch_port=service_port,
            upstreams={},
            protected={},
            servers=servers,
        )
        self.command = [find_nginx(), "-c", str(config), "-p", str(self.directory)]
        self.command += ["-e", str(self.directory / "error.log")]

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this proxy's certificate only."""
        return ssl.create_default_context(cafile=str(self.cert))

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        shutil.rmtree(self.directory, ignore_errors=True)
