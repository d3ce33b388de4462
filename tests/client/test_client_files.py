"""The client's static files under the prefix: the script, its stylesheet and the bundled
translations (issue 16), cacheable, with a clear 404 for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionwatch.backends.memory import MemoryBackend
from support.app_factory import make_app

ROOT = Path(__file__).resolve().parents[2] / "client_js"


@pytest.mark.parametrize(
    ("url", "file", "content_type"),
    [
        ("/_sessionwatch/client.js", "sessionwatch.js", "text/javascript"),
        ("/_sessionwatch/client.css", "sessionwatch.css", "text/css"),
        ("/_sessionwatch/i18n/de.json", "i18n/de.json", "application/json"),
        ("/_sessionwatch/i18n/ja.json", "i18n/ja.json", "application/json"),
    ],
)
async def test_client_files_are_served_and_cacheable(
    url: str, file: str, content_type: str
) -> None:
    client = make_app(MemoryBackend()).test_client()
    response = await client.get(url)
    assert response.status_code == 200
    assert response.content_type.startswith(content_type)
    assert await response.get_data() == (ROOT / file).read_bytes()
    assert response.headers["Cache-Control"] == "public, max-age=300"
    again = await client.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("lang", ["en", "xx", "de.json", "..%2Fsessionwatch", "DE"])
async def test_only_bundled_translations(lang: str) -> None:
    client = make_app(MemoryBackend()).test_client()
    response = await client.get(f"/_sessionwatch/i18n/{lang}.json")
    assert response.status_code == 404
    if "%2F" not in lang:  # an encoded slash never reaches the route at all
        assert (await response.get_json())["error"] == "not_found"


def test_every_translation_has_every_english_key() -> None:
    english = {
        "superseded", "supersededBy", "useHere", "signOutOthers", "evicted", "revoked",
        "revoked_admin", "revoked_password_changed", "revoked_signed_out_at_provider",
        "logged_out", "expired", "signIn", "expiring", "stay", "signedIn", "notYou", "reauth",
        "confirm", "dismiss", "device", "unknownDevice",
        "newDevice", "newPlace",
        "justNow", "minutesAgo", "hoursAgo", "daysAgo",
    }  # fmt: skip
    source = (ROOT / "sessionwatch.js").read_text()
    for key in english:
        assert f"\n    {key}: " in source, key
    for path in sorted((ROOT / "i18n").glob("*.json")):
        strings = json.loads(path.read_text())
        assert set(strings) == english, path.name
        for key, value in strings.items():
            forms = value.values() if isinstance(value, dict) else [value]
            assert all(isinstance(form, str) and form for form in forms), (path.name, key)
            if isinstance(value, dict):
                assert "other" in value, (path.name, key)
