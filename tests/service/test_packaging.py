"""The distribution: ``python -m build`` makes a wheel and an sdist that ``twine check``
accepts; the wheel, installed into a fresh venv, has everything the package reads at
run time and imports.

Offline and quick: built without isolation (hatchling comes with the test extra), and
the fresh venv borrows this environment's dependencies (``--no-deps`` plus a path entry)
instead of downloading them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the package reads from its own files at run time.
PACKAGE_DATA = (
    "sessionwatch/py.typed",
    "sessionwatch/static/sessionwatch.js",
    "sessionwatch/static/sessionwatch.css",
    "sessionwatch/static/i18n/de.json",
    "sessionwatch/static/i18n/ja.json",
    "sessionwatch/backends/lua/_prelude.lua",
    "sessionwatch/backends/lua/claim.lua",
    "sessionwatch/demo/templates/base.html",
    "sessionwatch/demo/templates/home.html",
    "sessionwatch/demo/static/demo.css",
    "sessionwatch/demo/static/demo.js",
)


def _run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{argv}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module", name="dist")
def _dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT))
    return out


def test_build_makes_a_wheel_and_an_sdist_that_twine_accepts(dist: Path) -> None:
    wheels, sdists = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    output = _run(sys.executable, "-m", "twine", "check", "--strict", *map(str, wheels + sdists))
    assert output.count("PASSED") == 2, output


def test_the_wheel_holds_the_package_data(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing, missing
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_no_node_modules_in_the_wheel_or_the_sdist(dist: Path) -> None:
    """The proxy demo's Express app (client_js/examples/express) has node_modules in a
    checkout after tests/run.sh; none of it may ship."""
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(zipfile.ZipFile(wheel).namelist()) | set(archive.getnames())
    assert not [n for n in names if "node_modules" in n]
    assert any(n.endswith("client_js/examples/express/package-lock.json") for n in names)


def test_the_wheel_installs_into_a_fresh_venv_and_imports(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "-q",
        "--no-deps",
        "--disable-pip-version-check",
        str(wheel),
    )
    # The dependencies come from this environment, appended after the venv's own
    # site-packages (so the installed wheel, not this checkout, is what imports).
    site = Path(
        _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (site / "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import importlib.resources as r, sessionwatch, sessionwatch.service.app; "
        "root = r.files('sessionwatch'); "
        f"missing = [p for p in {[p.split('/', 1)[1] for p in PACKAGE_DATA]!r} "
        "if not root.joinpath(p).is_file()]; "
        "print(sessionwatch.__file__); print(missing)"
    )
    where, missing = _run(str(python), "-c", probe, cwd=tmp_path, env=env).splitlines()
    assert where.startswith(str(venv)), where
    assert missing == "[]"
    assert "usage: sessionwatch" in _run(str(venv / "bin" / "sessionwatch"), "--help", env=env)
