"""The service's very first start checks its backend once, before any worker exists.

Only here may the service refuse to run without Redis: a fresh deploy pointed at the
wrong host should say so in one line instead of serving 503 forever. Workers never
refuse (a worker restarted during an outage serves 503 until Redis is back, see
:mod:`sessionwatch.backends.connector`).
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..backends import backend_from_url
from ..core.exceptions import BackendUnavailable

__all__ = ["require_backend"]

CHECK_TIMEOUT: Final = 15.0  # seconds; a blackholed host costs a few connect timeouts


def require_backend(url: str) -> None:
    """Connect to the backend at ``url`` once (as a worker would) and disconnect.

    Raises:
        BackendUnavailable: it cannot be reached (or refused the credentials) within
            :data:`CHECK_TIMEOUT`.
    """
    if url.startswith("memory:"):
        return  # lives in the worker: nothing to reach
    asyncio.run(_connect_once(url))


async def _connect_once(url: str) -> None:
    backend = backend_from_url(url)
    try:
        await asyncio.wait_for(backend.connect(), CHECK_TIMEOUT)
    except TimeoutError:
        raise BackendUnavailable(f"no answer within {CHECK_TIMEOUT:g}s") from None
    finally:
        await backend.disconnect()
