"""What the proxy demo's tests need installed: nginx (Debian) and the Express example."""

from __future__ import annotations

import pytest

from sessionwatch.demo.proxy.runner import DemoError, express_ready, find_nginx

from .redis_server import in_ci

__all__ = ["require_express", "require_nginx"]


def require_nginx() -> None:
    """Skip without nginx; in CI, fail (tests/run.sh installs nginx-light)."""
    try:
        find_nginx()
    except DemoError:
        if in_ci():
            pytest.fail("nginx is required in CI (tests/run.sh installs nginx-light)")
        pytest.skip("nginx is not installed")


def require_express() -> None:
    """Skip without the Express example's packages; in CI, fail (tests/run.sh: npm ci)."""
    if not express_ready():
        if in_ci():
            pytest.fail("the Express example is required in CI (tests/run.sh runs npm ci)")
        pytest.skip("the Express example is not installed (npm ci)")
