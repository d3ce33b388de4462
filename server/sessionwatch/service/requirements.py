"""The installed version of a server the service runs (uvicorn, granian), for the CLI's
refusal of one that is missing or older than the floor it needs."""

from __future__ import annotations

import re
from importlib import metadata

from ..core.exceptions import ConfigurationError

__all__ = ["installed_version"]


def installed_version(
    distribution: str, *, parts: int, install: str
) -> tuple[str, tuple[int, ...]]:
    """The version of ``distribution`` as installed, and its first ``parts`` numbers.

    Raises:
        ConfigurationError: not installed; ``install`` is the command that installs it.
    """
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        raise ConfigurationError(f"{distribution} is not installed: {install}") from None
    return version, tuple(int(n) for n in re.findall(r"\d+", version)[:parts])
