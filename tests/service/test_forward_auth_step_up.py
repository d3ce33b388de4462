"""Step-up through forward-auth: ``/verify?max_age=`` answers the refusal of
``@recent_login_required`` (401 ``reauth_required`` with ``max_age``; a navigation is
sent to the ``reauth_url`` setting, by ``/verify`` itself for Traefik and Caddy, by
``/refusal`` behind nginx), and a bad ``max_age`` fails closed (docs/any-stack.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart
from quart.testing import QuartClient

from service.test_forward_auth import (
    FORWARDED,
    NGINX,
    STYLES,
    proxy_headers,
    refusal_of,
    signed_in_tab,
)
from sessionwatch import Policy
from support.app_factory import make_proxy_app
from support.clock import FakeClock


@pytest.fixture(name="app")
async def _app(
    backend_url: str, key_prefix: str, clock: FakeClock, style: str
) -> AsyncIterator[Quart]:
    app = make_proxy_app(
        backend_url,
        key_prefix=key_prefix,
        clock=clock,
        policy=Policy(),
        forward_auth=style,
        reauth_url="/confirm",
    )
    async with app.test_app():
        yield app


async def verify(
    client: QuartClient, style: str, query: str, *, navigate: bool = False, uri: str = "/api/x"
) -> Any:
    headers = proxy_headers(style, "GET", uri)
    if navigate:
        headers["Sec-Fetch-Mode"] = "navigate"
    return await client.get(f"/_sessionwatch/verify?require=auto&{query}", headers=headers)


@pytest.mark.parametrize("style", STYLES)
async def test_verify_asks_for_a_recent_sign_in_and_passes_after_reauthenticated(
    app: Quart, clock: FakeClock, style: str
) -> None:
    client = app.test_client()
    await signed_in_tab(client)
    assert (await verify(client, style, "max_age=300")).status_code == 204
    assert (await verify(client, style, "max_age=")).status_code == 204  # none asked
    clock.advance(301)
    assert (await verify(client, style, "")).status_code == 204  # no step-up here
    stale = await verify(client, style, "max_age=300")
    assert stale.status_code == 401  # a 401 passes nginx's auth_request as it is
    assert (await stale.get_json())["error"] == "reauth_required"
    assert refusal_of(stale) == {"status": 401, "error": "reauth_required", "max_age": 300}
    assert (await verify(client, style, "max_age=600")).status_code == 204
    assert (await client.post("/reauth")).status_code == 200
    assert (await verify(client, style, "max_age=300")).status_code == 204


@pytest.mark.parametrize("style", STYLES)
async def test_an_anonymous_or_missing_session_is_refused_by_step_up(
    app: Quart, style: str
) -> None:
    client = app.test_client()
    missing = await verify(client, style, "max_age=60")
    assert missing.status_code == 401 and (await missing.get_json())["error"] == "no_session"
    await client.post("/_sessionwatch/claim", json={})
    anonymous = await client.get(
        "/_sessionwatch/verify?require=none&max_age=60", headers=proxy_headers(style, "GET")
    )
    assert (await anonymous.get_json())["error"] == "not_signed_in"


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    "query", ["max_age=0", "max_age=86401", "max_age=-5", "max_age=5m", "max_age=1&max_age=2"]
)
async def test_a_bad_max_age_fails_closed(app: Quart, style: str, query: str) -> None:
    client = app.test_client()
    await signed_in_tab(client)
    response = await verify(client, style, query)
    assert response.status_code == 400 and (await response.get_json())["error"] == "bad_request"


@pytest.mark.parametrize("style", [FORWARDED])
async def test_traefik_and_caddy_send_a_navigation_to_the_reauth_page(
    app: Quart, clock: FakeClock, style: str
) -> None:
    client = app.test_client()
    await signed_in_tab(client)
    clock.advance(301)
    page = await verify(client, style, "max_age=300", navigate=True, uri="/pay?amount=5")
    assert page.status_code == 303
    assert page.headers["Location"] == "/confirm?next=/pay%3Famount%3D5"
    forged = await verify(client, style, "max_age=300", navigate=True, uri="//evil.example/")
    assert forged.headers["Location"] == "/confirm?next=/"  # never off the site


@pytest.mark.parametrize("style", [NGINX])
async def test_behind_nginx_refusal_sends_the_navigation_to_the_reauth_page(
    app: Quart, clock: FakeClock, style: str
) -> None:
    client = app.test_client()
    await signed_in_tab(client)
    clock.advance(301)
    stale = await verify(client, style, "max_age=300", navigate=True)
    assert stale.status_code == 401  # nginx carries it to /refusal (error_page 401)
    header = stale.headers["X-SessionWatch-Refusal"]
    asked = {"X-SessionWatch-Refusal": header, "X-Original-Method": "GET"}
    page = await app.test_client().get(
        "/_sessionwatch/refusal",
        headers={**asked, "X-Original-URI": "/pay?amount=5", "Sec-Fetch-Mode": "navigate"},
    )
    assert page.status_code == 303
    assert page.headers["Location"] == "/confirm?next=/pay%3Famount%3D5"
    fetched = await app.test_client().get(
        "/_sessionwatch/refusal", headers={**asked, "X-Original-URI": "/pay"}
    )
    assert fetched.status_code == 401
    assert (await fetched.get_json())["max_age"] == 300
    forged = header.replace("300", "99999999")
    bad = await app.test_client().get(
        "/_sessionwatch/refusal", headers={**asked, "X-SessionWatch-Refusal": forged}
    )
    assert bad.status_code == 400
