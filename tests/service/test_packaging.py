"""The distribution: ``python -m build`` makes a wheel and an sdist that ``twine check``
accepts; the wheel, installed into a fresh venv, has everything the package reads at
run time and imports. Publication (issue 24): the MIT LICENSE in the wheel, the sdist and
both npm tarballs; no test/bench/dev extras in the metadata (they are dependency groups);
readmes that need no relative link (PyPI and npm show them without the repository);
``npm pack`` makes exactly the packages the docs name.

Offline and quick: built without isolation (hatchling comes with the test dependency group), and
the fresh venv borrows this environment's dependencies (``--no-deps`` plus a path entry)
instead of downloading them.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
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


# A Markdown link or image whose target is not absolute (http(s)://, mailto:) or an anchor:
# on PyPI and npm it points nowhere.
RELATIVE_LINK = re.compile(r"!?\[[^\]]*\]\((?!https?://|mailto:|#)([^)]*)\)")
LICENSE_HOLDER = "Copyright (c) 2026 sessionwatch contributors"
# The npm packages: folder -> the name its package.json gives and the docs use.
NPM_PACKAGES = {"client_js": "@sessionwatch/client", "client_js/node": "sessionwatch-node"}


def _wheel_metadata(dist: Path) -> email.message.Message:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name), policy=email.policy.compat32)


@pytest.fixture(scope="module", name="npm_tarballs")
def _npm_tarballs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("npm")
    packed = {}
    for folder in NPM_PACKAGES:
        (info,) = json.loads(
            _run("npm", "pack", "--json", "--pack-destination", str(out), cwd=ROOT / folder)
        )
        packed[folder] = out / info["filename"]
    return packed


def test_the_license_is_mit_in_the_repository(dist: Path) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and LICENSE_HOLDER in text
    assert _wheel_metadata(dist)["License-Expression"] == "MIT"


def test_the_license_ships_in_the_wheel_and_the_sdist(dist: Path) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(in_wheel) == 1, archive.namelist()
        assert archive.read(in_wheel[0]) == license_text
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/LICENSE")
        assert member is not None and member.read() == license_text


def test_npm_pack_makes_the_named_packages_with_the_license(
    npm_tarballs: dict[str, Path],
) -> None:
    license_text = (ROOT / "LICENSE").read_bytes()
    for folder, name in NPM_PACKAGES.items():
        tarball = npm_tarballs[folder]
        # npm's file name for a scoped package: @scope/name -> scope-name-<version>.tgz
        assert tarball.name == f"{name.lstrip('@').replace('/', '-')}-0.1.0.tgz"
        with tarfile.open(tarball) as archive:
            manifest = archive.extractfile("package/package.json")
            assert manifest is not None and json.load(manifest)["name"] == name
            member = archive.extractfile("package/LICENSE")
            assert member is not None and member.read() == license_text, folder


def test_no_test_bench_or_dev_extra_is_published(dist: Path) -> None:
    metadata = _wheel_metadata(dist)
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert extras == {"redis", "service", "granian", "proxy-demo", "oidc"}, extras
    # the tools the suites need are PEP 735 dependency groups, outside the metadata
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    assert "pytest" not in requires and "mypy" not in requires


def test_the_metadata_names_author_classifiers_and_keywords(dist: Path) -> None:
    metadata = _wheel_metadata(dist)
    assert "sessionwatch contributors" in (metadata["Author"] or "")
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and "Framework :: AsyncIO" in classifiers
    assert "quart" in (metadata["Keywords"] or "")
    # no invented home: a Project-URL only once a public repository exists
    assert not metadata.get_all("Project-URL")


def test_the_pypi_readme_has_no_relative_link(dist: Path) -> None:
    readme = _wheel_metadata(dist).get_payload()
    assert isinstance(readme, str) and readme.startswith("# sessionwatch")
    assert RELATIVE_LINK.findall(readme) == []
    # the links became the files' names, which the sdist holds
    assert "docs/any-stack.md" in readme and "docs/security.md" in readme
    assert "Use it in your app" in readme


def test_the_npm_readmes_have_no_relative_link(npm_tarballs: dict[str, Path]) -> None:
    for folder, tarball in npm_tarballs.items():
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/README.md")
            assert member is not None, folder
            readme = member.read().decode()
        assert RELATIVE_LINK.findall(readme) == [], folder
        assert NPM_PACKAGES[folder] in readme, folder


def test_the_docs_name_only_the_real_npm_packages() -> None:
    """The JS side has two npm packages; no document names a third."""
    documents = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    documents += [p for p in (ROOT / "client_js").rglob("*.md") if "node_modules" not in p.parts]
    named = set()
    for path in documents:
        named |= set(
            re.findall(
                r"@sessionwatch/[\w-]+|\bsessionwatch-(?:node|client|js)\b", path.read_text()
            )
        )
    assert named <= set(NPM_PACKAGES.values()), named
    readme = (ROOT / "README.md").read_text()
    for folder, name in NPM_PACKAGES.items():
        assert f"`{name}` (`{folder}/`)" in readme, name
