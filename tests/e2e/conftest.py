"""Real Chromium (Debian's, driven by Playwright) against the real service on a real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import CHROMIUM_ARGS
from support.redis_server import in_ci
from support.service_process import DemoProcess

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="session", name="chromium_path")
def _chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        if in_ci():
            pytest.fail("Chromium is required in CI (tests/run.sh installs Debian's chromium)")
        pytest.skip("Debian's chromium is not installed")
    return CHROMIUM


@pytest.fixture(scope="session", name="artifacts")
def _artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(name="browser")
async def _browser(chromium_path: str) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(name="mobile")
async def _mobile(chromium_path: str) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    """Chromium and Playwright's device descriptors (for ``phone_options``)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            yield browser, playwright.devices
        finally:
            await browser.close()


@pytest.fixture(scope="session", name="service")
def _service(redis_url: str) -> Iterator[DemoProcess]:
    """``sessionwatch demo`` on Redis, one worker: its policy form (which the tests use)
    changes the policy of the worker that serves it."""
    with DemoProcess(redis_url, key_prefix=f"e2e:{uuid.uuid4().hex[:8]}:") as service:
        yield service


@pytest.fixture(scope="session", name="short_service")
def _short_service(redis_url: str) -> Iterator[DemoProcess]:
    """The demo, 2 workers on Redis, with a short idle timeout for the expiry test."""
    env = {
        "SESSIONWATCH_IDLE_TIMEOUT": "16",
        "SESSIONWATCH_REFRESH_EVERY": "1",
        "SESSIONWATCH_EXPIRING_LEAD": "13",  # long enough for the banner checks
    }
    with DemoProcess(
        redis_url, workers=2, env=env, key_prefix=f"e2e:{uuid.uuid4().hex[:8]}:"
    ) as service:
        yield service
