"""The HTML pages a browser navigation gets instead of JSON errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from support.app_factory import make_app

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


@pytest.fixture(name="app")
async def _app(backend_url: str, key_prefix: str) -> AsyncIterator[Quart]:
    app = make_app(backend_url, key_prefix=key_prefix)

    watch = app.extensions["sessionwatch"]

    @app.get("/")
    async def home() -> str:
        return "the app's start page"

    @app.get("/protected-page")
    @watch.active_tab_required
    async def protected_page() -> str:
        return "secret"

    async with app.test_app():
        yield app


async def _stale_token(app: Quart) -> tuple[object, str]:
    client = app.test_client()
    first = await client.post("/_sessionwatch/claim", json={})
    old = (await first.get_json())["tab"]
    await client.post("/_sessionwatch/claim", json={})  # another tab takes over
    return client, old


def _link(page: str) -> str:
    found = re.search(r'<a href="([^"]*)">Use this tab instead</a>', page)
    assert found, page
    return found.group(1)


async def test_use_this_tab_after_a_refused_form_post_is_a_page_that_loads(app: Quart) -> None:
    client, old = await _stale_token(app)
    refused = await client.post(  # type: ignore[attr-defined]
        "/transfer", form={"_sessionwatch_tab": old, "amount": "5"}, headers=NAVIGATE
    )
    assert refused.status_code == 409 and refused.mimetype == "text/html"
    target = _link(await refused.get_data(as_text=True))
    assert target != "/transfer"  # a link is a GET; /transfer only takes POST
    followed = await client.get(target, headers=NAVIGATE)  # type: ignore[attr-defined]
    assert followed.status_code not in (404, 405)


async def test_use_this_tab_after_a_refused_get_reloads_that_page(app: Quart) -> None:
    client, old = await _stale_token(app)
    refused = await client.get(  # type: ignore[attr-defined]
        "/protected-page", headers={**NAVIGATE, "X-SessionWatch-Tab": old}
    )
    assert refused.status_code == 409
    assert _link(await refused.get_data(as_text=True)) == "/protected-page"
