"""The demo admin page's audit feed (``GET /admin/audit``): the durable trail read
through ``SessionWatch.audit_feed``, behind the admin cookie, a bad cursor refused with
``bad_page``, and a poll with a cursor answering only the records after it
(docs/admin.md, docs/audit.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from sessionwatch.core.config import Settings
from sessionwatch.demo import create_app
from sessionwatch.engine.audit_feed import encode_cursor

PASSWORD = "feed-admin-password"


@pytest.fixture(name="demo")
async def _demo(backend_url: str, key_prefix: str) -> AsyncIterator[Quart]:
    app = create_app(
        Settings(backend=backend_url, key_prefix=key_prefix),
        secret_key="f" * 32,
        admin_password=PASSWORD,
    )
    async with app.test_app():
        yield app


async def admin(demo: Quart) -> Any:
    client = demo.test_client()
    signed = await client.post("/admin/login", form={"password": PASSWORD})
    assert signed.status_code == 302
    return client


async def feed(client: Any, cursor: str | None = None) -> dict[str, Any]:
    response = await client.get("/admin/audit", query_string={"cursor": cursor} if cursor else {})
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


async def test_the_feed_needs_the_admin_cookie(demo: Quart) -> None:
    anonymous = await demo.test_client().get("/admin/audit")
    assert anonymous.status_code == 401
    assert (await anonymous.get_json())["error"] == "not_signed_in"
    wrong = demo.test_client()
    await wrong.post("/admin/login", form={"password": "not-it"})
    assert (await wrong.get("/admin/audit")).status_code == 401


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "AAAA",  # base64, not a cursor
        "x" * 300_000,  # past the length cap
        encode_cursor({"shard": "1-0; FLUSHALL"}),  # a cursor's shape, not a stream id
        encode_cursor({"shard": "99999999999999999999-0"}),  # past 2^64
    ],
)
async def test_a_bad_cursor_is_refused_with_bad_page(demo: Quart, cursor: str) -> None:
    client = await admin(demo)
    response = await client.get("/admin/audit", query_string={"cursor": cursor})
    assert response.status_code == 400
    assert (await response.get_json())["error"] == "bad_page"


async def test_a_poll_answers_the_records_after_its_cursor_only(demo: Quart) -> None:
    client = await admin(demo)
    user = demo.test_client()
    assert (
        await user.post("/login", form={"username": "ann", "password": "demo"})
    ).status_code == 302
    first = await feed(client)
    signed_in = [r for r in first["records"] if r["event"] == "signed_in" and r["user"] == "ann"]
    assert len(signed_in) == 1 and signed_in[0]["actor"] == "user"
    session = signed_in[0]["session"]
    assert (await feed(client, first["cursor"]))["records"] == []  # nothing new yet

    revoked = await client.post(
        "/admin/revoke",
        json={"user": "ann", "reason": "stolen_laptop"},
        headers={"Origin": "http://localhost"},
    )
    assert (await revoked.get_json()) == {"revoked": 1}
    after = await feed(client, first["cursor"])
    assert [
        (r["event"], r["user"], r["session"], r["actor"], r["reason"]) for r in after["records"]
    ] == [("revoked", "ann", session, "admin:demo", "stolen_laptop")]
    assert (await feed(client, after["cursor"]))["records"] == []
    cookie = next(c.value for c in user.cookie_jar if c.name == "session")
    assert cookie not in str(first) + str(after)  # no secret in the feed
