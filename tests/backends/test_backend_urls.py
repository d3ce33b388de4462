"""Backend URLs: malformed ones are refused with a clear message that never shows the
URL's password."""

from __future__ import annotations

import subprocess
import sys

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
        # malformed: no "://", so no URL parser finds the password (issue 24, item 6)
        "rediss//:s3cr3t-pw@db.example:6379",
        "redis:/admin:s3cr3t-pw@db.example",
        "admin:s3cr3t-pw@db.example:6379",
        "redis://admin:s3cr3t/pw@db.example:6379/0",
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


@pytest.mark.parametrize("url", ["redis://localhost", "redis+cluster://h:6379/"])
def test_a_missing_redis_client_names_the_extra_to_install(url: str) -> None:
    """Without the ``[redis]`` extra a Redis URL is a ConfigurationError that says what
    to install, not a bare ModuleNotFoundError (issue 24, item 3). A child interpreter,
    so that no module this test session already imported hides the missing one."""
    code = (
        "import sys\n"
        "sys.modules['redis'] = None  # as if redis-py were not installed\n"
        "from sessionwatch.backends import backend_from_url\n"
        "from sessionwatch.core.exceptions import ConfigurationError\n"
        "try:\n"
        f"    backend_from_url({url!r})\n"
        "except ConfigurationError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'sessionwatch[redis]'" in result.stdout


def test_unknown_backend_scheme_is_named() -> None:
    with pytest.raises(ConfigurationError, match="'postgres'"):
        backend_from_url("postgres://db/sessions")
    with pytest.raises(ConfigurationError):
        backend_from_url("not a url")
