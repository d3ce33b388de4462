"""The demo app's own rules: demo accounts, re-authentication, policy switcher, redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Quart

from sessionwatch.core.config import Settings
from sessionwatch.demo import create_app, create_demo_app


@pytest.fixture(name="demo")
async def _demo(backend_url: str, key_prefix: str) -> AsyncIterator[Quart]:
    app = create_app(Settings(backend=backend_url, key_prefix=key_prefix), secret_key="d" * 32)
    async with app.test_app():
        yield app


async def sign_in(client, username: str = "ann", password: str = "demo", **extra: str):  # type: ignore[no-untyped-def]
    return await client.post("/login", form={"username": username, "password": password, **extra})


async def claim(client) -> str:  # type: ignore[no-untyped-def]
    return (await (await client.post("/_sessionwatch/claim", json={})).get_json())["tab"]


async def test_demo_accounts_need_the_demo_password(demo: Quart) -> None:
    client = demo.test_client()
    assert (await sign_in(client, password="nope")).status_code == 401
    assert (await sign_in(client, username="x" * 65)).status_code == 401
    assert (await client.get("/")).status_code == 302
    response = await sign_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = await (await client.get("/")).get_data(as_text=True)
    assert "ann" in page and "/_sessionwatch/client.js" in page


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)"]
)
async def test_no_open_redirect_after_sign_in(demo: Quart, target: str) -> None:
    response = await sign_in(demo.test_client(), next=target)
    assert response.headers["Location"] == "/"


async def test_protected_transfer_and_policy_switch(demo: Quart) -> None:
    client = demo.test_client()
    await sign_in(client)
    token = await claim(client)
    ok = await client.post(
        "/api/transfer", json={"amount": 5}, headers={"X-SessionWatch-Tab": token}
    )
    assert ok.status_code == 200 and "5" in (await ok.get_json())["message"]
    bad = await client.post(
        "/api/transfer", json={"amount": -1}, headers={"X-SessionWatch-Tab": token}
    )
    assert bad.status_code == 400
    assert (await client.post("/api/transfer", json={"amount": 5})).status_code == 409
    switched = await client.post(
        "/policy",
        json={"tabs": "one", "devices": "1", "on_limit": "deny"},
        headers={"X-SessionWatch-Tab": token},
    )
    assert await switched.get_json() == {"one_tab": True, "devices": 1, "on_limit": "deny"}
    denied = await sign_in(demo.test_client())
    assert denied.status_code == 403 and "1 active session" in await denied.get_data(as_text=True)


async def test_the_demo_starts_with_the_policy_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sessionwatch demo`` workers read the ``SESSIONWATCH_*`` policy (the form changes
    only the worker that served it)."""
    monkeypatch.setenv("SESSIONWATCH_BACKEND", "memory://")
    monkeypatch.setenv("SESSIONWATCH_SESSIONS_PER_USER", "1")
    monkeypatch.setenv("SESSIONWATCH_ON_LIMIT", "deny")
    monkeypatch.setenv("DEMO_SECRET_KEY", "demo-test-key-0123456789-abcdefghij")
    app = create_demo_app()
    async with app.test_app():
        assert (await sign_in(app.test_client())).status_code == 302
        denied = await sign_in(app.test_client())
        assert denied.status_code == 403 and "1 active session" in await denied.get_data(
            as_text=True
        )


async def test_reauth_rotates_and_signs_out_the_others(demo: Quart) -> None:
    mine, other = demo.test_client(), demo.test_client()
    await sign_in(mine)
    await sign_in(other)
    other_token = await claim(other)
    assert (await mine.post("/reauth", form={"password": "wrong"})).status_code == 401
    response = await mine.post("/reauth", form={"password": "demo", "next": "/"})
    assert response.status_code == 302
    refused = await other.post(
        "/api/transfer", json={"amount": 1}, headers={"X-SessionWatch-Tab": other_token}
    )
    assert refused.status_code == 401 and (await refused.get_json())["reason"] == "revoked"
    sessions = (await (await mine.get("/_sessionwatch/sessions")).get_json())["sessions"]
    assert len(sessions) == 1 and sessions[0]["current"]


async def test_ops_endpoints(demo: Quart) -> None:
    client = demo.test_client()
    assert (await (await client.get("/healthz")).get_json()) == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 404  # the service's, not the demo's


async def test_the_ask_policy_shows_the_chooser_and_signs_out_the_chosen_device(
    demo: Quart,
) -> None:
    """Issue 27: the switcher's third option; at the limit the new device gets the
    chooser page, and its choice signs out exactly that device."""
    first, second, third = demo.test_client(), demo.test_client(), demo.test_client()
    await sign_in(first)
    token = await claim(first)
    switched = await first.post(
        "/policy",
        form={"tabs": "one", "devices": "2", "on_limit": "ask"},
        headers={"X-SessionWatch-Tab": token},
    )
    assert (await switched.get_json())["on_limit"] == "ask"
    home = await (await first.get("/")).get_data(as_text=True)
    assert 'value="ask" checked' in home
    await sign_in(second)
    second_token = await claim(second)
    chooser = await sign_in(third)
    page = await chooser.get_data(as_text=True)
    assert chooser.status_code == 409 and 'action="/login/choose"' in page
    assert (await third.get("/")).status_code == 302  # not signed in meanwhile
    pending = page.split('name="pending" value="')[1].split('"')[0]
    chosen = page.split('name="evict" value="')[2].split('"')[0]  # the second device
    done = await third.post("/login/choose", form={"pending": pending, "evict": chosen})
    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert "ann" in await (await third.get("/")).get_data(as_text=True)
    refused = await second.post(
        "/api/transfer", json={"amount": 1}, headers={"X-SessionWatch-Tab": second_token}
    )
    assert refused.status_code == 401 and (await refused.get_json())["reason"] == "evicted"
    replay = await third.post("/login/choose", form={"pending": pending, "evict": chosen})
    assert replay.status_code == 400


async def test_a_large_transfer_asks_to_confirm_it_is_you(demo: Quart) -> None:
    """Issue 27: above STEP_UP_AMOUNT the transfer wants a sign-in from the last
    STEP_UP_AGE seconds; the re-auth page's step-up form renews it without signing out
    anything."""
    from sessionwatch.demo.app import STEP_UP_AGE, STEP_UP_AMOUNT

    clock = [1_800_000_000.0]
    app = create_app(Settings(backend="memory://"), secret_key="d" * 32)
    watch = app.extensions["sessionwatch"]
    watch.clock = lambda: clock[0]
    async with app.test_app():
        client, other = app.test_client(), app.test_client()
        await sign_in(client)
        await sign_in(other)
        token = await claim(client)
        headers = {"X-SessionWatch-Tab": token}
        large = {"amount": STEP_UP_AMOUNT + 1}
        assert (await client.post("/api/transfer", json=large, headers=headers)).status_code == 200
        clock[0] += STEP_UP_AGE + 1
        small = await client.post("/api/transfer", json={"amount": 5}, headers=headers)
        assert small.status_code == 200
        stale = await client.post("/api/transfer", json=large, headers=headers)
        assert stale.status_code == 401
        assert (await stale.get_json())["error"] == "reauth_required"
        form = await (await client.get("/reauth?next=/")).get_data(as_text=True)
        assert 'name="step_up" value="1"' in form
        confirmed = await client.post(
            "/reauth", form={"password": "demo", "next": "/", "step_up": "1"}
        )
        assert confirmed.status_code == 302
        assert (await client.post("/api/transfer", json=large, headers=headers)).status_code == 200
        assert (await other.get("/")).status_code == 200  # nobody was signed out
        not_you = await (await client.get("/reauth?next=/&revoke_others=1")).get_data(as_text=True)
        assert 'name="step_up"' not in not_you
