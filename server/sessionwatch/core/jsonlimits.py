"""JSON from the network, with its nesting bounded.

``json.loads`` recurses once per level: a 4 KiB WebSocket frame of 2,000 ``[`` raised
``RecursionError`` (the socket closed 1011 with a traceback) and 100,000 ``[`` in a
request body answered 500. :func:`loads` refuses anything nested deeper than
``max_depth`` with :class:`JSONTooDeep` (a ``ValueError``, like every other malformed
JSON) before decoding it. Pure (no framework); ``jsonprovider`` gives a Quart app's
``request.get_json()`` the same bound.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["MAX_JSON_DEPTH", "JSONTooDeep", "check_depth", "loads"]

MAX_JSON_DEPTH: Final = 32

# Strings (whose brackets do not nest) and the brackets outside them.
_TOKENS: Final = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]')


class JSONTooDeep(ValueError):
    """The document nests arrays and objects deeper than allowed."""


def check_depth(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` when ``text`` opens more than ``max_depth`` nested
    arrays or objects (counted outside strings; malformed text is left to the
    decoder)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= max_depth:
        return  # the common case: cannot be too deep
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
        elif token in ("]", "}"):
            depth -= 1


def loads(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input: :class:`ValueError` (never
    ``RecursionError``) for anything malformed or nested deeper than ``max_depth``."""
    check_depth(text, max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen after check_depth; kept as a last line
        raise JSONTooDeep("JSON nested too deeply") from None
