"""The pure pieces of issue 12's hardening: bounded JSON and the trusted-proxy list."""

from __future__ import annotations

import json

import pytest

from sessionwatch.events import CloseCode, parse_client_message
from sessionwatch.exceptions import ProtocolError
from sessionwatch.jsonlimits import MAX_JSON_DEPTH, JSONTooDeep, check_depth, loads
from sessionwatch.proxies import TrustedProxies, parse_proxies


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
