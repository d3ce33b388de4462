"""Remember-me through a real proxy (docs/any-stack.md, "Remember-me through the
proxy"): a browser holding nothing but the remember cookie asks for a page through
nginx (``auth_request``) or Caddy (``forward_auth``); ``/verify`` restores a session and
both cookies it sets reach the browser, which is then signed in on the next request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from integration.test_proxy_demo import Browser
from sessionwatch.client import SessionAPI
from sessionwatch.demo.proxy import ProxyDemo
from support.proxy import require_caddy, require_nginx

pytestmark = pytest.mark.multiprocess


@pytest.fixture(name="demo", params=["nginx", "caddy"])
def _demo(request: pytest.FixtureRequest, redis_url: str) -> Iterator[ProxyDemo]:
    (require_nginx if request.param == "nginx" else require_caddy)()
    prefix = f"remember-proxy:{uuid.uuid4().hex[:8]}:"
    with ProxyDemo(
        backend=redis_url,
        express_port=None,
        proxy=request.param,
        env={"SESSIONWATCH_KEY_PREFIX": prefix},
    ) as demo:
        yield demo


def test_a_restore_inside_verify_sets_both_cookies_through_the_proxy(demo: ProxyDemo) -> None:
    signed_in = SessionAPI(demo.sessionwatch_url, demo.api_key).login("pia", remember=True)
    remember = signed_in["remember_cookie"]
    browser = Browser(demo.urls["flask"])
    browser.cookies = {remember["name"]: remember["value"]}  # after a restart
    status, _, page = browser.request("GET", "/")
    assert status == 200 and b"pia" in page
    assert set(browser.cookies) == {"session", remember["name"]}
    assert browser.cookies[remember["name"]] != remember["value"]  # rotated
    rotated = dict(browser.cookies)
    status, headers, page = browser.request("GET", "/")  # a plain session now
    assert status == 200 and b"pia" in page and browser.cookies == rotated
    assert "Set-Cookie" not in headers, headers.get("Set-Cookie")
