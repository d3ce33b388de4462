"""The engine's decisions on plain facts, with no app and no backend."""

from __future__ import annotations

import pytest

from sessionwatch.backends.base import SessionRecord
from sessionwatch.core.codes import Code
from sessionwatch.core.exceptions import (
    BackendUnavailable,
    InvalidUserId,
    OriginForbidden,
    PendingLoginRefused,
    RateLimited,
    ReauthRequired,
    SessionChoiceRequired,
    SessionLimitReached,
)
from sessionwatch.core.origins import OriginRule
from sessionwatch.core.refusals import refusal_for
from sessionwatch.core.tabs import make_tab_token
from sessionwatch.engine import Pass, RequestFacts, check_request, client_address, is_unsafe

RECORD = SessionRecord(
    id="s.1",
    user=None,
    created=0,
    seen=0,
    absolute_expiry=10**12,
    gen=2,
    tab_key="k" * 22,
    device={},
    data="",
)
OWN = "https://app.example"


def facts(method: str = "POST", **fields: object) -> RequestFacts:
    return RequestFacts(method=method, path="/x", scheme="https", host="app.example", **fields)  # type: ignore[arg-type]


def decide(
    request: RequestFacts, record: SessionRecord | None = RECORD, **options: object
) -> object:
    outcome = check_request(
        request,
        record,
        None,
        origins=OriginRule(),
        exclusive=True,
        **options,  # type: ignore[arg-type]
    )
    return outcome if isinstance(outcome, Pass) else (outcome.status, outcome.code)


def test_the_active_tab_passes_and_every_other_is_a_409() -> None:
    current = make_tab_token(RECORD.tab_key, RECORD.gen)
    assert decide(facts(origin=OWN, tab=current)) == Pass(RECORD, "active")
    assert decide(facts(origin=OWN, tab=make_tab_token(RECORD.tab_key, 1))) == (
        409,
        "tab_superseded",
    )
    assert decide(facts(origin=OWN, tab="1.forged")) == (409, "tab_invalid")
    assert decide(facts(origin=OWN)) == (409, "tab_missing")


def test_the_origin_is_checked_first_and_only_for_unsafe_methods() -> None:
    assert decide(facts(origin="https://evil.example"), record=None) == (403, "origin_forbidden")
    assert decide(facts(fetch_site="cross-site"), record=None) == (403, "origin_forbidden")
    assert decide(facts(fetch_site="cross-site"), record=None, unavailable=True) == (
        403,
        "origin_forbidden",
    )
    assert decide(facts("GET", origin="https://evil.example"), record=None) == (401, "no_session")
    assert decide(facts(origin=OWN), record=None, unavailable=True) == (503, "backend_unavailable")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "PROPFIND", "MKCOL", "post"])
def test_every_method_not_known_safe_is_unsafe(method: str) -> None:
    assert is_unsafe(method)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_the_safe_methods(method: str) -> None:
    assert not is_unsafe(method)


def test_the_forwarded_for_lines_are_one_list_and_the_last_hop_counts() -> None:
    lines = ["198.51.100.1", "10.0.0.1, 192.0.2.7"]
    assert client_address("10.0.0.9", lines, trust_forwarded_for=True) == "192.0.2.7"
    assert client_address("10.0.0.9", ["198.51.100.1", "192.0.2.7"], trust_forwarded_for=True) == (
        "192.0.2.7"
    )
    assert client_address("10.0.0.9", lines, trust_forwarded_for=False) == "10.0.0.9"
    assert client_address("10.0.0.9", [" ", ""], trust_forwarded_for=True) == "10.0.0.9"


def test_one_table_maps_each_error_to_its_refusal() -> None:
    answers = {
        kind.__name__: (r.status, r.code)
        for kind, r in [
            (BackendUnavailable, refusal_for(BackendUnavailable("x"))),
            (SessionLimitReached, refusal_for(SessionLimitReached("u", 2))),
            (OriginForbidden, refusal_for(OriginForbidden("x"))),
            (RateLimited, refusal_for(RateLimited(1.5))),
            (InvalidUserId, refusal_for(InvalidUserId("x"))),
        ]
        if r is not None
    }
    assert answers == {
        "BackendUnavailable": (503, "backend_unavailable"),
        "SessionLimitReached": (403, "session_limit_reached"),
        "OriginForbidden": (403, "origin_forbidden"),
        "RateLimited": (429, "rate_limited"),
        "InvalidUserId": (400, "bad_user_id"),
    }
    assert refusal_for(ValueError("not ours")) is None


def test_the_ask_and_step_up_errors_have_their_refusals() -> None:
    asked = refusal_for(SessionChoiceRequired("u", 2, "tok", 5, []))
    assert asked is not None and (asked.status, asked.code) == (409, "session_choice_required")
    assert asked.fields == {"limit": 2, "pending": "tok", "expires_at": 5, "sessions": []}
    statuses = {
        code: refusal_for(PendingLoginRefused(code))
        for code in (
            Code.PENDING_LOGIN_UNKNOWN,
            Code.PENDING_LOGIN_EXPIRED,
            Code.PENDING_LOGIN_USED,
            Code.PENDING_LOGIN_FOREIGN,
        )
    }
    assert {str(c): r.status for c, r in statuses.items() if r is not None} == {
        "pending_login_unknown": 400,
        "pending_login_expired": 410,
        "pending_login_used": 409,
        "pending_login_foreign": 403,
    }
    stale = refusal_for(ReauthRequired(120))
    assert stale is not None and stale.to_json() == {
        "error": "reauth_required",
        "message": "Confirm it's you: enter your password again.",
        "max_age": 120,
    }


def test_without_origin_the_tab_token_proves_the_page_and_nothing_else_does() -> None:
    """An unsafe request without Origin (and no Sec-Fetch-Site) passes the origin
    check where the active tab is required (its token proves the page, as on a
    protected route); with ``session`` (a form post through forward-auth) nothing
    proves it, so it is foreign unless missing origins are allowed."""
    current = make_tab_token(RECORD.tab_key, RECORD.gen)
    assert decide(facts(tab=current)) == Pass(RECORD, "active")
    assert decide(facts(tab=current), requirement="auto") == Pass(RECORD, "active")
    assert decide(facts(), requirement="session") == (403, "origin_forbidden")
    lenient = check_request(
        facts(),
        RECORD,
        None,
        origins=OriginRule(allow_missing=True),
        exclusive=True,
        requirement="session",
    )
    assert lenient == Pass(RECORD, "missing")
    assert decide(facts("GET"), requirement="session") == Pass(RECORD, "missing")
