"""The core layer: policy, configuration, tokens and tabs, devices, event parsing."""

from __future__ import annotations

import pytest

from sessionwatch import ConfigurationError, Policy
from sessionwatch.core.config import Settings, settings_from_env
from sessionwatch.core.devices import describe_device, ip_prefix, parse_user_agent
from sessionwatch.core.events import CloseCode, Event, parse_client_message, parse_event
from sessionwatch.core.exceptions import ProtocolError
from sessionwatch.core.policy import select_evictions
from sessionwatch.core.tabs import make_tab_token, new_tab_key, tab_status, verify_tab_token
from sessionwatch.core.tokens import VERIFIED_CACHE, CookieSigner, new_session_id, public_id

# -- policy ------------------------------------------------------------------------------


def test_select_evictions_keeps_within_limit_oldest_first() -> None:
    sessions = [("c", 30), ("a", 10), ("b", 20)]
    assert select_evictions(sessions, None) == []
    assert select_evictions(sessions, 4) == []
    assert select_evictions(sessions, 3) == ["a"]
    assert select_evictions(sessions, 1) == ["a", "b", "c"]
    assert select_evictions([("y", 5), ("x", 5)], 1) == ["x", "y"]  # ties by id, like the Lua


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tabs_per_session": 2},
        {"sessions_per_user": 0},
        {"sessions_per_user": -1},
        {"sessions_per_user": True},
        {"sessions_per_user": "3"},
        {"on_limit": "kick"},
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_callable_limit_is_checked_per_call() -> None:
    policy = Policy(sessions_per_user=lambda user: {"admin": None, "free": 1}.get(user, 0))
    assert policy.session_limit("admin") is None
    assert policy.session_limit("free") == 1
    with pytest.raises(ConfigurationError):
        policy.session_limit("broken")  # returned 0: fail closed, never "unlimited"


# -- configuration -------------------------------------------------------------------------


def test_settings_precedence_keyword_over_config() -> None:
    settings = Settings.resolve(
        {"idle_timeout": 100}, {"SESSIONWATCH_IDLE_TIMEOUT": 50, "SESSIONWATCH_REFRESH_EVERY": "10"}
    )
    assert settings.idle_timeout == 100 and settings.refresh_every == 10.0


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"SESSIONWATCH_IDLE_TIMEOUT": "soon"}, "SESSIONWATCH_IDLE_TIMEOUT"),
        ({"SESSIONWATCH_IDLE_TIMEOUT": "-5"}, "SESSIONWATCH_IDLE_TIMEOUT"),
        ({"SESSIONWATCH_IDLE_TIMEOUT": "nan"}, "SESSIONWATCH_IDLE_TIMEOUT"),
        ({"SESSIONWATCH_MAX_FRAME": "4k"}, "SESSIONWATCH_MAX_FRAME"),
        ({"SESSIONWATCH_COOKIE_SECURE": "maybe"}, "SESSIONWATCH_COOKIE_SECURE"),
        ({"SESSIONWATCH_ALLOWED_ORIGINS": "evil.com"}, "SESSIONWATCH_ALLOWED_ORIGINS"),
        ({"SESSIONWATCH_COOKIE_SAMESITE": "lax"}, "SESSIONWATCH_COOKIE_SAMESITE"),
        ({"SESSIONWATCH_NO_SUCH_THING": "1"}, "SESSIONWATCH_NO_SUCH_THING"),
    ],
)
def test_bad_environment_values_name_their_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigurationError, match=key):
        settings_from_env(environ)


def test_environment_reads_redis_url_and_lists() -> None:
    settings = settings_from_env(
        {
            "REDIS_URL": "redis://r:6379/1",
            "SESSIONWATCH_ALLOWED_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.backend == "redis://r:6379/1"
    assert settings.allowed_origins == ("https://a.example", "https://b.example")


def test_public_scheme_is_the_deployments() -> None:
    """The session API's cookie name (issue 22 item 4): https behind a proxy the service
    believes, unless the operator says otherwise; http without one; nothing else."""
    proxied = {"SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS": "10.0.0.5"}
    assert settings_from_env({}).public_scheme == ""
    assert settings_from_env(proxied).public_scheme == "https"
    explicit = {**proxied, "SESSIONWATCH_PUBLIC_SCHEME": "http"}
    assert settings_from_env(explicit).public_scheme == "http"
    with pytest.raises(ConfigurationError, match="SESSIONWATCH_PUBLIC_SCHEME"):
        settings_from_env({"SESSIONWATCH_PUBLIC_SCHEME": "ftp"})


def test_inconsistent_timeouts_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="absolute_timeout"):
        Settings(idle_timeout=100, absolute_timeout=50)
    with pytest.raises(ConfigurationError, match="refresh_every"):
        Settings(idle_timeout=100, refresh_every=100)


# -- tokens and devices ----------------------------------------------------------------------


def test_tab_tokens_verify_only_under_their_key() -> None:
    key = new_tab_key()
    token = make_tab_token(key, 7)
    assert verify_tab_token(token, key) == 7
    assert verify_tab_token(token, new_tab_key()) is None
    assert verify_tab_token(token.replace("7.", "8.", 1), key) is None
    assert verify_tab_token("07." + token.split(".")[1], key) is None


@pytest.mark.parametrize("token", [None, "", "7." + "A" * 63, "7.abc", "x" * 10_000, "0.abc"])
def test_absent_oversized_or_malformed_tab_tokens_do_not_verify(token: str | None) -> None:
    assert verify_tab_token(token, new_tab_key()) is None


@pytest.mark.parametrize(
    ("gen", "current", "exclusive", "status"),
    [
        (5, 5, True, "active"),
        (4, 5, True, "superseded"),
        (1, 5, True, "superseded"),
        (6, 5, True, "invalid"),  # never issued
        (None, 5, True, "invalid"),  # did not verify
        (5, 5, False, "active"),
        (4, 5, False, "active"),  # shared tabs: every claimed tab stays valid
        (6, 5, False, "invalid"),
        (None, 5, False, "invalid"),
    ],
)
def test_the_supersede_rule(gen: int | None, current: int, exclusive: bool, status: str) -> None:
    assert tab_status(gen, current, exclusive=exclusive) == status


def test_verified_cookies_are_remembered_forgeries_never() -> None:
    signer = CookieSigner(["k" * 32])
    other = CookieSigner(["o" * 32])
    session_id = new_session_id()
    cookie = signer.sign(session_id)
    assert signer.unsign(cookie) == session_id
    assert signer.unsign(cookie) == session_id  # from the cache, the same answer
    forged = other.sign(session_id)
    for _ in range(3):
        assert signer.unsign(forged) is None  # checked every time, never remembered
    # a character inside the signature (the last one's low bits are base64 padding: a
    # change there may decode to the same bytes)
    tampered = cookie[:-10] + ("A" if cookie[-10] != "A" else "B") + cookie[-9:]
    assert signer.unsign(tampered) is None
    assert len(signer._verified) == 1
    cookies = [signer.sign(new_session_id()) for _ in range(VERIFIED_CACHE + 5)]
    for value in cookies:
        assert signer.unsign(value) is not None
    assert len(signer._verified) == VERIFIED_CACHE  # bounded, the oldest dropped first
    assert cookie not in signer._verified and cookies[-1] in signer._verified
    assert signer.unsign(cookie) == session_id  # dropped from the cache, still genuine


def test_public_id_is_stable_and_not_the_id() -> None:
    assert public_id("A" * 43) == public_id("A" * 43) != public_id("B" * 43)
    assert "A" * 10 not in public_id("A" * 43) and len(public_id("A" * 43)) == 22


def test_devices_are_described_without_full_addresses() -> None:
    assert parse_user_agent("") == ("Unknown browser", "Unknown OS")
    assert parse_user_agent("x" * 100_000)[0] == "Unknown browser"
    assert ip_prefix("203.0.113.77") == "203.0.113.0/24"
    assert ip_prefix("2001:db8:1:2:3::9") == "2001:db8:1::/48"
    assert ip_prefix("::ffff:198.51.100.9") == "198.51.100.0/24"
    assert ip_prefix("<local>") == ""
    device = describe_device(
        "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0", "198.51.100.4", 5
    )
    assert (device.browser, device.os, device.place, device.at) == (
        "Firefox 121",
        "Linux",
        "198.51.100.0/24",
        5,
    )

    def broken(_: str) -> str:
        raise RuntimeError("geoip down")

    assert describe_device(None, "198.51.100.4", 5, resolver=broken).place == "198.51.100.0/24"
    assert (
        describe_device(None, "198.51.100.4", 5, resolver=lambda ip: "Lyon, FR").place == "Lyon, FR"
    )


# -- events ----------------------------------------------------------------------------------


def test_event_payload_round_trip_drops_routing_for_the_wire() -> None:
    event = Event(
        "superseded", "sess1", {"gen": 3, "by": {"browser": "X", "os": "Y", "place": "", "at": 1}}
    )
    parsed = parse_event(event.payload())
    assert parsed == event and parsed.gen == 3
    assert parsed.wire() == {"type": "superseded", "gen": 3, "by": event.fields["by"]}
    assert Event("revoked", "s").terminal and not Event("extended", "s").terminal


@pytest.mark.parametrize("raw", ["nope", "[]", '{"type": 5}', '"x"', b"\xff"])
def test_malformed_event_payloads_raise(raw: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_event(raw)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("x" * 5000, CloseCode.MESSAGE_TOO_BIG),
        (b"\x00\x01", CloseCode.INVALID_DATA),
        ("{not json", CloseCode.INVALID_DATA),
        ("[1]", CloseCode.INVALID_DATA),
        ('{"v":1}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":"1"}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":true}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":2,"tab":null}', CloseCode.UNSUPPORTED_VERSION),
        ('{"type":"hello","v":1,"tab":5}', CloseCode.POLICY_VIOLATION),
    ],
)
def test_client_frames_map_to_documented_close_codes(raw: str | bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw, max_size=4096)
    assert caught.value.close_code == code


def test_client_frames_parse_and_unknown_types_are_ignored() -> None:
    hello = parse_client_message('{"type":"hello","v":1,"tab":"1.abc","extra":[1]}', max_size=4096)
    assert hello is not None and hello.type == "hello" and hello.tab == "1.abc"
    assert parse_client_message('{"type":"ping"}', max_size=4096) is not None
    assert parse_client_message('{"type":"future-thing","x":1}', max_size=4096) is None


def test_the_policy_from_the_environment_names_a_bad_key() -> None:
    from sessionwatch import ConfigurationError, Policy
    from sessionwatch.core.policy import policy_from_env

    assert policy_from_env({}) == Policy()
    assert policy_from_env(
        {
            "SESSIONWATCH_TABS_PER_SESSION": "unlimited",
            "SESSIONWATCH_SESSIONS_PER_USER": "3",
            "SESSIONWATCH_ON_LIMIT": "deny",
        }
    ) == Policy(tabs_per_session=None, sessions_per_user=3, on_limit="deny")
    for key, value in (
        ("SESSIONWATCH_TABS_PER_SESSION", "2"),
        ("SESSIONWATCH_SESSIONS_PER_USER", "0"),
        ("SESSIONWATCH_SESSIONS_PER_USER", "²"),
        ("SESSIONWATCH_ON_LIMIT", "kick"),
    ):
        with pytest.raises(ConfigurationError, match=key):
            policy_from_env({key: value})
    # settings_from_env leaves the policy's keys to policy_from_env
    assert settings_from_env({"SESSIONWATCH_ON_LIMIT": "deny"}).backend == "memory://"
