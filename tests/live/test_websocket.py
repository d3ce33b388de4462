"""The live-push endpoint and the hub, in process, on every backend (memory and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart, websocket
from quart.testing.connections import WebsocketDisconnectError

from sessionwatch import BackendUnavailable, CloseCode, Event, Policy
from sessionwatch.backends.base import session_channel, user_channel
from sessionwatch.core import events as events_module
from sessionwatch.core.events import Device
from sessionwatch.live import connection as connection_module
from sessionwatch.live import presence as presence_module
from sessionwatch.live import routing as routing_module
from sessionwatch.live import socket as socket_module
from sessionwatch.live.admission import Admission, Ticket
from sessionwatch.live.connection import Connection
from sessionwatch.service.metrics import Metrics
from sessionwatch.service.servers import LeanWebSocketProtocol
from support.app_factory import make_app
from support.clock import FakeClock
from support.lean_sockets import serving_sockets
from support.live import (
    CHROME,
    DOCUMENTED_CLOSE_CODES,
    FIREFOX,
    ORIGIN,
    SERVING_PATHS,
    WAIT,
    WS_PATH,
    Browser,
    Closed,
    serving,
    watch_of,
)
from support.subscription import Tap

Serve = Callable[..., contextlib.AbstractAsyncContextManager[Quart]]


@pytest.fixture(params=["raw", "quart"], name="endpoint")
def _endpoint(request: pytest.FixtureRequest) -> str:
    """How the endpoint is served: on raw ASGI (the default), or by Quart's view (an app
    with a WebSocket hook, which must keep running for every socket); both through
    Quart's test client, where a task per socket reads it (the task path)."""
    return str(request.param)


# Tests of an accepted socket's behaviour run on the callback path too: ``"listen"``, the
# raw ASGI endpoint served by a real uvicorn with the service's protocol, which offers
# ``sessionwatch.listen``: the socket is served by callbacks, in no task
# (support/lean_sockets.py; Browser.tab checks that each socket is).
ON_EVERY_PATH = pytest.mark.parametrize("endpoint", ["raw", "quart", "listen"])


@pytest.fixture(name="serve")
def _serve(backend_url: str, key_prefix: str, clock: FakeClock, endpoint: str) -> Serve:
    """Serve an app (hub running) with the given sessionwatch options."""

    @contextlib.asynccontextmanager
    async def serve(
        policy: Policy | None = None,
        *,
        now: Callable[[], float] = clock,
        setup: Callable[[Quart], object] | None = None,
        **options: Any,
    ) -> AsyncIterator[Quart]:
        app = make_app(backend_url, key_prefix=key_prefix, clock=now, policy=policy, **options)
        if endpoint == "quart":
            app.before_websocket(_no_op)
        if setup is not None:
            setup(app)
        async with app.test_app():
            if endpoint != "listen":
                yield app
                return
            async with serving_sockets(app) as server:
                yield app
                assert server.listened, "no socket was served by callbacks"

    return serve


def _no_op() -> None:
    return None


@pytest.fixture(name="app")
async def _app(serve: Serve) -> AsyncIterator[Quart]:
    async with serve() as app:
        yield app


@pytest.fixture(name="tapped")
async def _tapped(serve: Serve) -> AsyncIterator[tuple[Quart, Tap]]:
    """A served app whose hub subscription has a :class:`Tap` on it."""
    taps: list[list[Tap]] = []
    async with serve(setup=lambda app: taps.append(Tap.install(watch_of(app).backend))) as app:
        [tap] = taps[0]
        yield app, tap


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """No test may leave an unhandled exception (or any error) in the logs."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- handshake and hello --------------------------------------------------------------


@ON_EVERY_PATH
async def test_hello_answers_ready_with_the_session_state(app: Quart) -> None:
    browser = Browser(app)
    claim = await browser.claim()
    async with browser.socket() as ws:
        ready = await ws.hello(claim["tab"])
        assert ready == {
            "type": "ready",
            "v": 1,
            "gen": claim["gen"],
            "expires_at": claim["expires_at"],
            "session": claim["session"],
            "user": None,
        }
        await ws.pong()
        stats = watch_of(app).hub.stats()
        assert stats["sockets"] == 1 and stats["sessions"] == 1 and stats["channels"] == 1


@ON_EVERY_PATH
async def test_superseded_reaches_the_older_tab_only(app: Quart) -> None:
    browser = Browser(app)
    async with browser.tab() as (old, first):
        second = await browser.claim()
        message = await old.receive()
        assert message["type"] == "superseded" and message["gen"] == second["gen"]
        assert message["by"]["browser"].startswith("Chrome")
        async with browser.socket() as new:
            assert (await new.hello(second["tab"]))["type"] == "ready"
            third = await browser.claim()
            for ws in (old, new):  # both older than the third claim
                assert (await ws.receive())["gen"] == third["gen"]
            await new.pong()  # nothing else was queued for it
        assert first["gen"] < second["gen"] < third["gen"]


@pytest.mark.parametrize(("before", "after", "told"), [(1, None, "ready"), (None, 1, "superseded")])
async def test_a_policy_changed_at_run_time_reaches_the_hub(
    serve: Serve, before: Literal[1] | None, after: Literal[1] | None, told: str
) -> None:
    """The hub asks for the tab rule each time it applies it (issue 21): after the
    policy changed on the running app, the next claim's tab wins (or not) by the new
    rule, also for an older tab's socket that says hello afterwards."""
    async with serve(Policy(tabs_per_session=before)) as app:
        browser = Browser(app)
        async with browser.tab() as (old, first):
            watch_of(app).policy = Policy(tabs_per_session=after)
            async with browser.tab() as (_, second):
                if after == 1:  # the claim's own push, published under the new rule
                    assert (await old.until("superseded"))["gen"] == second["gen"]
                async with browser.socket() as again:  # the older tab, reconnecting
                    assert (await again.hello(first["tab"]))["type"] == told
                    await again.pong()
                await old.pong()  # nothing else was pushed to the older tab


async def test_a_resync_applies_the_policy_of_the_moment(serve: Serve) -> None:
    """Tabs unlimited, then one: a claim whose push was lost reaches the older tab by
    the resync, which re-checks it with the rule changed at run time."""
    taps: list[list[Tap]] = []
    setup = lambda app: taps.append(Tap.install(watch_of(app).backend))  # noqa: E731
    async with serve(Policy(tabs_per_session=None), setup=setup) as app:
        [tap] = taps[0]
        browser = Browser(app)
        async with browser.tab() as (old, _):
            watch_of(app).policy = Policy(tabs_per_session=1)
            tap.losing = True  # the claim's ``superseded`` is lost on the way
            second = await browser.claim()
            await asyncio.wait_for(tap.lost.wait(), WAIT)
            tap.reconnected()
            told = await old.receive()
            assert (told["type"], told["gen"]) == ("superseded", second["gen"])


@ON_EVERY_PATH
async def test_superseded_is_routed_by_generation(app: Quart) -> None:
    """Only a newer generation than the socket's token, and each one once."""
    watch = watch_of(app)
    browser = Browser(app)
    await browser.claim()
    async with browser.tab() as (ws, claim):
        channel = session_channel(watch.backend.key_prefix, claim["session"])
        by = {"browser": "Firefox 121", "os": "Android 14", "place": "", "at": 1}
        for gen in (claim["gen"] - 1, claim["gen"], claim["gen"] + 5, claim["gen"] + 5):
            event = Event("superseded", claim["session"], {"gen": gen, "by": by})
            await watch.backend.publish(channel, event.payload())
        assert await ws.receive() == {"type": "superseded", "gen": claim["gen"] + 5, "by": by}
        await ws.pong()  # nothing else: not the older ones, not the repeat


@ON_EVERY_PATH
async def test_winner_tab_is_not_told_and_use_here_rebinds(app: Quart) -> None:
    browser = Browser(app)
    async with browser.tab() as (a, _):
        async with browser.tab() as (b, _):
            superseded = await a.receive()
            assert superseded["type"] == "superseded"
            # "Use here" on tab A: claim again, then hello with the new token on the same socket.
            again = await browser.claim()
            await a.send({"type": "hello", "v": 1, "tab": again["tab"]})
            ready = await a.until("ready")
            assert ready["gen"] == again["gen"]
            told = await b.receive()
            assert told == {"type": "superseded", "gen": again["gen"], "by": told["by"]}
            await a.pong()
            await b.pong()


@ON_EVERY_PATH
async def test_a_tab_superseded_while_disconnected_learns_it_on_reconnect(app: Quart) -> None:
    browser = Browser(app)
    first = await browser.claim()
    async with browser.socket() as ws:
        assert (await ws.hello(first["tab"]))["type"] == "ready"
    second = await browser.claim()
    async with browser.socket() as ws:
        truth = await ws.hello(first["tab"])
        assert truth["type"] == "superseded" and truth["gen"] == second["gen"]
        assert truth["by"]["browser"].startswith("Chrome")
        await ws.pong()  # the socket stays open for "Use here"


@ON_EVERY_PATH
async def test_a_claim_landing_right_after_the_hello_read_is_not_missed(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket is subscribed and bound before the hello's state read, so a claim
    committed just after that read (and published then) still reaches it."""
    watch = watch_of(app)
    backend = watch.backend
    original = backend.load
    raced: list[int] = []

    async def load_then_claim(public_id: str, **kwargs: Any) -> Any:
        found = await original(public_id, **kwargs)
        if not kwargs.get("touch", True) and not raced:  # the hello's read
            claim = await backend.claim(
                public_id,
                Device("Firefox 121", "Android 14", "", watch.now_ms()),  # another device
                exclusive=True,
                timeouts=watch.timeouts,
                now=watch.now_ms(),
            )
            raced.append(claim.gen)  # type: ignore[union-attr]
        return found

    browser = Browser(app)
    tab = await browser.claim()
    monkeypatch.setattr(backend, "load", load_then_claim)
    async with browser.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": tab["tab"]})
        told = await ws.until("superseded")
        assert raced and told["gen"] == raced[0]


@ON_EVERY_PATH
@pytest.mark.parametrize(
    "tab",
    [None, "", "1.AAAAAAAAAAAAAAAAAAAAAA", "99.forged", "x" * 65],
    ids=["null", "empty", "forged", "malformed", "long"],
)
async def test_missing_or_invalid_token_closes_4007(app: Quart, tab: str | None) -> None:
    browser = Browser(app)
    await browser.claim()
    async with browser.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": tab})
        code, _ = await ws.closed()
        assert code == CloseCode.TAB_INVALID


@ON_EVERY_PATH
async def test_token_of_another_session_closes_4007(app: Quart) -> None:
    mine, other = Browser(app), Browser(app)
    await mine.claim()
    foreign = await other.claim()
    async with mine.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": foreign["tab"]})
        assert (await ws.closed())[0] == CloseCode.TAB_INVALID


# -- terminal events -------------------------------------------------------------------


@ON_EVERY_PATH
async def test_revoke_is_delivered_then_closes_and_reconnects_are_refused(app: Quart) -> None:
    browser = Browser(app)
    async with browser.tab() as (ws, claim):
        async with app.app_context():
            assert await watch_of(app).revoke_session(claim["session"], reason="admin")
        code, seen = await ws.closed()
        assert code == CloseCode.REVOKED
        assert seen == [{"type": "revoked", "reason": "admin"}]
    status, body = await browser.refused()
    assert status == 401 and body["error"] == "revoked" and body["reason"] == "revoked"


@ON_EVERY_PATH
async def test_logout_is_delivered_to_every_tab_then_closes(app: Quart) -> None:
    browser = Browser(app)
    await browser.login("ann")
    async with browser.tab() as (first, _), browser.socket() as second:
        await second.send({"type": "ping"})  # not bound yet: a ping first is refused
        assert (await second.closed())[0] == CloseCode.POLICY_VIOLATION
        async with browser.tab() as (third, _):
            await first.until("superseded")
            response = await browser.post("/logout")
            assert response.status_code == 200
            for ws in (first, third):
                code, seen = await ws.closed()
                assert code == CloseCode.LOGGED_OUT
                assert seen[-1] == {"type": "logged_out"}
    status, body = await browser.refused()
    assert status == 401 and body["error"] == "no_session"  # the cookie was cleared


async def test_an_event_is_encoded_once_for_every_tab_it_goes_to(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded: list[str] = []

    def counting(message: dict[str, Any]) -> str:
        encoded.append(message["type"])
        return events_module.encode(message)

    monkeypatch.setattr(routing_module, "encode", counting)
    monkeypatch.setattr(connection_module, "encode", counting)
    browser = Browser(app)
    await browser.login("ann")
    async with browser.tab() as (first, _), browser.tab() as (second, _):
        await first.until("superseded")
        async with browser.tab() as (third, _):
            await second.until("superseded")  # one event, told to both older tabs
            assert encoded.count("superseded") == 2  # one per claim, not per tab
            assert (await browser.post("/logout")).status_code == 200
            for ws in (first, second, third):
                assert (await ws.closed())[1][-1] == {"type": "logged_out"}
    assert encoded.count("logged_out") == 1


@ON_EVERY_PATH
async def test_eviction_by_the_session_limit(serve: Serve) -> None:
    async with serve(Policy(sessions_per_user=1)) as app:
        laptop, phone = Browser(app), Browser(app, FIREFOX)
        await laptop.login("ann")
        async with laptop.tab() as (ws, _):
            await phone.login("ann")
            code, seen = await ws.closed()
            assert code == CloseCode.EVICTED
            assert seen[-1]["type"] == "evicted"
            assert seen[-1]["by"]["browser"].startswith("Firefox")
        status, body = await laptop.refused()
        assert status == 401 and (body["error"], body["reason"]) == ("revoked", "evicted")


@ON_EVERY_PATH
async def test_login_rotation_closes_4013(app: Quart) -> None:
    browser = Browser(app)
    async with browser.tab() as (ws, _):
        await browser.login("ann")
        assert await ws.closed() == (CloseCode.ROTATED, [])
    async with browser.tab() as (ws, claim):  # the new cookie connects at once
        assert claim["user"] == "ann"


@ON_EVERY_PATH
async def test_signed_in_goes_to_the_users_other_sessions_only(app: Quart) -> None:
    laptop, phone = Browser(app), Browser(app, FIREFOX)
    await laptop.login("ann")
    async with laptop.tab() as (ws, _):
        await phone.login("ann")
        message = await ws.receive()
        assert message["type"] == "signed_in" and "session" not in message
        assert message["by"]["browser"].startswith("Firefox")
        async with phone.tab() as (phone_ws, phone_claim):
            # An event caused by the phone's session is not echoed to the phone's tabs.
            watch = watch_of(app)
            event = Event("signed_in", phone_claim["session"], {"by": message["by"]})
            await watch.backend.publish(
                user_channel(watch.backend.key_prefix, "ann"), event.payload()
            )
            assert (await ws.receive())["type"] == "signed_in"
            await phone_ws.pong()
            assert watch.hub.stats()["delivered"]["signed_in"] == 2


# -- expiry --------------------------------------------------------------------------


@ON_EVERY_PATH
async def test_expiring_extended_and_expired(serve: Serve, clock: FakeClock) -> None:
    async with serve(idle_timeout=600, refresh_every=60, expiring_lead=30) as app:
        hub = watch_of(app).hub
        browser = Browser(app)
        async with browser.tab() as (ws, claim):
            deadline = claim["expires_at"]
            clock.advance(569)
            hub.check_expiry()
            await ws.pong()  # not yet within the lead
            clock.advance(1)
            hub.check_expiry()
            expiring = await ws.receive()
            assert expiring == {"type": "expiring", "in": 30.0, "expires_at": deadline}
            hub.check_expiry()  # told once per deadline
            response = await browser.post(
                "/_sessionwatch/extend", **{"X-SessionWatch-Tab": claim["tab"]}
            )
            new_deadline = (await response.get_json())["expires_at"]
            assert new_deadline == deadline + 570_000
            extended = await ws.until("extended")
            while extended["expires_at"] != new_deadline:
                extended = await ws.until("extended")
            clock.advance(600)
            reads = []
            original = watch_of(app).backend.load

            async def counted(*args: Any, **kwargs: Any) -> Any:
                reads.append(args)
                return await original(*args, **kwargs)

            watch_of(app).backend.load = counted  # type: ignore[method-assign]
            hub.check_expiry()
            code, seen = await ws.closed()
            assert len(reads) == 1  # one read ended it; no re-check while it closes
            assert code == CloseCode.EXPIRED
            assert seen[-1] == {"type": "expired"}
            # At most the second ``extended`` (the request's own touch, then /extend).
            assert [m["type"] for m in seen[:-1]] in ([], ["extended"])
        status, body = await browser.refused()
        assert status == 401 and body["error"] == "expired"


async def test_expiry_timer_fires_on_its_own(serve: Serve) -> None:
    # A real clock and a short session: nothing drives the hub but its timers.
    async with serve(now=time.time, idle_timeout=1.2, refresh_every=1, expiring_lead=0.6) as app:
        browser = Browser(app)
        async with browser.tab() as (ws, _):
            assert (await ws.receive())["type"] == "expiring"
            code, seen = await ws.closed()
            assert (code, seen) == (CloseCode.EXPIRED, [{"type": "expired"}])


# -- origin and cookies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "null",
        "https://localhost.evil.com",
        "https://evil.com/https://localhost",
        "https://localhost:8443",
        "http://localhost",
        "HTTPS://LOCALHOST",
        "",
        None,
    ],
)
async def test_foreign_origins_are_refused_before_the_upgrade(
    app: Quart, origin: str | None
) -> None:
    browser = Browser(app)
    await browser.claim()
    status, body = await browser.refused(origin=origin)
    assert (status, body["error"]) == (403, "origin_forbidden")


async def test_allow_list_is_exact(serve: Serve) -> None:
    async with serve(allowed_origins=["https://app.example.com"]) as app:
        browser = Browser(app, origin="https://app.example.com")
        claim = await browser.claim()
        for origin in (
            "https://app.example.com.evil.com",
            "https://evil-app.example.com",
            "https://app.example.co",
            "https://app.example.com:444",
            ORIGIN,  # the app's own origin is not implied once a list is given
        ):
            assert (await browser.refused(origin=origin))[0] == 403, origin
        async with browser.socket() as ws:
            assert (await ws.hello(claim["tab"]))["type"] == "ready"


async def test_missing_origin_allowed_only_when_configured(serve: Serve) -> None:
    async with serve(allow_missing_origin=True) as app:
        browser = Browser(app)
        claim = await browser.claim()
        async with browser.socket(origin=None) as ws:
            assert (await ws.hello(claim["tab"]))["type"] == "ready"
        assert (await browser.refused(origin="null"))[0] == 403


# No cookie, a forged cookie, an expired, revoked or logged-out session and a foreign
# page: tests/web/test_doors_agree.py runs them through both handshakes and every other door.


# -- frames and limits ---------------------------------------------------------------------


@ON_EVERY_PATH
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type":"hello","v":1,"tab":"' + "x" * 5000 + '"}', CloseCode.MESSAGE_TOO_BIG),
        (b"\xff\xfe\x00", CloseCode.INVALID_DATA),
        (b'{"type":"hello","v":1,"tab":null}', CloseCode.INVALID_DATA),
        (b"", CloseCode.INVALID_DATA),
        ("{not json", CloseCode.INVALID_DATA),
        ("[1,2]", CloseCode.INVALID_DATA),
        ('{"type":1}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":"1","tab":null}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":1,"tab":7}', CloseCode.POLICY_VIOLATION),
        ('{"type":"ping"}', CloseCode.POLICY_VIOLATION),
        ('{"type":"hello","v":2,"tab":null}', CloseCode.UNSUPPORTED_VERSION),
    ],
    ids=[
        "oversize",
        "binary-invalid-utf8",
        "binary-json",
        "empty-binary",
        "not-json",
        "not-object",
        "type-not-string",
        "v-not-int",
        "tab-not-string",
        "ping-first",
        "version",
    ],
)
async def test_bad_frames_close_with_their_code(app: Quart, frame: str | bytes, code: int) -> None:
    browser = Browser(app)
    await browser.claim()
    async with browser.socket() as ws:
        await ws.send(frame)
        assert (await ws.closed())[0] == code


@ON_EVERY_PATH
async def test_bad_frame_after_ready_closes_too(app: Quart) -> None:
    browser = Browser(app)
    async with browser.tab() as (ws, _):
        await ws.send("x" * 4097)
        assert (await ws.closed())[0] == CloseCode.MESSAGE_TOO_BIG


async def test_a_frame_beyond_the_servers_own_bound_closes_1009_and_is_forgotten(
    backend_url: str, key_prefix: str
) -> None:
    """The callback path as ``sessionwatch serve`` runs uvicorn (``ws_max_size`` =
    ``max_frame``): the server refuses the frame with 1009 as it arrives, and the socket
    the app listens to hears the disconnect and is forgotten."""
    app = make_app(backend_url, key_prefix=key_prefix)
    hub = watch_of(app).hub
    async with app.test_app():
        async with serving_sockets(app, ws_max_size=hub.settings.max_frame) as server:
            browser = Browser(app)
            async with browser.tab() as (ws, _):
                await ws.send("x" * (hub.settings.max_frame + 1))
                assert await ws.closed() == (CloseCode.MESSAGE_TOO_BIG, [])
            assert server.listened == 1
            assert hub.stats()["sockets"] == hub.stats()["sessions"] == 0


@ON_EVERY_PATH
async def test_hello_timeout_4009_and_unknown_types_are_ignored(serve: Serve) -> None:
    async with serve(hello_timeout=0.3) as app:
        browser = Browser(app)
        await browser.claim()
        async with browser.socket() as ws:
            await ws.send({"type": "future_feature", "x": 1})
            assert await ws.closed() == (CloseCode.HELLO_TIMEOUT, [])


@ON_EVERY_PATH
async def test_heartbeat_timeout_4014(serve: Serve) -> None:
    async with serve(heartbeat_interval=0.2, heartbeat_timeout=0.2) as app:
        browser = Browser(app)
        async with browser.tab() as (ws, _):
            await ws.pong()
            assert await ws.closed() == (CloseCode.HEARTBEAT_TIMEOUT, [])


@ON_EVERY_PATH
async def test_message_rate_limit_4010(serve: Serve) -> None:
    async with serve(max_messages_per_second=5) as app:
        browser = Browser(app)
        async with browser.tab() as (ws, _):
            for _ in range(10):
                await ws.send({"type": "ping"})
            code, seen = await ws.closed()
            assert code == CloseCode.RATE_LIMITED
            # Pongs still queued when the limit hit are dropped with the socket.
            assert len(seen) <= 5 and {m["type"] for m in seen} <= {"pong"}


@ON_EVERY_PATH
async def test_too_many_sockets_per_session_and_user_4011(serve: Serve) -> None:
    async with serve(max_sockets_per_session=2, max_sockets_per_user=3) as app:
        laptop, phone = Browser(app), Browser(app, FIREFOX)
        await laptop.login("ann")
        await phone.login("ann")
        async with laptop.tab() as _, laptop.tab() as _:
            async with laptop.socket() as third:
                assert await third.closed() == (CloseCode.TOO_MANY_SOCKETS, [])
            async with phone.tab() as _, phone.socket() as fourth:
                assert await fourth.closed() == (CloseCode.TOO_MANY_SOCKETS, [])
        async with laptop.tab() as _:  # room again once sockets left
            pass


async def test_openings_beyond_the_limit_queue_then_are_refused_503_busy(serve: Serve) -> None:
    async with serve(max_opening_sockets=1) as app:
        hub, gates = watch_of(app).hub, watch_of(app).gates
        assert hub is not None and gates is not None
        ann, bob = Browser(app), Browser(app)
        claim = await ann.claim()
        await bob.claim()
        held = await gates.openings.enter()  # the only turn, taken
        gates.openings.wait = 0.3
        assert await bob.refused() == (503, {"error": "busy"})
        assert gates.stats()["opening_refused"] == 1
        metrics = Metrics(watch_of(app))
        gates.openings.wait = 10.0  # long enough to see it queued on a loaded machine
        async with ann.socket() as ws:  # queued, then admitted once the turn is free
            for _ in range(300):  # bounded: 3 s
                if gates.stats()["opening_queued"] == 1:
                    break
                await asyncio.sleep(0.01)
            assert gates.stats()["opening_queued"] == 1
            text = metrics.render()[0].decode()
            assert "sessionwatch_sockets_opening_queued 1.0" in text
            assert "sessionwatch_sockets_opening_refused_total 1.0" in text
            held.release()
            assert (await ws.hello(claim["tab"]))["type"] == "ready"
            # Registered: a socket waiting for its hello (or idle) holds no turn.
            assert gates.stats()["opening"] == 0
            async with bob.socket() as silent:
                await asyncio.sleep(0.2)
                stats = {**hub.stats(), **gates.stats()}
                assert (stats["sockets"], stats["opening"], stats["opening_queued"]) == (2, 0, 0)
                del silent


async def test_admission_is_fifo_bounded_and_survives_cancelled_waiters() -> None:
    gate = Admission(2, wait=5.0)
    first, second = await gate.enter(), await gate.enter()
    order: list[int] = []

    async def enter(n: int) -> Ticket:
        ticket = await gate.enter()
        order.append(n)
        return ticket

    third = asyncio.create_task(enter(3))
    cancelled = asyncio.create_task(enter(4))
    fourth = asyncio.create_task(enter(5))
    await asyncio.sleep(0.01)
    assert (gate.opening, gate.waiting) == (2, 3)
    cancelled.cancel()
    first.release()
    first.release()  # idempotent: frees one turn, not two
    await asyncio.sleep(0.01)
    assert order == [3] and gate.opening == 2
    second.release()
    await asyncio.sleep(0.01)
    assert order == [3, 5] and (gate.opening, gate.waiting) == (2, 0)
    (await third).release()
    (await fourth).release()
    assert gate.opening == 0
    gate.wait = 0.05
    held = [await gate.enter(), await gate.enter()]
    with pytest.raises(TimeoutError):
        await gate.enter()
    assert (gate.refused, gate.waiting) == (1, 0)
    for ticket in held:
        ticket.release()
    (await asyncio.wait_for(gate.enter(), 1)).release()  # no turn was lost


@pytest.mark.parametrize("path", SERVING_PATHS)
async def test_slow_consumer_is_closed_4012_without_stalling_others(path: str) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    sent: list[str] = []
    progress: asyncio.Queue[int] = asyncio.Queue()

    async def stuck_send(text: str) -> None:
        entered.set()
        await gate.wait()  # a peer that stopped reading

    async def send(text: str) -> None:
        sent.append(text)
        progress.put_nowait(len(sent))

    slow = Connection("s", None, stuck_send, queue_size=3)
    fast = Connection("s", None, send, queue_size=3)
    for conn in (slow, fast):
        conn.bind(1)
    never = asyncio.Event()
    served = [serving(conn, path, never.wait()) for conn in (slow, fast)]
    assert slow.push({"type": "extended", "expires_at": 0})
    await asyncio.wait_for(entered.wait(), WAIT)  # the writer is stuck in its send
    results = [slow.push({"type": "extended", "expires_at": n}) for n in range(1, 6)]
    assert results == [True, True, True, False, False]
    assert await asyncio.wait_for(served[0], WAIT) == CloseCode.SLOW_CONSUMER
    for n in range(10):  # the other socket is unaffected
        assert fast.push({"type": "extended", "expires_at": n})
        if n % 3 == 2:
            await asyncio.wait_for(_drained(progress, n + 1), WAIT)
    fast.finish(CloseCode.EXPIRED, {"type": "expired"})
    await asyncio.wait_for(_drained(progress, 11), WAIT)
    assert await asyncio.wait_for(served[1], WAIT) == CloseCode.EXPIRED
    assert sent[-1] == '{"type":"expired"}'


@pytest.mark.parametrize("path", SERVING_PATHS)
async def test_overflow_before_the_writer_starts_closes_at_once(path: str) -> None:
    conn = Connection("s", None, _never_called, queue_size=2)
    assert conn.push({"type": "pong"}) and conn.push({"type": "pong"})
    assert not conn.push({"type": "pong"})
    assert await asyncio.wait_for(serving(conn, path, asyncio.Event().wait()), WAIT) == 4012


async def test_an_idle_socket_holds_no_writer_nor_queue() -> None:
    sent: list[str] = []
    reading, delivered = asyncio.Event(), asyncio.Event()

    async def send(text: str) -> None:
        sent.append(text)
        delivered.set()

    async def read() -> None:
        reading.set()
        await asyncio.Event().wait()

    conn = Connection("s", None, send, queue_size=3)
    conn.bind(1)
    serving = asyncio.create_task(conn.serve(read()))
    await asyncio.wait_for(reading.wait(), WAIT)
    assert conn.idle
    assert conn.push({"type": "pong"})
    await asyncio.wait_for(delivered.wait(), WAIT)
    await asyncio.sleep(0)  # the writer ends once the queue is empty
    assert sent == ['{"type":"pong"}'] and conn.idle
    serving.cancel()  # from outside (the server dropped the connection): not absorbed
    with pytest.raises(asyncio.CancelledError):
        await serving


@pytest.mark.parametrize("path", SERVING_PATHS)
async def test_a_reader_that_closes_its_own_socket_is_stopped(path: str) -> None:
    conn = Connection("s", None, _never_called, queue_size=3)

    async def read() -> None:
        conn.abort(CloseCode.RATE_LIMITED)
        await asyncio.Event().wait()  # e.g. back to reading before it noticed

    assert await asyncio.wait_for(serving(conn, path, read()), WAIT) == CloseCode.RATE_LIMITED


async def _never_called(text: str) -> None:
    raise AssertionError("nothing may be sent")


async def _drained(progress: asyncio.Queue[int], count: int) -> None:
    while await progress.get() < count:
        pass


# -- presence, stats and resilience ----------------------------------------------------------


@ON_EVERY_PATH
async def test_live_tabs_counts_bound_sockets(app: Quart) -> None:
    browser = Browser(app)
    await browser.login("ann")

    async def live_tabs() -> int:
        body = await (await browser.get("/_sessionwatch/sessions")).get_json()
        return int(body["sessions"][0]["live_tabs"])

    assert await live_tabs() == 0
    async with browser.tab(), browser.tab():
        assert await live_tabs() == 2
        hub = watch_of(app).hub
        await hub.refresh_presence(hub.sockets())
        assert await live_tabs() == 2
    assert await live_tabs() == 0


@ON_EVERY_PATH
async def test_presence_events_tell_a_users_tabs_each_new_count(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each change is told before the next is made: nothing to coalesce, so the count is
    # read 20 ms after it instead of 250 (coalescing: tests/live/test_presence_notices.py).
    monkeypatch.setattr(presence_module, "NOTICE_DELAY", 0.02)
    async with serve(presence_events=True) as app:
        laptop, phone = Browser(app), Browser(app, FIREFOX)
        await laptop.login("ann")
        async with laptop.tab() as (ws, claim):
            mine = claim["session"]
            assert await _presence(ws) == (mine, 1)
            await phone.login("ann")
            async with phone.tab() as (phone_ws, phone_claim):
                theirs = phone_claim["session"]
                # every tab of the user is told, the counted session's own tabs too
                assert await _presence(phone_ws) == (theirs, 1)
                async with laptop.tab():
                    assert await _presence(phone_ws) == (mine, 2)
                assert await _presence(phone_ws) == (mine, 1)  # a tab that left
            told = [await _presence(ws) for _ in range(4)]
            assert told == [(theirs, 1), (mine, 2), (mine, 1), (theirs, 0)]
        body = await (await laptop.get("/_sessionwatch/sessions")).get_json()
        assert {s["id"] for s in body["sessions"]} == {mine, theirs}


async def _presence(ws: Any) -> tuple[str, int]:
    message = await ws.until("presence")
    assert set(message) == {"type", "id", "live_tabs", "at"}, message
    return message["id"], message["live_tabs"]


async def test_the_ticker_keeps_presence_alive_a_slice_at_a_time(serve: Serve) -> None:
    # Real time: presence lapses 2 intervals (0.4 s) after a refresh, so live_tabs
    # still counting both tabs after 1 s means the ticker refreshed each of them.
    async with serve(heartbeat_interval=0.2, heartbeat_timeout=10.0, now=time.time) as app:
        browser = Browser(app)
        await browser.login("ann")
        async with browser.tab(), browser.tab():
            await asyncio.sleep(1.0)
            body = await (await browser.get("/_sessionwatch/sessions")).get_json()
            assert body["sessions"][0]["live_tabs"] == 2


async def test_presence_is_refreshed_in_batches(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = watch_of(app)
    batches: list[list[tuple[str, str]]] = []
    refresh = watch.backend.set_presence

    async def record(sockets: list[tuple[str, str]], **kwargs: Any) -> None:
        batches.append(list(sockets))
        await refresh(sockets, **kwargs)

    async def send(frame: str) -> None:
        return None

    conns = [Connection(f"s{i}", None, send, queue_size=4) for i in range(70)]
    for conn in conns[:-1]:
        conn.bind(1)  # the last one never sent hello: not live yet
    monkeypatch.setattr(watch.backend, "set_presence", record)
    await watch.hub.refresh_presence(conns)
    assert [len(batch) for batch in batches] == [32, 32, 5]
    assert sorted(pair for batch in batches for pair in batch) == sorted(
        (conn.session, conn.id) for conn in conns[:-1]
    )


async def test_malformed_events_are_logged_and_ignored(
    app: Quart, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Browser(app)
    watch = watch_of(app)
    async with browser.tab() as (ws, claim):
        channel = session_channel(watch.backend.key_prefix, claim["session"])
        for payload in ("not json", '{"type": 5}', "[]", '{"type":"superseded","gen":"2"}'):
            await watch.backend.publish(channel, payload)
        await watch.backend.publish(channel, '{"type":"from_the_future","session":"x"}')
        second = await browser.claim()
        assert (await ws.receive())["gen"] == second["gen"]
        assert sum("malformed event" in r.getMessage() for r in caplog.records) == 4


async def test_reader_failure_is_logged_and_the_reader_restarts(
    tapped: tuple[Quart, Tap], caplog: pytest.LogCaptureFixture
) -> None:
    app, tap = tapped
    hub = watch_of(app).hub
    browser = Browser(app)
    async with browser.tab() as (ws, _):
        tap.fail_next = True
        second = await browser.claim()  # this event is lost with the failure ...
        await asyncio.wait_for(tap.failed.wait(), WAIT)
        told = await ws.receive()  # ... and the resync after the restart recovers it
        assert told["type"] == "superseded" and told["gen"] == second["gen"]
        assert hub.stats()["reader_restarts"] == 1
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert failures and "reader failed" in failures[0].getMessage()
        caplog.clear()


async def test_resync_retries_sessions_the_backend_could_not_answer(
    tapped: tuple[Quart, Tap], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, tap = tapped
    hub = watch_of(app).hub
    backend = watch_of(app).backend
    browser = Browser(app)
    async with browser.tab() as (ws, _):
        tap.losing = True  # the connection is "down"
        second = await browser.claim()
        await asyncio.wait_for(tap.lost.wait(), WAIT)
        original, calls = backend.load, []

        async def flaky_load(public_id: str, **kwargs: Any) -> Any:
            calls.append(public_id)
            if len(calls) <= 2:  # e.g. stale pooled connections right after a restart
                raise BackendUnavailable("injected")
            return await original(public_id, **kwargs)

        monkeypatch.setattr(backend, "load", flaky_load)
        tap.reconnected()
        told = await ws.receive()
        assert (told["type"], told["gen"]) == ("superseded", second["gen"])
        assert len(calls) == 3 and hub.stats()["resyncs"] == 1
        assert caplog.text.count("not re-checked yet") == 2


async def test_resync_corrects_sockets_after_lost_events(key_prefix: str) -> None:
    """Memory backend: events are dropped while the "connection" is down (the Redis
    connection loss is exercised for real in tests/integration)."""
    app = make_app("memory://", key_prefix=key_prefix)
    [taps] = [Tap.install(watch_of(app).backend)]
    async with app.test_app():
        [tap] = taps
        watch, hub = watch_of(app), watch_of(app).hub
        browser, other = Browser(app), Browser(app)
        async with browser.tab() as (ws, _), other.tab() as (ws2, claim2):
            tap.losing = True  # the "connection" is lost: events vanish
            second = await browser.claim()
            async with app.app_context():
                await watch.revoke_session(claim2["session"])
            await asyncio.wait_for(tap.lost.wait(), WAIT)
            tap.reconnected()
            told = await ws.receive()
            assert told["type"] == "superseded" and told["gen"] == second["gen"]
            assert told["by"]["browser"].startswith("Chrome")
            assert await ws2.closed() == (CloseCode.REVOKED, [{"type": "revoked"}])
            assert hub.stats()["reconnects"] == 1


@ON_EVERY_PATH
@pytest.mark.parametrize("failing", ["frame", "hello"])
async def test_a_reader_that_fails_closes_1011_and_is_logged(
    app: Quart,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failing: str,
) -> None:
    """An unexpected exception while a frame is handled (a ping's pong here) or while a
    hello is answered (its state read) ends the socket with 1011, logged with its
    traceback; the socket is forgotten and the other tab of the session keeps working."""
    backend = watch_of(app).backend
    original = backend.load

    async def load(public_id: str, **kwargs: Any) -> Any:
        if kwargs.get("touch") is False and failing == "hello":
            raise RuntimeError("injected")
        return await original(public_id, **kwargs)

    def pong() -> dict[str, Any]:
        raise RuntimeError("injected")

    browser = Browser(app)
    async with browser.tab() as (bystander, _):
        claim = await browser.claim()
        monkeypatch.setattr(backend, "load", load)
        monkeypatch.setattr(socket_module, "pong_message", pong)
        async with browser.socket() as ws:
            await ws.send({"type": "hello", "v": 1, "tab": claim["tab"]})
            if failing == "frame":
                assert (await ws.receive())["type"] == "ready"
                await ws.send({"type": "ping"})
            assert await ws.closed() == (CloseCode.INTERNAL_ERROR, [])
        assert watch_of(app).hub.stats()["sockets"] == 1
        monkeypatch.undo()
        assert (await bystander.receive())["type"] == "superseded"  # by the claim above
        await bystander.pong()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and "reader failed" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    caplog.clear()


@ON_EVERY_PATH
async def test_shutdown_closes_sockets_1001(serve: Serve) -> None:
    browser: Browser
    async with contextlib.AsyncExitStack() as stack:
        app = await stack.enter_async_context(serve())
        browser = Browser(app)
        tab = await browser.claim()
        ws = await stack.enter_async_context(browser.socket())
        assert (await ws.hello(tab["tab"]))["type"] == "ready"
        hub = watch_of(app).hub
        await asyncio.wait_for(hub.stop(), WAIT)
        assert await ws.closed() == (CloseCode.GOING_AWAY, [])
        assert hub.stats()["sockets"] == 0 and not hub.running


async def test_shutdown_is_bounded_by_its_grace(
    serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task that ignores its cancellation and a subscription that never closes are
    logged and left behind: the stop returns (it waited for them forever)."""
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    async with serve() as app:
        hub = watch_of(app).hub
        subscription = hub._registry.subscription
        assert subscription is not None
        close = subscription.aclose

        async def hangs() -> None:
            await release.wait()
            await close()

        monkeypatch.setattr(subscription, "aclose", hangs)
        hub._spawn(stubborn())
        try:
            await asyncio.wait_for(hub.stop(grace=0.2), WAIT)
        finally:
            release.set()
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 2 and "still running" in errors[0], errors
        assert "subscription did not close" in errors[1]
        await close()  # what the stop left behind
        caplog.clear()  # the errors are the expected ones


@ON_EVERY_PATH
async def test_backend_down_refuses_503_at_the_handshake_and_closes_1013_at_hello(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = watch_of(app).backend
    original = backend.load
    down = {"handshake": True, "hello": True}

    async def load(public_id: str, **kwargs: Any) -> Any:
        if down["hello" if kwargs.get("touch") is False else "handshake"]:
            raise BackendUnavailable("injected outage")
        return await original(public_id, **kwargs)

    browser = Browser(app)
    claim = await browser.claim()
    monkeypatch.setattr(backend, "load", load)
    assert await browser.refused() == (503, {"error": "backend_unavailable"})
    down["handshake"] = False
    async with browser.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": claim["tab"]})
        assert await ws.closed() == (CloseCode.TRY_AGAIN_LATER, [])
    down["hello"] = False
    async with browser.socket() as ws:  # back: the retry is answered
        assert (await ws.hello(claim["tab"]))["type"] == "ready"


async def test_a_server_without_http_answers_to_handshakes_gets_a_close_instead(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the ``websocket.http.response`` extension a refusal is a close before the
    upgrade (the server answers 403)."""
    browser = Browser(app)
    await browser.claim()

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(watch_of(app).backend, "load", down)
    connection = browser.client.websocket(
        WS_PATH, scheme="wss", headers={"User-Agent": CHROME, "Origin": ORIGIN}
    )
    connection.scope["extensions"] = {}
    async with connection as ws:
        with pytest.raises(WebsocketDisconnectError) as refused:
            await asyncio.wait_for(ws.receive(), WAIT)
        assert refused.value.args[0] == 1000 and not ws.accepted


async def test_hub_not_running_refuses_503(
    backend_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(backend_url, key_prefix=key_prefix)
    browser = Browser(app)  # no test_app(): the app is not being served
    await watch_of(app).backend.connect()
    try:
        await browser.claim()
        assert (await browser.refused())[0] == 503
    finally:
        await watch_of(app).backend.disconnect()
    assert "hub is not running" in caplog.text
    caplog.clear()


@ON_EVERY_PATH
async def test_a_closed_socket_is_forgotten(tapped: tuple[Quart, Tap]) -> None:
    app, tap = tapped
    browser = Browser(app)
    hub = watch_of(app).hub
    await browser.login("ann")
    async with browser.tab():
        assert hub.stats()["sockets"] == 1
        assert len(tap.channels) == 2  # the session's and the user's
    # Leaving the socket's context waited for the handler, clean-up included.
    assert (hub.stats()["sockets"], hub.stats()["channels"], hub.stats()["sessions"]) == (0, 0, 0)
    assert not tap.channels  # the last socket's channels were unsubscribed


@ON_EVERY_PATH
async def test_a_socket_whose_peer_left_while_it_was_attached_is_forgotten(
    tapped: tuple[Quart, Tap],
) -> None:
    app, tap = tapped
    hub = watch_of(app).hub
    tap.gate = gate = asyncio.Event()  # subscribes wait for it
    browser = Browser(app)
    await browser.claim()
    async with browser.socket():
        async with asyncio.timeout(WAIT):
            while True:  # registered, waiting for the subscribe
                if hub.stats()["sockets"]:
                    break
                await asyncio.sleep(0.01)
        asyncio.get_running_loop().call_later(0.05, gate.set)  # after the peer left
    assert hub.stats()["sockets"] == hub.stats()["sessions"] == 0


@ON_EVERY_PATH
async def test_frames_sent_before_the_socket_is_registered_are_read_once_it_is(
    tapped: tuple[Quart, Tap], endpoint: str
) -> None:
    """A hello and a ping sent while the socket is still being registered (its
    subscribe held back) are read once it is, in order. On the callback path the server
    has queued them before the app listens: listening hears them first
    (LISTEN_EXTENSION)."""
    app, tap = tapped
    hub = watch_of(app).hub
    tap.gate = gate = asyncio.Event()  # subscribes wait for it
    browser = Browser(app)
    claim = await browser.claim()
    async with browser.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": claim["tab"]})
        await ws.send({"type": "ping"})
        async with asyncio.timeout(WAIT):
            while not hub.stats()["sockets"]:  # noqa: ASYNC110 (registered, subscribing)
                await asyncio.sleep(0.01)
        if endpoint == "listen":
            inbox = ws.connection.protocol.queue
            async with asyncio.timeout(WAIT):
                while inbox.empty():  # noqa: ASYNC110 (the hello queued, no one listening)
                    await asyncio.sleep(0.01)
            assert not inbox.listening
        gate.set()
        assert (await ws.receive())["type"] == "ready"
        assert await ws.receive() == {"type": "pong"}
        if endpoint == "listen":
            assert ws.connection.served_by_callbacks and inbox.empty()


@ON_EVERY_PATH
async def test_frames_arriving_while_a_hello_is_answered_wait_for_its_answer(
    app: Quart, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """Frames are read one at a time: pings sent while a hello's state read is held
    back are answered after its ``ready``, in order. On the callback path the reader
    holds the server's events back meanwhile (``hold(True)``, LISTEN_EXTENSION) and the
    server stops reading the socket, as for an app that does not read; the answer
    releases them (``hold(False)``) and reading resumes."""
    backend = watch_of(app).backend
    original = backend.load
    loading, release = asyncio.Event(), asyncio.Event()

    async def held_back(public_id: str, **kwargs: Any) -> Any:
        if kwargs.get("touch") is False:  # the hello's read
            loading.set()
            await release.wait()
        return await original(public_id, **kwargs)

    browser = Browser(app)
    claim = await browser.claim()
    monkeypatch.setattr(backend, "load", held_back)
    async with browser.socket() as ws:
        await ws.send({"type": "hello", "v": 1, "tab": claim["tab"]})
        await asyncio.wait_for(loading.wait(), WAIT)
        for _ in range(3):
            await ws.send({"type": "ping"})
        if endpoint == "listen":
            protocol = ws.connection.protocol
            await asyncio.sleep(0.05)  # time for the pings to arrive, were they read
            assert protocol.read_paused and not protocol.queue.hearing
        release.set()
        assert (await ws.receive())["type"] == "ready"
        for _ in range(3):
            assert await ws.receive() == {"type": "pong"}
        if endpoint == "listen":
            assert not protocol.read_paused and protocol.queue.hearing


@pytest.mark.parametrize("wraps", [False, True], ids=["uvicorn", "middleware"])
async def test_without_the_servers_own_receive_a_socket_is_read_by_a_task(
    backend_url: str, key_prefix: str, wraps: bool
) -> None:
    """The app listens only when the server offers LISTEN_EXTENSION and the ``receive``
    it got is the one offered: uvicorn's own protocol offers nothing, and behind a
    middleware that wraps ``receive`` the offer is not taken. Either way a task reads
    the socket, which works as ever."""
    app = make_app(backend_url, key_prefix=key_prefix)
    seen: list[str] = []
    if wraps:
        inner = app.asgi_app

        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            async def wrapped() -> Any:
                event = await receive()
                seen.append(event["type"])
                return event

            await inner(scope, wrapped, send)

        app.asgi_app = middleware  # type: ignore[method-assign]
    ws_protocol = LeanWebSocketProtocol if wraps else "websockets-sansio"
    async with app.test_app(), serving_sockets(app, ws=ws_protocol) as server:
        browser = Browser(app)
        claim = await browser.claim()
        async with browser.socket() as ws:
            await ws.send({"type": "hello", "v": 1, "tab": claim["tab"]})
            assert (await ws.receive())["type"] == "ready"
            await ws.pong()
            assert not ws.connection.served_by_callbacks
        assert server.listened == 0
        assert watch_of(app).hub.stats()["sockets"] == 0
    assert ("websocket.receive" in seen) is wraps


async def test_sockets_are_served_on_raw_asgi_unless_the_app_hooks_websockets(
    backend_url: str, key_prefix: str
) -> None:
    app = make_app(backend_url, key_prefix=key_prefix)
    by_quart: list[str] = []  # sockets that reached the Quart view
    view = app.view_functions["sessionwatch.live"]

    async def counted(**kwargs: Any) -> Any:
        by_quart.append(websocket.path)
        return await view(**kwargs)

    app.view_functions["sessionwatch.live"] = counted
    hooked: list[str] = []
    async with app.test_app():
        browser = Browser(app)
        async with browser.tab():
            pass
        assert by_quart == []  # accepted on raw ASGI
        assert (await browser.refused(origin="https://evil.example"))[0] == 403
        assert by_quart == []  # refused on raw ASGI too: one decision (live/handshake.py)

        @app.before_websocket
        def hook() -> None:
            hooked.append(websocket.path)

        async with browser.tab():
            pass
        assert by_quart == [WS_PATH] and hooked == [WS_PATH]


# -- property-based: arbitrary frames ---------------------------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
_TOKENS = st.sampled_from(["CURRENT", "OLD"]) | st.none() | st.text(max_size=70) | _JSON_VALUES
_MESSAGES = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "ping", "pong", "ready", "superseded"])
        | st.text(max_size=8)
        | _JSON_VALUES,
        "v": st.sampled_from([1, 0, 2, "1", 1.0, True, None, 10**20]),
        "tab": _TOKENS,
        "extra": _JSON_VALUES,
    },
)
_VALID = st.sampled_from(
    [
        {"type": "hello", "v": 1, "tab": "CURRENT"},
        {"type": "hello", "v": 1, "tab": "OLD"},
        {"type": "ping"},
        {"type": "from_the_future", "x": [1]},
    ]
).map(json.dumps)
_FRAMES = st.one_of(
    _VALID,
    _VALID,
    _VALID,
    _MESSAGES.map(json.dumps),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8") | st.characters(categories=["Cs"]), max_size=40),
    st.binary(max_size=40),
    st.integers(4090, 4200).map(lambda n: '{"type":"ping","pad":"' + "é" * (n // 2) + '"}'),
    st.tuples(st.integers(4090, 4200), st.binary(min_size=1, max_size=4)).map(
        lambda pair: pair[1] * (pair[0] // len(pair[1]))
    ),
)
_SEGMENTS = 4  # sockets per example
_PER_SEGMENT = 10  # frames per socket
_EXAMPLES = 25  # 25 x 4 x 10 = 1,000 frames per backend


@settings(
    max_examples=_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    segments=st.lists(
        st.tuples(st.booleans(), st.lists(_FRAMES, min_size=_PER_SEGMENT, max_size=_PER_SEGMENT)),
        min_size=_SEGMENTS,
        max_size=_SEGMENTS,
    )
)
def test_arbitrary_frames_only_close_with_documented_codes(
    backend_url: str, segments: list[tuple[bool, list[str | bytes]]]
) -> None:
    """Each socket (half of them after a valid ``hello``) gets arbitrary frames, then a
    ping: it answers or closes with a documented code, nothing is logged as an error,
    and another socket of the session keeps working."""
    asyncio.run(asyncio.wait_for(_fuzz(backend_url, segments), 60))


async def _fuzz(backend_url: str, segments: list[tuple[bool, list[str | bytes]]]) -> None:
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        app = make_app(backend_url, key_prefix=f"swfuzz:{uuid.uuid4().hex[:12]}:")
        async with app.test_app():
            browser = Browser(app)
            old = (await browser.claim())["tab"]
            current = (await browser.claim())["tab"]
            async with browser.socket() as bystander:
                assert (await bystander.hello(current))["type"] == "ready"
                for hello_first, frames in segments:
                    async with browser.socket() as ws:
                        if hello_first:
                            assert (await ws.hello(current))["type"] == "ready"
                        for frame in frames:
                            if isinstance(frame, str):
                                frame = frame.replace('"CURRENT"', json.dumps(current))
                                frame = frame.replace('"OLD"', json.dumps(old))
                            await ws.send(frame)
                        await ws.send({"type": "ping"})
                        try:
                            await ws.until("pong")
                        except Closed as closed:
                            assert closed.code in DOCUMENTED_CLOSE_CODES, closed.code
                # The other socket of the session is unaffected.
                await bystander.pong()
                newest = await browser.claim()
                told = await bystander.receive()
                assert (told["type"], told["gen"]) == ("superseded", newest["gen"])
    finally:
        logging.getLogger().removeHandler(handler)
    assert not errors, [record.getMessage() for record in errors]


# -- the Redis subscription under the hub ---------------------------------------------------


@pytest.mark.parametrize("retries", [0, 3], ids=["from_url", "client_with_retries"])
async def test_every_pubsub_drop_yields_a_resync(redis_url: str, retries: int) -> None:
    """Even when redis-py reconnects and re-subscribes by itself (a client with
    retries), the subscription reports the gap, so the hub re-checks its sockets."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from sessionwatch.backends.redis import RedisBackend
    from support.events import EventCollector

    name = (
        f"swtest-{uuid.uuid4().hex[:8]}"  # only our connection is killed (REDIS_URL may be shared)
    )
    client = aioredis.Redis.from_url(
        redis_url, decode_responses=True, retry=Retry(NoBackoff(), retries), client_name=name
    )
    admin = aioredis.Redis.from_url(redis_url, decode_responses=True)
    backend = RedisBackend(key_prefix=f"{name}:", client=client)
    channel = f"{name}:chan"
    try:
        async with EventCollector(backend) as events:
            await events.subscribe(channel)
            for round_number in range(3):
                listed = await admin.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
                ours = [
                    field.split("=", 1)[1]
                    for line in listed.splitlines()
                    if f" name={name} " in f" {line} "
                    for field in line.split()
                    if field.startswith("id=")
                ]
                assert len(ours) == 1, listed
                await admin.execute_command("CLIENT", "KILL", "ID", ours[0])
                marker = await events.next_message(WAIT)
                assert marker.resync, (round_number, marker)
                await backend.publish(channel, f"after {round_number}")
                assert (await events.next_message(WAIT)).payload == f"after {round_number}"
            assert events.subscription.reconnects == 3  # type: ignore[attr-defined]
    finally:
        await admin.aclose()
        await backend.disconnect()
