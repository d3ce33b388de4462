"""The admin scope of the session API (``/_sessionwatch/api/v1/admin``, docs/admin.md)
through a real Quart app on memory and Redis: its own named keys (401 missing or
unknown, 403 a session API key), listing every user's sessions, revocations that tell
the tabs ``revoked{reason}`` and name the admin key as the actor, and bad input
answered with stable codes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from sessionwatch.backends.base import session_channel
from sessionwatch.core.config import Settings
from sessionwatch.core.exceptions import ConfigurationError
from support.app_factory import API_KEYS, make_proxy_app
from support.clock import FakeClock
from support.events import EventCollector

API = "/_sessionwatch/api/v1"
ADMIN = API + "/admin"
ADMIN_KEYS = (
    "carol:carol-admin-key-0123456789abcdef",
    "support-bot:bot-admin-key-0123456789abcdef",
)
CAROL = ADMIN_KEYS[0].split(":", 1)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(name="app")
async def _app(backend_url: str, key_prefix: str, clock: FakeClock) -> AsyncIterator[Quart]:
    app = make_proxy_app(backend_url, key_prefix=key_prefix, clock=clock, admin_keys=ADMIN_KEYS)
    async with app.test_app():
        yield app


async def admin(app: Quart, path: str, body: Any = None, *, key: str = CAROL) -> Any:
    client = app.test_client()
    if body is None:
        return await client.get(ADMIN + path, headers=bearer(key))
    return await client.post(ADMIN + path, json=body, headers=bearer(key))


async def sign_in(app: Quart, user: str) -> str:
    """A session of ``user`` made through the session API; its public id."""
    response = await app.test_client().post(
        API + "/login", json={"user": user}, headers=bearer(API_KEYS[0])
    )
    assert response.status_code == 200
    return str((await response.get_json())["session"])


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "api_key_missing"),
        ({"Authorization": "Bearer "}, 401, "api_key_missing"),
        (bearer("wrong-key-0123456789abcdefghij"), 401, "api_key_invalid"),
        (bearer(CAROL[:-1]), 401, "api_key_invalid"),
        (bearer(API_KEYS[0]), 403, "admin_key_required"),  # a valid key of the other scope
        ({**bearer(CAROL), "Cookie": "session=x"}, 403, "api_browser_forbidden"),
        ({**bearer(CAROL), "Origin": "http://localhost"}, 403, "api_browser_forbidden"),
    ],
)
async def test_refused_callers(app: Quart, headers: dict[str, str], status: int, code: str) -> None:
    for method, body in (("GET", None), ("POST", {"user": "ann"})):
        response = await app.test_client().open(
            ADMIN + ("/sessions" if body is None else "/revoke"),
            method=method,
            json=body,
            headers=headers,
        )
        assert response.status_code == status
        assert (await response.get_json())["error"] == code
        if status == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_admin_key_is_no_session_api_key(app: Quart) -> None:
    response = await app.test_client().post(
        API + "/login", json={"user": "ann"}, headers=bearer(CAROL)
    )
    assert response.status_code == 401
    assert (await response.get_json())["error"] == "api_key_invalid"


async def test_without_admin_keys_the_admin_api_is_off(key_prefix: str) -> None:
    app = make_proxy_app("memory://", key_prefix=key_prefix)
    async with app.test_app():
        response = await admin(app, "/sessions")
        assert response.status_code == 404
        assert (await response.get_json())["error"] == "admin_disabled"


@pytest.mark.parametrize(
    ("admin_keys", "message"),
    [
        (("no-name-key-0123456789abcdefghij",), "NAME:KEY"),
        ((":nameless-key-0123456789abcdefgh",), "NAME:KEY"),
        (("bad name:key-0123456789abcdefghijklm",), "NAME:KEY"),
        (("carol:short",), "at least 24"),
        (("carol:key-0123456789abcdefghijkl", "carol:key-9876543210abcdefghijkl"), "twice"),
        ((f"carol:{API_KEYS[0]}",), "must not also be a session API key"),
    ],
)
def test_bad_admin_keys_are_refused_at_start(admin_keys: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        Settings(api_keys=API_KEYS, admin_keys=admin_keys)
    assert "0123456789" not in str(refused.value)  # never shows a key


async def test_lists_every_users_sessions_a_page_at_a_time(app: Quart) -> None:
    made = {user: {await sign_in(app, user) for _ in range(count)} for user, count in
            [("ann", 2), ("bob", 1), ("cat", 3), ("dan", 1)]}  # fmt: skip
    seen: dict[str, set[str]] = {}
    cursor: str | None = None
    # A page examines a bounded number of keys (8 SCAN steps of COUNT 2) and the test
    # Redis is shared by the whole run: the listing may take many short pages.
    for _ in range(20_000):
        answer = await admin(app, "/sessions?limit=2" + (f"&cursor={cursor}" if cursor else ""))
        assert answer.status_code == 200
        page = await answer.get_json()
        for entry in page["users"]:
            assert all(s["user"] == entry["user"] and "current" not in s for s in entry["sessions"])
            seen.setdefault(entry["user"], set()).update(s["id"] for s in entry["sessions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    one = await (await admin(app, "/sessions?user=cat&limit=2")).get_json()
    assert len(one["sessions"]) == 2 and one["next_cursor"]
    bad = await admin(app, "/sessions?cursor=%25%25")
    assert bad.status_code == 400 and (await bad.get_json())["error"] == "bad_page"


async def test_revoke_tells_the_tabs_and_names_the_admin(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    watch = app.extensions["sessionwatch"]
    ann = [await sign_in(app, "ann") for _ in range(3)]
    caplog.set_level(logging.INFO, logger="sessionwatch.security")
    async with EventCollector(watch.backend) as events:
        await events.subscribe(*(session_channel(watch.backend.key_prefix, s) for s in ann))
        one = await admin(app, "/revoke", {"session": ann[0], "reason": "stolen_laptop"})
        assert await one.get_json() == {"revoked": 1, "actor": "carol"}
        channel, event = await events.next()
        assert channel.endswith(ann[0])
        assert (event.type, event.fields["reason"]) == ("revoked", "stolen_laptop")
        rest = await admin(app, "/revoke", {"user": "ann", "except_session": ann[2]})
        assert await rest.get_json() == {"revoked": 1, "actor": "carol"}
        channel, event = await events.next()
        assert channel.endswith(ann[1])
        assert (event.type, event.fields["reason"]) == ("revoked", "admin")  # the default
        await events.nothing()  # ann[2] kept
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "sessionwatch.security"
    ]
    revokes = [line for line in lines if line["event"] in ("revoke", "revoke_user")]
    assert [line.get("actor") for line in revokes] == ["admin:carol", "admin:carol"]
    listed = await (await admin(app, "/sessions?user=ann")).get_json()
    assert [s["id"] for s in listed["sessions"]] == [ann[2]]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"session": "A" * 22}, 404, "session_not_found"),  # the shape of one, but unknown
        ({"session": "not a public id"}, 400, "bad_session_id"),
        ({"session": "x" * 200}, 400, "bad_session_id"),
        ({"session": 5}, 400, "bad_session_id"),
        ({"user": "ann", "except_session": "../x"}, 400, "bad_session_id"),
        ({"user": "ann", "reason": "Not A Code"}, 400, "bad_reason"),
        ({"user": "ann", "reason": "x" * 40}, 400, "bad_reason"),
        ({"user": "ann\n"}, 400, "bad_request"),
        ({}, 400, "bad_request"),
        ({"session": "A" * 22, "user": "ann"}, 400, "bad_request"),
        ({"user": "ann", "actor": "mallory"}, 400, "bad_request"),  # the actor is the key's
    ],
)
async def test_bad_revocations_are_stable_errors(
    app: Quart, body: dict[str, Any], status: int, code: str
) -> None:
    response = await admin(app, "/revoke", body)
    assert response.status_code == status
    answer = await response.get_json()
    assert answer["error"] == code and answer["message"]
