"""A private CA and one certificate it signs for 127.0.0.1, made with ``openssl`` for a
test run (a TLS Redis Cluster's nodes, which use it as server and as client)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TlsFiles", "make_certificates"]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> TlsFiles:
    """Write ``ca.pem`` and ``node.pem``/``node.key`` (SAN IP:127.0.0.1, server and client
    use) into ``directory``. FileNotFoundError without openssl."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl is not installed")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=sessionwatch test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=directory)  # fmt: skip
    _openssl("req", "-new", *ec, "-subj", "/CN=127.0.0.1", "-keyout", "node.key",
             "-out", "node.csr", cwd=directory)  # fmt: skip
    (directory / "node.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=critical,CA:FALSE\n"
    )
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "node.ext", "-out", "node.pem",
             cwd=directory)  # fmt: skip
    return TlsFiles(directory / "ca.pem", directory / "node.pem", directory / "node.key")
