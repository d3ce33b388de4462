"""When the demo service warns that sign-in cannot work (issue 16, defect 7): a Secure
cookie, plain HTTP, a host that is not loopback, and no TLS proxy in front."""

from __future__ import annotations

import logging

import pytest

from sessionwatch import Settings
from sessionwatch.demo.app import INSECURE_COOKIE_SETTING, cookie_dropped, create_app


@pytest.mark.parametrize(
    ("scheme", "host", "secure", "proto", "dropped"),
    [
        ("http", "192.168.1.20:8000", True, None, True),
        ("http", "demo.example.com", True, None, True),
        ("http", "[2001:db8::1]:8000", True, None, True),
        ("http", "localhost:8000", True, None, False),
        ("http", "app.localhost", True, None, False),
        ("http", "127.0.0.1:8000", True, None, False),
        ("http", "127.1.2.3", True, None, False),
        ("http", "[::1]:8000", True, None, False),
        ("https", "demo.example.com", True, None, False),
        ("http", "demo.example.com", False, None, False),
        ("http", "demo.example.com", True, "https", False),
        ("http", "demo.example.com", True, "https, http", False),
        ("http", "demo.example.com", True, "http", True),
        ("http", "", True, None, True),
        ("http", "not a host!", True, None, True),
    ],
)
def test_cookie_dropped(
    scheme: str, host: str, secure: bool, proto: str | None, dropped: bool
) -> None:
    assert cookie_dropped(scheme, host, secure=secure, forwarded_proto=proto) is dropped


async def test_the_login_page_and_the_log_name_the_setting_once_per_host(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(backend="memory://"), secret_key="x" * 32)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="sessionwatch.demo.app"):
        for _ in range(2):
            page = await (await client.get("/login", headers={"Host": "10.0.0.5:8000"})).get_data(
                True
            )
            assert INSECURE_COOKIE_SETTING in page
        local = await (await client.get("/login", headers={"Host": "localhost:8000"})).get_data(
            True
        )
    assert INSECURE_COOKIE_SETTING not in local
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "http://10.0.0.5:8000" in warnings[0]
    assert INSECURE_COOKIE_SETTING in warnings[0]
