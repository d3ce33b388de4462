"""The PyPI readme: README.md as PyPI can show it (hatchling's custom metadata hook,
named in pyproject.toml).

PyPI shows the readme without the repository, and the project has no public repository
URL yet, so a relative link there points nowhere. Each one becomes plain text naming
the file (the sdist holds docs/ and client_js/), an in-page link its text, and the
banner image is dropped: an image needs a URL to be shown, and shipping the PNG in the
sdist would not make PyPI display it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

__all__ = ["PyPIReadmeHook", "pypi_readme"]

_IMAGE_LINE = re.compile(r"^!\[[^\]]*\]\((?!https?://)[^)]*\)\n\n?", re.MULTILINE)
_LINK = re.compile(r"\[([^\]]+)\]\((?!https?://|mailto:)([^)]+)\)")
_SOURCE_NOTE = (
    "The files this page names (`docs/…`, `client_js/…`) are in the source distribution: "
    "`pip download --no-binary :all: --no-deps sessionwatch`.\n\n"
)


def _plain(link: re.Match[str]) -> str:
    text, target = link.group(1), link.group(2)
    if target.startswith("#") or text.strip("`") == target:
        return text if target.startswith("#") else f"`{target}`"
    return f"{text} (`{target}`)"


def pypi_readme(markdown: str) -> str:
    """README.md with relative links and images replaced by plain text."""
    text = _LINK.sub(_plain, _IMAGE_LINE.sub("", markdown))
    title, intro, rest = text.split("\n\n", 2)
    return f"{title}\n\n{intro}\n\n{_SOURCE_NOTE}{rest}"


class PyPIReadmeHook(MetadataHookInterface):
    """Sets the project's readme (declared dynamic) from README.md."""

    def update(self, metadata: dict[str, Any]) -> None:
        readme = Path(self.root, "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {"content-type": "text/markdown", "text": pypi_readme(readme)}
