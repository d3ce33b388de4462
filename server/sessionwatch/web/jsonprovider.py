"""A Quart JSON provider whose ``loads`` bounds the nesting depth.

``app.json = BoundedJSONProvider(app)``: ``request.get_json()`` then refuses a body nested
deeper than :data:`~sessionwatch.core.jsonlimits.MAX_JSON_DEPTH` as malformed (a
``ValueError``: 400, or ``None`` with ``silent=True``) instead of recursing until
``RecursionError`` (a 500). The demo installs it; an app's own JSON routes should too.
"""

from __future__ import annotations

from typing import Any

from quart.json.provider import DefaultJSONProvider

from ..core.jsonlimits import check_depth

__all__ = ["BoundedJSONProvider"]


class BoundedJSONProvider(DefaultJSONProvider):
    """Quart's JSON provider, refusing documents nested too deeply."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_depth(s)
        return super().loads(s, **kwargs)
