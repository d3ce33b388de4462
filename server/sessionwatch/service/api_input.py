"""Reading the JSON bodies and fields of the server-to-server APIs (the session API
and its admin scope): every field checked, unknown fields refused, a refused call an
:class:`ApiError` with a stable code."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, Final

from quart import request

from ..core import jsonlimits
from ..core.audit import MAX_USER_ID, check_user_id
from ..core.codes import Code
from ..core.tokens import PUBLIC_ID_RE
from ..engine import REASON_RE

__all__ = [
    "MAX_COOKIE_HEADER",
    "ApiError",
    "address_field",
    "bad_request",
    "flag_field",
    "optional",
    "public_id_field",
    "read_body",
    "reason_field",
    "text_field",
    "user_field",
]

MAX_BODY: Final = 16 * 1024
MAX_COOKIE_HEADER: Final = 8192


class ApiError(Exception):
    """A refused API call: its status, stable code and message."""

    def __init__(self, status: int, code: Code, message: str | None = None) -> None:
        super().__init__(message or code)
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, Code.BAD_REQUEST, message)


def text_field(name: str, limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > limit:
            raise bad_request(f"{name} must be a non-empty string of at most {limit} characters")
        return value

    return check


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def flag_field(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be true or false")
        return value

    return check


def address_field(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise bad_request("client_ip must be an IPv4 or IPv6 address") from None


def user_field(value: Any) -> str:
    """A user id, refused as the extension's login refuses it (control characters too)."""
    value = text_field("user", MAX_USER_ID)(value)
    try:
        return check_user_id(value)
    except ValueError:
        raise bad_request("user must not contain control or separator characters") from None


def reason_field(value: Any, code: Code = Code.BAD_REQUEST) -> str:
    if not isinstance(value, str) or not REASON_RE.fullmatch(value):
        raise ApiError(400, code, f"reason must match {REASON_RE.pattern}")
    return value


def public_id_field(name: str) -> Callable[[Any], str]:
    """A session's public id, its shape checked (400 ``bad_session_id``)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not PUBLIC_ID_RE.fullmatch(value):
            raise ApiError(400, Code.BAD_SESSION_ID, f"{name} is not a session's public id")
        return value

    return check


async def read_body(fields: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The JSON object body, each field checked; unknown fields are refused."""
    if request.mimetype != "application/json":
        raise ApiError(
            415, Code.BAD_REQUEST, "the body must be JSON (Content-Type: application/json)"
        )
    raw = await request.get_data(as_text=False)
    if len(raw) > MAX_BODY:
        raise ApiError(413, Code.BAD_REQUEST, f"the body is larger than {MAX_BODY} bytes")
    try:
        value = jsonlimits.loads(raw)
    except jsonlimits.JSONTooDeep as exc:
        raise bad_request(f"the body is not valid JSON: {exc}") from None
    except ValueError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}")
    return {name: check(value.get(name)) for name, check in fields.items()}
