"""The pure pieces of issue 12's hardening: bounded JSON and the trusted-proxy list."""

from __future__ import annotations

import json
import logging

import pytest

from sessionwatch import InvalidUserId
from sessionwatch.core.audit import check_user_id, security_event
from sessionwatch.core.events import CloseCode, parse_client_message
from sessionwatch.core.exceptions import ProtocolError
from sessionwatch.core.jsonlimits import MAX_JSON_DEPTH, JSONTooDeep, check_depth, loads
from sessionwatch.core.limits import AddressLimits, RateBuckets, address_key
from sessionwatch.service.proxies import TrustedProxies, parse_proxies


def test_depth_is_counted_outside_strings_only() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads(deepest) is not None
    with pytest.raises(JSONTooDeep):
        loads("[" + deepest + "]")
    with pytest.raises(JSONTooDeep):
        loads('{"a":' * 40 + "1" + "}" * 40)
    # Brackets inside strings, escaped quotes included, do not nest.
    text = json.dumps({"tab": "[" * 500 + '\\"{' * 100})
    assert loads(text)["tab"].startswith("[[[")
    check_depth(b"[" * 10)  # malformed but shallow: left to the decoder
    with pytest.raises(ValueError):
        loads("[" * 100_000)


def test_a_deep_frame_closes_1007() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message("[" * 2000 + "]" * 2000, max_size=4096)
    assert caught.value.close_code == CloseCode.INVALID_DATA


@pytest.mark.parametrize("bad", ["", " , ", "10.0.0.1,proxy", "10.0.0.300", "10.0.0.0/33"])
def test_proxy_lists_are_checked(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_proxies(bad)


def test_forwarded_for_takes_the_nearest_untrusted_hop() -> None:
    proxies = TrustedProxies(None, "10.0.0.0/8, 192.0.2.1")
    assert proxies._client(["203.0.113.7", "10.1.1.1"]) == "203.0.113.7"
    assert proxies._client(["198.51.100.1", "203.0.113.7", "10.1.1.1"]) == "203.0.113.7"
    assert proxies._client(["10.2.2.2", "10.1.1.1"]) == "10.2.2.2"
    assert proxies._client(["203.0.113.7", "not-an-ip"]) is None
    assert proxies._client([]) is None
    assert parse_proxies("*") is None and TrustedProxies(None, "*").trusted("anything")


def test_rate_buckets_refill_and_stay_bounded() -> None:
    buckets = RateBuckets(2.0, max_keys=3)
    assert [buckets.take("a", 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.retry_after("a") == pytest.approx(0.5)
    assert buckets.take("a", 0.5) and not buckets.take("a", 0.5)
    for key in "bcde":
        buckets.take(key, 1.0)
    assert len(buckets) == 3  # "a" (least recently used) forgotten
    assert buckets.take("a", 1.0)


def test_address_limits_count_sockets_and_rates_per_address() -> None:
    limits = AddressLimits(max_sockets=2, new_sessions_per_second=1, hellos_per_second=3)
    assert limits.open_socket("198.18.0.1") and limits.open_socket("198.18.0.1")
    assert not limits.open_socket("198.18.0.1") and limits.open_socket("198.18.0.2")
    limits.close_socket("198.18.0.1")
    assert limits.sockets("198.18.0.1") == 1 and limits.open_socket("198.18.0.1")
    for _ in range(5):
        limits.close_socket("198.18.0.1")
    assert limits.sockets("198.18.0.1") == 0
    assert limits.new_session("198.18.0.1", 0.0) and not limits.new_session("198.18.0.1", 0.1)
    assert limits.new_session("198.18.0.2", 0.1)  # another address: its own bucket
    assert [limits.hello("198.18.0.1", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limits.open_socket(None) and limits.new_session(None, 0) and limits.hello(None, 0)


def test_session_ids_are_256_bit_csprng_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASVS 7.2.3: ids come from ``secrets`` (the OS CSPRNG) with 256 bits."""
    import secrets

    from sessionwatch.core import tokens

    asked: list[int] = []
    real = secrets.token_urlsafe

    def spy(nbytes: int | None = None) -> str:
        asked.append(nbytes or 0)
        return real(nbytes)

    monkeypatch.setattr(tokens.secrets, "token_urlsafe", spy)
    ids = {tokens.new_session_id() for _ in range(2000)}
    assert asked[0] == 32 and len(ids) == 2000
    assert all(len(value) == 43 for value in ids)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x" * 257,
        "eve\nINFO sessionwatch.security login",
        "eve\r",
        "eve\x00",
        "eve\u2028x",
        "eve\u202ex",
        "eve\u200bx",
        "eve\ud800",
        42,
        None,
    ],
)
def test_user_ids_that_could_forge_log_lines_are_refused(bad: object) -> None:
    with pytest.raises(InvalidUserId) as caught:
        check_user_id(bad)
    assert isinstance(caught.value, ValueError) and caught.value.code == "bad_user_id"


def test_user_ids_of_any_script_are_accepted() -> None:
    for good in ("alice", "Zoë Müller", "李小龙", "user@example.com", "a b", "x" * 256):
        assert check_user_id(good) == good


def test_security_events_are_one_json_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "sessionwatch.security")
    security_event("login", session="abc", user="eve\nINFO forged\u2028")
    (record,) = caplog.records
    line = record.getMessage()
    assert "\n" not in line and "\u2028" not in line
    assert json.loads(line) == {
        "event": "login",
        "session": "abc",
        "user": "eve\nINFO forged\u2028",
    }


def test_limits_count_ip_addresses_and_ipv6_prefixes_only() -> None:
    assert address_key("198.18.0.1") == "198.18.0.1"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:198.18.0.1") == "198.18.0.1"
    assert address_key("<local>") is None and address_key(None) is None
    limits = AddressLimits(max_sockets=1, new_sessions_per_second=1, hellos_per_second=1)
    assert all(limits.new_session("<local>", 0) for _ in range(5))
