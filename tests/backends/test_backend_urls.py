"""Backend URLs: malformed ones are refused with a clear message that never shows the
URL's password."""

from __future__ import annotations

import pytest

from sessionwatch import ConfigurationError, backend_from_url


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/abc",
        "redis://:pw@localhost/abc",
        "rediss://localhost/1x",
        "redis://localhost/0?db=x",
        "redis+sentinel://h1:26379/mymaster?db=zero",
        "unix:///run/redis.sock?db=one",
        "redis://localhost/٣",  # a digit, but not an ASCII one
    ],
)
def test_a_database_that_is_not_a_number_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="the database must be a number"):
        backend_from_url(url)


@pytest.mark.parametrize(
    "url",
    ["redis://localhost", "redis://localhost/", "redis://localhost:6380/15", "unix:///s?db=2"],
)
def test_well_formed_redis_urls_are_accepted(url: str) -> None:
    assert backend_from_url(url).key_prefix == "sw:"


def test_a_bad_port_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        backend_from_url("redis://localhost:port/0")


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://admin:s3cr3t-pw@db.example:27017/x",
        "redis://admin:s3cr3t-pw@db.example:6379/abc",
        "redis://:s3cr3t-pw@db.example:port/0",
        "redis+sentinel://:s3cr3t-pw@h1:26379/mymaster?db=x",
    ],
)
def test_errors_never_echo_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        backend_from_url(url)
    assert "s3cr3t" not in str(caught.value)
    assert "***" in str(caught.value)


def test_redact_url_keeps_the_rest() -> None:
    from sessionwatch.backends import redact_url  # (new: the "before" run skips only this)

    assert redact_url("redis://u:p@h:1/2?x=y") == "redis://u:***@h:1/2?x=y"
    assert redact_url("redis://:p@h") == "redis://:***@h"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_unknown_backend_scheme_is_named() -> None:
    with pytest.raises(ConfigurationError, match="'postgres'"):
        backend_from_url("postgres://db/sessions")
    with pytest.raises(ConfigurationError):
        backend_from_url("not a url")
