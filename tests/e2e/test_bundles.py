"""The client inside bundles built by esbuild (from npm), in real Chromium (issue 16,
defect 6): neither the ES module entry nor a classic bundle starts by itself, the bundle
tag's data-* are not read, and start(options) then runs with exactly those options."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_banner import BANNER, signed_in, wait_state

from support.service_process import ServiceProcess

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).resolve().parents[2] / "client_js"
ESBUILD = CLIENT / "node_modules" / ".bin" / "esbuild"

# name -> (entry source, esbuild format, script tag type)
BUNDLES = {
    "esm": (f'import SessionWatch from "{CLIENT}/sessionwatch.mjs";\nwindow.bundled = SessionWatch;\n', "esm", "module"),
    "esm-as-iife": (f'import {{ start, state }} from "{CLIENT}/sessionwatch.mjs";\nwindow.bundled = {{ start, state }};\n', "iife", "text/javascript"),
    "classic": (f'const SessionWatch = require("{CLIENT}/sessionwatch.js");\nwindow.bundled = SessionWatch;\n', "iife", "text/javascript"),
}  # fmt: skip

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bundle</title>
<script type="{type}" src="/bundle/{name}.js" data-prefix="/not-the-api" data-autostart="true"></script>
</head><body><main><h1>An app with its own bundle</h1></main></body></html>"""


def build(tmp_path: Path, name: str) -> str:
    source, fmt, _ = BUNDLES[name]
    entry = tmp_path / f"{name}-entry.js"
    entry.write_text(source)
    out = tmp_path / f"{name}.js"
    subprocess.run(
        [
            ESBUILD,
            str(entry),
            "--bundle",
            f"--format={fmt}",
            f"--outfile={out}",
            "--log-level=error",
        ],
        check=True,
        timeout=60,
    )
    return out.read_text()


@pytest.mark.parametrize("name", list(BUNDLES))
async def test_a_bundle_never_autostarts_and_start_takes_its_options(
    browser: Any, service: ServiceProcess, tmp_path: Path, name: str
) -> None:
    bundle = build(tmp_path, name)
    assert "sessionwatch" in bundle and len(bundle) > 10000, "the client is inside"
    context, home = await signed_in(browser, service, f"bundler-{name}")

    async def serve(route: Any) -> None:
        if route.request.url.endswith(".html"):
            await route.fulfill(
                body=PAGE.format(type=BUNDLES[name][2], name=name), content_type="text/html"
            )
        else:
            await route.fulfill(body=bundle, content_type="text/javascript")

    await context.route(service.url + "/bundle/**", serve)
    page = await context.new_page()
    api_calls: list[str] = []
    page.on(
        "request",
        lambda r: (
            api_calls.append(r.url)
            if "/_sessionwatch/" in r.url or "/not-the-api/" in r.url
            else None
        ),
    )
    await page.goto(service.url + f"/bundle/{name}.html", wait_until="load")
    assert await page.evaluate("window.bundled.state()") == "stopped", "it started by itself"
    assert api_calls == []
    await page.evaluate("window.bundled.start({strings: {superseded: 'Open elsewhere (bundle).'}})")
    await wait_state(page, "active")
    assert all("/_sessionwatch/" in url for url in api_calls), (
        "the bundle tag's data-prefix was read"
    )
    await home.goto(service.url + "/")  # a newer tab of the same session
    banner = page.locator(BANNER.format("superseded"))
    await banner.wait_for(timeout=2000)
    assert "Open elsewhere (bundle)." in await banner.inner_text()
    await context.close()
