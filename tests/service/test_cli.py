"""The CLI: configuration errors name their key and nothing starts."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from typing import Any

import pytest

from sessionwatch.service import app as service
from sessionwatch.service import cli, first_start

GOOD_KEY = "cli-test-secret-key-0123456789-abcdefgh"
_REAL_SERVE = cli.serve  # the autouse fixture below stops it before a server starts


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    saved = dict(os.environ)  # serve() exports variables for its workers: undo them all
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch, _clean_environment: None) -> None:
    for key in (
        "REDIS_URL",
        "PORT",
        "WEB_CONCURRENCY",
        "SECRET_KEY",
        "SESSIONWATCH_BACKEND",
        "PROMETHEUS_MULTIPROC_DIR",
        "SESSIONWATCH_SERVICE_METRICS",
        "SESSIONWATCH_SERVICE_METRICS_TOKEN",
        "SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS",
        "SESSIONWATCH_SERVICE_HEADER_TIMEOUT",
        "SESSIONWATCH_SERVICE_BODY_TIMEOUT",
        "FORWARDED_ALLOW_IPS",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)  # the service refuses to start without one
    monkeypatch.setattr(cli, "serve", _refuse_to_run(cli.serve), raising=True)
    # No Redis here: the first start's check is tested against a real one elsewhere.
    monkeypatch.setattr(first_start, "require_backend", lambda url: None)


class _Started(Exception):
    pass


def _refuse_to_run(real_serve):  # type: ignore[no-untyped-def]
    """Run the real validation, but stop before an ASGI server would start."""

    def serve(**kwargs):  # type: ignore[no-untyped-def]
        import uvicorn

        from sessionwatch.service import hypercorn_server

        def started(*args, **kw):  # type: ignore[no-untyped-def]
            raise _Started(kwargs)

        # No server starts, so the port need not be free (this machine may run a demo
        # on 8000); tests/integration/test_service_start_failures.py tests the check.
        original = uvicorn.run, hypercorn_server.run_hypercorn, cli.check_address_free
        uvicorn.run, hypercorn_server.run_hypercorn = started, started
        cli.check_address_free = lambda *args, **kw: None
        try:
            return real_serve(**kwargs)
        finally:
            uvicorn.run, hypercorn_server.run_hypercorn, cli.check_address_free = original

    return serve


def test_memory_backend_with_several_workers_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert "memory:// backend" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PORT", "eighty", "PORT"),
        ("PORT", "70000", "PORT"),
        ("WEB_CONCURRENCY", "lots", "WEB_CONCURRENCY"),
        ("SESSIONWATCH_IDLE_TIMEOUT", "-1", "SESSIONWATCH_IDLE_TIMEOUT"),
        ("SESSIONWATCH_MAX_FRAME", "big", "SESSIONWATCH_MAX_FRAME"),
        ("SESSIONWATCH_TYPO", "1", "SESSIONWATCH_TYPO"),
        ("SECRET_KEY", "short", "SECRET_KEY"),
        ("SECRET_KEY", "", "SECRET_KEY is not set"),
        ("SESSIONWATCH_SECRET_KEYS", f"{GOOD_KEY},short", "SESSIONWATCH_SECRET_KEYS"),
        ("SESSIONWATCH_TABS_PER_SESSION", "2", "SESSIONWATCH_TABS_PER_SESSION"),
        ("SESSIONWATCH_SESSIONS_PER_USER", "0", "SESSIONWATCH_SESSIONS_PER_USER"),
        ("SESSIONWATCH_ON_LIMIT", "kick", "SESSIONWATCH_ON_LIMIT"),
        ("REDIS_URL", "postgres://x", "REDIS_URL: unknown backend scheme 'postgres'"),
        ("SESSIONWATCH_API_KEYS", "too-short", "SESSIONWATCH_API_KEYS"),
        ("SESSIONWATCH_API_ADDRESS", "nowhere", "SESSIONWATCH_API_ADDRESS"),
        ("SESSIONWATCH_API_ADDRESS", "127.0.0.1:8000", "must not be the service's own port"),
    ],
)
def test_bad_environment_values_name_the_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    named: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert cli.main(["serve"]) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,proxy.internal"),
        ("SESSIONWATCH_SERVICE_HEADER_TIMEOUT", "0"),
        ("SESSIONWATCH_SERVICE_BODY_TIMEOUT", "soon"),
    ],
)
def test_bad_security_settings_name_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert cli.main(["serve"]) == 2
    assert variable in capsys.readouterr().err


def test_bad_security_flags_exit_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    for flags in (
        ["--forwarded-allow-ips", "10.0.0.1,not-an-ip"],
        ["--forwarded-allow-ips", ""],
        ["--header-timeout", "-1"],
        ["--body-timeout", "0"],
    ):
        with pytest.raises(SystemExit) as caught:
            cli.main(["serve", *flags])
        assert caught.value.code == 2, flags
    assert cli.main(["serve", "--metrics-token", "short"]) == 2
    assert "--metrics-token" in capsys.readouterr().err


def test_bad_flags_exit_with_usage() -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["serve", "--port", "0"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["serve", "--workers", "0"])
    with pytest.raises(SystemExit):
        cli.main(["serve", "--api-bind", "127.0.0.1"])


def test_the_service_never_makes_up_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SECRET_KEY")
    assert cli.main(["serve", "--backend", "redis://127.0.0.1:6399/0", "--workers", "3"]) == 2
    assert "SECRET_KEY is not set" in capsys.readouterr().err
    assert "SECRET_KEY" not in os.environ  # no ephemeral key (issue 21)
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)
    with pytest.raises(_Started) as caught:
        cli.main(
            ["serve", "--port", "8123", "--backend", "redis://127.0.0.1:6399/0", "--workers", "3"]
        )
    assert caught.value.args[0]["workers"] == 3 and caught.value.args[0]["port"] == 8123
    assert caught.value.args[0].get("factory", cli.APP_FACTORY) == cli.APP_FACTORY
    assert os.environ["SECRET_KEY"] == GOOD_KEY
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]  # metrics add up across workers
    assert os.environ["SESSIONWATCH_BACKEND"] == "redis://127.0.0.1:6399/0"


def test_the_demo_signs_with_its_own_key_on_its_own_backend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``sessionwatch demo``: a fresh key shared by its workers (never SECRET_KEY, so a
    production key never signs a demo session), memory:// unless told (never
    REDIS_URL), loopback only unless told."""
    monkeypatch.setenv("REDIS_URL", "redis://production:6379/0")
    monkeypatch.delenv("DEMO_SECRET_KEY", raising=False)
    with pytest.raises(_Started) as caught:
        cli.main(["demo", "--port", "8124"])
    options = caught.value.args[0]
    assert options["factory"] == cli.DEMO_FACTORY and options["host"] == "127.0.0.1"
    assert os.environ["SESSIONWATCH_BACKEND"] == "memory://"
    assert "REDIS_URL" not in os.environ
    assert len(os.environ["DEMO_SECRET_KEY"]) >= 32
    assert os.environ["DEMO_SECRET_KEY"] != os.environ["SECRET_KEY"]
    assert cli.main(["demo", "--host", "0.0.0.0"]) == 2
    assert "--i-know-this-is-a-demo" in capsys.readouterr().err
    with pytest.raises(_Started):
        cli.main(["demo", "--host", "0.0.0.0", "--i-know-this-is-a-demo"])
    assert "WARNING: the demo listens on 0.0.0.0" in capsys.readouterr().err


def test_python_dash_m_shows_help() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--workers" in result.stdout


async def test_the_service_freezes_its_start_up_heap_and_collects_young_objects_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESSIONWATCH_BACKEND", "memory://")
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)
    thresholds = gc.get_threshold()
    app = service.create_service_app()
    try:
        assert gc.get_freeze_count() == 0
        async with app.test_app():
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold() == service.GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_the_api_address_gets_the_same_server_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``--api-bind`` both listeners share one server configuration: the frame bound,
    no permessage-deflate, the header-timeout and lean WebSocket protocols, no Server
    header (uvicorn), and
    both binds under the hardened hypercorn config."""
    import uvicorn

    from sessionwatch.service import hypercorn_server

    seen: list[Any] = []

    def two_addresses(config: Any, api_address: tuple[str, int]) -> None:
        seen.append((config, api_address))

    def hypercorn(config: Any) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(cli, "_run_uvicorn_on_two_addresses", two_addresses)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("one address only"))
    monkeypatch.setattr(hypercorn_server, "run_hypercorn", hypercorn)
    monkeypatch.setattr(cli, "serve", _REAL_SERVE)
    flags = ["serve", "--api-bind", "127.0.0.1:8001", "--header-timeout", "5"]
    monkeypatch.setenv("SESSIONWATCH_MAX_FRAME", "8192")
    assert cli.main(flags) == 0
    config, api_address = seen.pop()
    assert api_address == ("127.0.0.1", 8001)
    assert config.ws_max_size == 8192 and config.ws_per_message_deflate is False
    assert config.http == "sessionwatch.service.servers:BoundedHttpProtocol"
    assert config.ws == "sessionwatch.service.servers:LeanWebSocketProtocol"
    assert config.server_header is False and config.proxy_headers is False
    assert cli.main([*flags, "--server", "hypercorn"]) == 0
    hyper = seen.pop()
    assert len(hyper.bind) == 2 and hyper.bind[1] == "127.0.0.1:8001"
    assert hyper.application_path == cli.HYPERCORN_APP_FACTORY + "()"
    assert hyper.include_server_header is False
    assert hyper.websocket_max_message_size == 8192 and hyper.keep_alive_timeout <= 5


class _GranianRecorder:
    """Stands in for ``granian.Granian``: records how the CLI configures it."""

    made: list[_GranianRecorder] = []

    def __init__(self, target: str, **options: Any) -> None:
        self.target, self.options, self.served = target, options, False
        self.made.append(self)

    def serve(self) -> None:
        self.served = True


def test_granian_is_configured_like_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's app factory over HTTP/1.1, the header timeout in milliseconds, no
    access log, and a backpressure that does not cap a worker's idle sockets."""
    import granian
    from granian.constants import HTTPModes, Interfaces

    from sessionwatch.service import granian_server

    _GranianRecorder.made.clear()
    monkeypatch.setattr(granian, "Granian", _GranianRecorder)
    monkeypatch.setattr(cli, "serve", _REAL_SERVE)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    flags = ["serve", "--server", "granian", "--frames-bounded-by-proxy"]
    flags += ["--host", "0.0.0.0", "--port", "8124"]
    assert cli.main([*flags, "--header-timeout", "2.5", "--backend", "redis://h:6379/0"]) == 0
    (server,) = _GranianRecorder.made
    options = server.options
    assert server.served and server.target == cli.APP_FACTORY
    assert (options["address"], options["port"], options["workers"]) == ("0.0.0.0", 8124, 1)
    assert options["interface"] == Interfaces.ASGI and options["factory"] is True
    assert options["http"] == HTTPModes.http1 and options["websockets"] is True
    assert options["http1_settings"].header_read_timeout == 2500
    assert options["log_access"] is False and options["log_level"] == "warning"
    assert options["backpressure"] == granian_server.BACKPRESSURE >= 10_000
    # A dead worker is started again (granian's default stops the whole server).
    assert options["respawn_failed_workers"] is True


@pytest.mark.parametrize(
    ("installed", "message"),
    [
        (None, "granian is not installed: pip install 'sessionwatch[granian]'"),
        ("2.7.9", "granian 2.7.9 is too old: the service needs granian 2.8.1 or newer"),
    ],
)
def test_granian_missing_or_too_old_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    installed: str | None,
    message: str,
) -> None:
    from importlib import metadata

    from sessionwatch.service import requirements

    def version(name: str) -> str:
        if name != "granian" or installed is None:
            raise metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(requirements.metadata, "version", version)
    assert cli.main(["serve", "--server", "granian"]) == 2
    assert message in capsys.readouterr().err


def test_granian_refuses_a_second_api_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--server", "granian", "--api-bind", "127.0.0.1:8001"]) == 2
    assert "granian listens on one address only" in capsys.readouterr().err


def test_unknown_server_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["serve", "--server", "gunicorn"])
    assert caught.value.code == 2
    assert "'uvicorn', 'hypercorn', 'granian'" in capsys.readouterr().err


def test_the_service_app_itself_refuses_a_missing_or_weak_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ASGI server loading ``create_service_app`` directly (not through the CLI) gets
    the same refusal: no worker signs with a missing, short or placeholder key."""
    from sessionwatch import ConfigurationError

    monkeypatch.setenv("SESSIONWATCH_BACKEND", "memory://")
    for value in ("", "short-key", "a long random secret", "ab" * 20):
        monkeypatch.setenv("SECRET_KEY", value)
        with pytest.raises(ConfigurationError, match="SECRET_KEY"):
            service.create_service_app()
    monkeypatch.setenv("SECRET_KEY", GOOD_KEY)
    monkeypatch.setenv("SESSIONWATCH_SECRET_KEYS", f"{GOOD_KEY},too-short")
    with pytest.raises(ConfigurationError, match="SESSIONWATCH_SECRET_KEYS"):
        service.create_service_app()


async def test_the_service_app_serves_ops_and_counts_claims_but_signs_nobody_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SESSIONWATCH_BACKEND", "memory://")
    app = service.create_service_app()
    async with app.test_app():
        client = app.test_client()
        assert (await (await client.get("/healthz")).get_json()) == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.post("/_sessionwatch/claim", json={})).status_code == 200
        metrics = await (await client.get("/metrics")).get_data(as_text=True)
        assert "sessionwatch_claims_total 1.0" in metrics
        assert "sessionwatch_push_latency_seconds_bucket" in metrics
        login = await client.post("/login", form={"username": "ann", "password": "demo"})
        assert login.status_code == 404  # no demo sign-in


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ("rediss//:hunter2@host", "backend must be a URL"),
        ("postgres://x", "unknown backend scheme 'postgres'"),
    ],
)
def test_a_bad_backend_flag_is_named_as_typed(
    capsys: pytest.CaptureFixture[str], command: str, backend: str, reason: str
) -> None:
    """Issue 24: ``--backend`` typed on the command line was reported as
    ``SESSIONWATCH_BACKEND``, a variable the user never set."""
    assert cli.main([command, "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sessionwatch: configuration error: --backend: "), err
    assert reason in err and "SESSIONWATCH_BACKEND" not in err and "hunter2" not in err


def test_a_bad_backend_variable_is_named_as_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SESSIONWATCH_BACKEND", "postgres://x")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert cli.main(["serve"]) == 2
    assert "configuration error: SESSIONWATCH_BACKEND: unknown" in capsys.readouterr().err
