"""What a new user meets first: the declared dependencies, the help text, the README's
Procfile line and the package's typing marker."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata, resources
from pathlib import Path

import pytest

from sessionwatch.service import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_declared_uvicorn_floor_is_the_one_the_service_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    (spec,) = [d for d in project["optional-dependencies"]["service"] if d.startswith("uvicorn")]
    floor = re.search(r">=\s*([\d.]+)", spec)
    assert floor, spec
    declared = tuple(int(n) for n in floor.group(1).split(".")[:2])
    assert declared >= cli.UVICORN_FLOOR >= (0, 35)


def test_the_declared_granian_floor_is_the_one_the_service_checks() -> None:
    from sessionwatch.service.granian_server import GRANIAN_FLOOR

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    (spec,) = [d for d in project["optional-dependencies"]["granian"] if d.startswith("granian")]
    floor = re.search(r">=\s*([\d.]+),\s*<\s*3\b", spec)
    assert floor, spec
    assert tuple(int(n) for n in floor.group(1).split(".")) == GRANIAN_FLOOR


def test_serve_refuses_an_older_uvicorn_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    real_version = metadata.version

    def version(name: str) -> str:
        return "0.34.3" if name == "uvicorn" else real_version(name)

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("uvicorn was started")

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(uvicorn, "run", started)
    for key in ("SESSIONWATCH_BACKEND", "REDIS_URL", "WEB_CONCURRENCY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SECRET_KEY", "cli-facts-secret-key-0123456789-abcdef")
    assert cli.main(["serve", "--port", "8123", "--no-metrics"]) == 2
    err = capsys.readouterr().err
    assert "uvicorn 0.34.3 is too old" in err and ">=0.35" in err


def test_help_shows_no_raw_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    flowing = " ".join(out.split())
    assert "sessionwatch serve runs the production service" in flowing
    assert "sessionwatch demo runs the demo app" in flowing
    assert "``" not in out and ":mod:" not in out


def test_the_readme_shows_the_procfile_as_it_is() -> None:
    lines = (ROOT / "Procfile").read_text("utf-8").splitlines()
    processes = [line for line in lines if line and not line.startswith("#")]
    assert processes == [line for line in lines if line.startswith("web: sessionwatch serve ")]
    readme = (ROOT / "README.md").read_text("utf-8")
    assert f"`Procfile`: `{processes[0]}`" in readme


def test_the_package_is_marked_typed() -> None:
    assert resources.files("sessionwatch").joinpath("py.typed").is_file()
