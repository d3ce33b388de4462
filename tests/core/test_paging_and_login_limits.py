"""The pure parts of issue 22, item 6: listing cursors and page sizes, the per-user
ceiling rule, and the sign-in rates per user and per address."""

from __future__ import annotations

import pytest

from sessionwatch.core.exceptions import InvalidPage
from sessionwatch.core.limits import LoginLimits
from sessionwatch.core.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageCursor, page_size
from sessionwatch.core.policy import bounded_limit


@pytest.mark.parametrize("public_id", ["abcdEFGH_-12345678901a", "Ab_-.xyzxyzxyzxyzxyzxyzxy"])
def test_a_cursor_round_trips_and_is_opaque(public_id: str) -> None:
    cursor = PageCursor(1_800_000_000_123, public_id)
    encoded = cursor.encode()
    assert public_id not in encoded and ":" not in encoded
    assert PageCursor.decode(encoded) == cursor


@pytest.mark.parametrize(
    "text",
    ["", "x" * 129, "é", "{}", PageCursor(1, "a").encode() + "%", "MTphIGI", "LTE6YQ", "MDE6YQ"],
)
def test_a_cursor_no_listing_made_is_refused(text: str) -> None:
    with pytest.raises(InvalidPage):
        PageCursor.decode(text)


def test_page_sizes_default_clamp_and_refuse() -> None:
    assert page_size(None) == DEFAULT_PAGE_SIZE
    assert page_size("7") == 7
    assert page_size(10**9) == page_size("999999") == MAX_PAGE_SIZE
    for bad in ("0", "-1", "1.5", "x", "", "1" * 7, "\u0661", 0, True):
        with pytest.raises(InvalidPage):
            page_size(bad)  # type: ignore[arg-type]


def test_the_ceiling_applies_when_the_policy_limit_is_absent_or_above_it() -> None:
    assert bounded_limit(None, False, 100) == (100, False)
    assert bounded_limit(500, True, 100) == (100, False)  # the ceiling never denies
    assert bounded_limit(3, True, 100) == (3, True)
    assert bounded_limit(100, True, 100) == (100, True)
    assert bounded_limit(None, False, None) == (None, False)


def test_sign_ins_are_limited_per_user_and_per_address() -> None:
    limits = LoginLimits(per_user=1.0, per_address=2.0)  # bursts of 5 and 10
    assert all(limits.sign_in("ann", None, 0.0) is None for _ in range(5))
    wait = limits.sign_in("ann", None, 0.0)
    assert wait is not None and 0.9 < wait <= 1.0
    assert limits.sign_in("ann", None, 1.0) is None  # one second later: one more
    # Ten sign-ins from one address (different users), then that address waits...
    assert all(limits.sign_in(f"u{i}", "192.0.2.1", 5.0) is None for i in range(10))
    assert limits.sign_in("bob", "192.0.2.1", 5.0) is not None
    # ...without spending bob's own bucket, and another address is unaffected.
    assert all(limits.sign_in("bob", "192.0.2.2", 5.0) is None for _ in range(5))
    # An IPv6 client counts by its /64.
    six = LoginLimits(per_user=100.0, per_address=0.2)
    assert six.sign_in("a", "2001:db8::1", 0.0) is None
    assert six.sign_in("b", "2001:db8::2", 0.0) is not None
