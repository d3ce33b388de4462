"""Found by the fault suite's soak: Redis failing while a request's session data is
saved (after the view, past the app's error handlers) answered 500 — a crash — where
every other backend failure answers ``503 backend_unavailable``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Quart

from sessionwatch import BackendUnavailable
from sessionwatch.core.config import Settings
from sessionwatch.demo import create_app


@pytest.fixture(name="demo")
async def _demo(key_prefix: str) -> AsyncIterator[Quart]:
    app = create_app(Settings(backend="memory://", key_prefix=key_prefix), secret_key="f" * 32)
    async with app.test_app():
        yield app


async def test_a_backend_failure_while_saving_the_session_answers_503(
    demo: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = demo.extensions["sessionwatch"].backend

    async def unavailable(*args: Any, **kwargs: Any) -> bool:
        raise BackendUnavailable("Redis unreachable: Timeout reading")

    monkeypatch.setattr(backend, "save_data", unavailable)
    response = await demo.test_client().post(
        "/login", form={"username": "olive", "password": "demo"}
    )
    assert response.status_code == 503
    assert "Location" not in response.headers  # not the sign-in's redirect
    assert (await response.get_json())["error"] == "backend_unavailable"
