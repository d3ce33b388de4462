"""Security events as JSON lines, and the user ids that may appear in them.

Every line on the ``sessionwatch.security`` logger is one JSON object,
``{"event": "login", "session": "…", "user": "…", …}``, ASCII only: a value cannot end
the line or fake another one (the first review wrote a forged line through a username
with ``\\n``; the second through ``/verify``'s ``X-Original-URI`` with a NEL, U+0085,
which some log readers split on). :func:`security_event` is the one way to write it; a
record logged on the logger any other way is re-encoded as
``{"event": "message", "message": "…"}`` by a filter, so even such a line stays one
line. User ids are also checked where they enter
(:func:`check_user_id`): no control, format, separator or surrogate characters.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from typing import Any, Final

from .exceptions import InvalidUserId

__all__ = ["MAX_USER_ID", "InvalidUserId", "check_user_id", "security_event", "security_log"]

security_log = logging.getLogger("sessionwatch.security")
_JSON_LINE: Final = "sessionwatch_json_line"  # set on the records security_event writes

MAX_USER_ID: Final = 256
# Cc control, Cf format (bidi overrides, zero-width), Cs surrogates, Co private use,
# Cn unassigned, Zl/Zp line and paragraph separators.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_user_id(user_id: object) -> str:
    """Return ``user_id`` when it is acceptable, else raise :class:`InvalidUserId`."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > MAX_USER_ID:
        raise InvalidUserId(
            f"user_id must be a non-empty string of at most {MAX_USER_ID} characters"
        )
    for character in user_id:
        if unicodedata.category(character) in _REFUSED_CATEGORIES:
            raise InvalidUserId(
                f"user_id must not contain control or separator characters "
                f"(found U+{ord(character):04X})"
            )
    return user_id


def security_event(event: str, level: int = logging.INFO, /, **fields: Any) -> None:
    """Log one security event as a JSON line (ASCII only: nothing in a field can break
    the line or pass for another)."""
    if security_log.isEnabledFor(level):
        security_log.log(level, _json_line({"event": event, **fields}), extra={_JSON_LINE: True})


def _json_line(value: dict[str, Any]) -> str:
    # ensure_ascii: every control, separator and non-ASCII character as a \u escape.
    return json.dumps(value, ensure_ascii=True, default=str)


class _OnlyJSONLines(logging.Filter):
    """Re-encode a record that did not come from :func:`security_event` (a plain
    format string) as a JSON line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, _JSON_LINE, False):
            record.msg = _json_line({"event": "message", "message": record.getMessage()})
            record.args = None
        return True


security_log.addFilter(_OnlyJSONLines())
