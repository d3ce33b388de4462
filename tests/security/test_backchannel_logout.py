"""Back-Channel Logout 1.0 at ``POST {url_prefix}/oidc/backchannel-logout``, and the
sign-in it relies on, against a provider whose keys and answers the tests hold
(support/oidc.py ScriptedProvider): each validation rule of docs/sso.md has a case
here that fails when the rule is removed, and only the valid token ends anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from joserfc.jwk import RSAKey
from quart import Quart
from quart.testing import QuartClient

from sessionwatch.backends.base import session_channel
from sessionwatch.core.exceptions import BackendUnavailable
from sessionwatch.core.oidc import MAX_LOGOUT_BODY, SSO_IDENTITY_KEY
from support.app_factory import make_app, watch_of
from support.clock import FakeClock
from support.events import EventCollector
from support.oidc import CLIENT_ID, CLIENT_SECRET, ISSUER, ScriptedProvider

BACKCHANNEL = "/_sessionwatch/oidc/backchannel-logout"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def sso_app(
    backend_url: str, key_prefix: str, clock: FakeClock, provider: Any, **extra: Any
) -> Quart:
    options: dict[str, Any] = {
        "oidc_issuer": ISSUER,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "sso_transport": provider.transport() if provider is not None else None,
    }
    options.update(extra)
    return make_app(backend_url, key_prefix=key_prefix, clock=clock, **options)


@pytest.fixture(name="provider")
def _provider(clock: FakeClock) -> ScriptedProvider:
    return ScriptedProvider(clock)


@pytest.fixture(name="app")
async def _app(
    backend_url: str, key_prefix: str, clock: FakeClock, provider: ScriptedProvider
) -> AsyncIterator[Quart]:
    app = sso_app(backend_url, key_prefix, clock, provider)
    async with app.test_app():
        yield app


async def sign_in(
    client: QuartClient, provider: ScriptedProvider, sub: str, sid: str
) -> dict[str, Any]:
    """The whole code flow: /oidc/login → the provider → /oidc/callback."""
    started = await client.get("/_sessionwatch/oidc/login?next=/data")
    assert started.status_code == 302, await started.get_data(as_text=True)
    location = started.headers["Location"]
    assert location.startswith(ISSUER + "/auth?")
    assert "code_challenge_method=S256" in location
    answer = await client.get(
        "/_sessionwatch/oidc/callback?" + provider.authorize(location, sub=sub, sid=sid)
    )
    assert answer.status_code == 302, await answer.get_data(as_text=True)
    assert answer.headers["Location"] == "/data"
    data: dict[str, Any] = await (await client.get("/data")).get_json()
    return data


async def live(app: Quart, user: str) -> int:
    return len((await watch_of(app).list_sessions(user)).sessions)


async def post_token(client: QuartClient, token: str) -> Any:
    return await client.post(BACKCHANNEL, data=f"logout_token={token}", headers=FORM)


@pytest.fixture(name="signed_in")
async def _signed_in(app: Quart, provider: ScriptedProvider) -> dict[str, QuartClient]:
    """alice (provider session alice, 2 RP sessions in it) and bob, signed in."""
    clients = {name: app.test_client() for name in ("alice", "alice2", "bob")}
    await sign_in(clients["alice"], provider, "alice-sub", "provider-session-alice")
    await sign_in(clients["alice2"], provider, "alice-sub", "provider-session-alice")
    await sign_in(clients["bob"], provider, "bob-sub", "provider-session-bob")
    assert await live(app, "alice-sub") == 2
    assert await live(app, "bob-sub") == 1
    return clients


async def test_sign_in_records_the_provider_sid_and_sub(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: the code flow with PKCE, state and nonce signs the session in as
    the token's sub, with the provider's sid and sub recorded on the session."""
    data = await sign_in(app.test_client(), provider, "carol-sub", "provider-session-carol")
    assert data[SSO_IDENTITY_KEY]["sub"] == "carol-sub"
    assert data[SSO_IDENTITY_KEY]["sid"] == "provider-session-carol"
    assert await live(app, "carol-sub") == 1


async def test_a_callback_with_a_foreign_state_signs_nobody_in(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: the state binds the callback to the browser that started the
    sign-in (login CSRF): another browser's code and state sign nobody in."""
    victim, attacker = app.test_client(), app.test_client()
    started = await attacker.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="mallory", sid="s-m")
    answer = await victim.get("/_sessionwatch/oidc/callback?" + query)
    assert answer.status_code == 400
    assert (await answer.get_json())["error"] == "sign_in_failed"
    assert await live(app, "mallory") == 0


async def test_an_id_token_with_another_nonce_signs_nobody_in(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: the ID token must carry the nonce this sign-in sent."""
    client = app.test_client()
    started = await client.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="eve", sid="s-e", nonce="other")
    answer = await client.get("/_sessionwatch/oidc/callback?" + query)
    assert answer.status_code == 400
    assert await live(app, "eve") == 0


async def test_a_callback_is_used_once(app: Quart, provider: ScriptedProvider) -> None:
    """docs/sso.md: a state is spent by its callback; the same callback again (a
    replayed URL) signs nothing in, and a code the provider refuses is a 400 too."""
    client = app.test_client()
    started = await client.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="judy", sid="s-j")
    assert (await client.get("/_sessionwatch/oidc/callback?" + query)).status_code == 302
    again = await client.get("/_sessionwatch/oidc/callback?" + query)
    assert again.status_code == 400
    started = await client.get("/_sessionwatch/oidc/login")
    state = provider.authorize(started.headers["Location"], sub="judy", sid="s-j").split("&")[1]
    refused = await client.get(f"/_sessionwatch/oidc/callback?code=unknown&{state}")
    assert refused.status_code == 400
    assert (await refused.get_json())["error"] == "sign_in_failed"


async def test_a_sign_in_whose_link_cannot_be_stored_is_undone(
    app: Quart, provider: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/sso.md (fail closed): when the backend cannot store the provider link, the
    new session is ended again: a session the provider's logout could not find never
    stays signed in."""
    backend = watch_of(app).backend

    async def unreachable(*args: Any, **kwargs: Any) -> None:
        raise BackendUnavailable("link refused by the test")

    monkeypatch.setattr(backend, "link", unreachable)
    client = app.test_client()
    started = await client.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="kim", sid="s-k")
    answer = await client.get("/_sessionwatch/oidc/callback?" + query)
    assert answer.status_code == 503
    assert await live(app, "kim") == 0


async def test_a_callback_naming_another_issuer_signs_nobody_in(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md (mix-up, RFC 9207): a callback whose iss is another issuer's is
    refused before the code is redeemed."""
    client = app.test_client()
    started = await client.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="ivan", sid="s-i")
    answer = await client.get(f"/_sessionwatch/oidc/callback?{query}&iss=https://evil.test/")
    assert answer.status_code == 400
    assert provider.codes  # never redeemed
    assert await live(app, "ivan") == 0


async def test_discovery_naming_another_issuer_is_refused(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: a discovery document that names another issuer is not used: no
    sign-in starts (503 provider_unavailable), no logout token is accepted (501)."""
    provider.named_issuer = "https://impostor.test/"
    client = app.test_client()
    answer = await client.get("/_sessionwatch/oidc/login")
    assert answer.status_code == 503
    assert (await answer.get_json())["error"] == "provider_unavailable"
    assert (await post_token(client, provider.logout_token())).status_code == 501


async def test_a_valid_logout_token_ends_the_provider_sessions_live(
    app: Quart,
    provider: ScriptedProvider,
    signed_in: dict[str, QuartClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/sso.md: a valid token ends every session of its sid at once, their tabs get
    revoked{signed_out_at_provider}, the answer is 200 no-store; bob is untouched and
    alice's next request is refused. The audit lines name the provider."""
    caplog.set_level(logging.INFO, logger="sessionwatch.security")
    watch = watch_of(app)
    ids = [s.id for s in (await watch.list_sessions("alice-sub")).sessions]
    async with EventCollector(watch.backend) as events:
        await events.subscribe(*(session_channel(watch.backend.key_prefix, i) for i in ids))
        answer = await post_token(signed_in["bob"], provider.logout_token())
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        reasons = []
        for _ in ids:
            _, event = await events.next()
            reasons.append((event.type, event.fields.get("reason")))
    assert reasons == [("revoked", "signed_out_at_provider")] * 2
    assert await live(app, "alice-sub") == 0
    assert await live(app, "bob-sub") == 1
    refused = await signed_in["alice"].post("/transfer")
    assert refused.status_code == 401
    assert (await refused.get_json())["error"] == "revoked"
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "sessionwatch.security"
    ]
    assert {"event": "provider_logout", "issuer": ISSUER, "by": "sid", "sessions": 2} in lines
    revokes = [line for line in lines if line["event"] == "revoke"]
    assert len(revokes) == 2
    assert {line["actor"] for line in revokes} == {f"provider:{ISSUER}"}


async def test_a_logout_token_with_sub_only_ends_every_session_of_the_user(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: without sid, every session of the sub ends."""
    answer = await post_token(signed_in["bob"], provider.logout_token(sid=None))
    assert answer.status_code == 200
    assert await live(app, "alice-sub") == 0
    assert await live(app, "bob-sub") == 1


def _invalid_cases(provider: ScriptedProvider, clock: FakeClock) -> dict[str, tuple[str, str]]:
    """name -> (token, what error_description must say)."""
    now = int(clock())
    other = RSAKey.generate_key(2048, parameters={"kid": "k-unknown"})
    return {
        "expired": (provider.logout_token(exp=now - 61, iat=now - 200), "expired"),
        "old_without_exp": (provider.logout_token(exp=None, iat=now - 121 - 61), "too long ago"),
        "iat_in_future": (provider.logout_token(iat=now + 61 + 5), "iat is in the future"),
        "wrong_aud": (provider.logout_token(aud="another-client"), "aud"),
        "wrong_iss": (provider.logout_token(iss="https://evil.test/"), "iss"),
        "nonce_present": (provider.logout_token(nonce="n"), "nonce"),
        "events_missing": (provider.logout_token(events=None), "events"),
        "events_other_member": (provider.logout_token(events={"other": {}}), "events"),
        "neither_sid_nor_sub": (provider.logout_token(sid=None, sub=None), "neither sid nor sub"),
        "jti_missing": (provider.logout_token(jti=None), "jti"),
        "alg_none": (provider.unsigned(provider.logout_claims()), "'none' is not accepted"),
        "hmac_with_public_key": (
            provider.hmac_with_public_key(provider.logout_claims()),
            "'HS256' is not accepted",
        ),
        "unknown_kid": (provider.sign(provider.logout_claims(), key=other), "kid"),
        "bad_signature": (provider.logout_token()[:-8] + "AAAAAAAA", "signature"),
    }


CASES = [
    "expired",
    "old_without_exp",
    "iat_in_future",
    "wrong_aud",
    "wrong_iss",
    "nonce_present",
    "events_missing",
    "events_other_member",
    "neither_sid_nor_sub",
    "jti_missing",
    "alg_none",
    "hmac_with_public_key",
    "unknown_kid",
    "bad_signature",
]


@pytest.mark.parametrize("case", CASES)
async def test_an_invalid_logout_token_is_refused_and_ends_nothing(
    case: str,
    app: Quart,
    provider: ScriptedProvider,
    clock: FakeClock,
    signed_in: dict[str, QuartClient],
) -> None:
    """docs/sso.md validation rules: each invalid token gets 400 with the OAuth error
    body naming the failed rule, and no session ends."""
    token, says = _invalid_cases(provider, clock)[case]
    answer = await post_token(signed_in["bob"], token)
    assert answer.status_code == 400
    body = await answer.get_json()
    assert body["error"] == "invalid_request"
    assert says in body["error_description"]
    assert answer.headers["Cache-Control"] == "no-store"
    assert await live(app, "alice-sub") == 2
    assert await live(app, "bob-sub") == 1


async def test_an_unknown_kid_refetches_the_keys_once_then_refuses(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: an unknown kid costs one refetch of the provider's keys (a
    rotation is picked up), then 400; a second one within 10 s costs none."""
    valid = await post_token(signed_in["bob"], provider.logout_token(sid="nobody"))
    assert valid.status_code == 200 and provider.key_requests == 1
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k-stranger"})
    for _ in range(2):
        answer = await post_token(
            signed_in["bob"], provider.sign(provider.logout_claims(), key=stranger)
        )
        assert answer.status_code == 400
    assert provider.key_requests == 2  # one refetch, not one per token
    assert await live(app, "alice-sub") == 2


async def test_a_rotated_key_is_picked_up_by_the_refetch(
    backend_url: str, key_prefix: str, clock: FakeClock, provider: ScriptedProvider
) -> None:
    """docs/sso.md: keys fetched before a rotation do not refuse a token signed with
    the new key: the unknown kid triggers the refetch that finds it."""
    app = sso_app(backend_url, key_prefix, clock, provider)
    async with app.test_app():
        client = app.test_client()
        await sign_in(client, provider, "alice-sub", "provider-session-alice")
        assert (await post_token(client, provider.logout_token(sid="x"))).status_code == 200
        rotated = RSAKey.generate_key(2048, parameters={"kid": "k2"})
        provider.published = [provider.key, rotated]
        answer = await post_token(client, provider.sign(provider.logout_claims(), key=rotated))
        assert answer.status_code == 200
        assert provider.key_requests == 2
        assert await live(app, "alice-sub") == 0


async def test_a_body_over_the_size_limit_is_refused_unread(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: a body over 16 KiB is refused (400) before any token is read."""
    token = provider.logout_token()
    body = f"logout_token={token}&pad=" + "a" * MAX_LOGOUT_BODY
    answer = await signed_in["bob"].post(BACKCHANNEL, data=body, headers=FORM)
    assert answer.status_code == 400
    assert "larger than" in (await answer.get_json())["error_description"]
    assert await live(app, "alice-sub") == 2
    # the same token in a body within the limit works: the size was the only fault
    assert (await post_token(signed_in["bob"], token)).status_code == 200


async def test_a_replayed_logout_token_is_refused(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: a jti is accepted once."""
    token = provider.logout_token(sid="provider-session-bob", sub="bob-sub")
    assert (await post_token(signed_in["alice"], token)).status_code == 200
    replay = await post_token(signed_in["alice"], token)
    assert replay.status_code == 400
    assert "replayed" in (await replay.get_json())["error_description"]


@pytest.mark.parametrize("backend_kind", ["redis"])
async def test_a_replayed_logout_token_is_refused_by_another_worker(
    backend_url: str, key_prefix: str, clock: FakeClock, provider: ScriptedProvider
) -> None:
    """docs/sso.md: the jti is remembered on the backend, so a second worker refuses
    the token the first accepted (two apps, one Redis)."""
    first = sso_app(backend_url, key_prefix, clock, provider)
    second = sso_app(backend_url, key_prefix, clock, provider)
    async with first.test_app(), second.test_app():
        await sign_in(first.test_client(), provider, "alice-sub", "provider-session-alice")
        token = provider.logout_token()
        assert (await post_token(second.test_client(), token)).status_code == 200
        assert await live(first, "alice-sub") == 0  # the other worker's session ended
        replay = await post_token(first.test_client(), token)
        assert replay.status_code == 400
        assert "replayed" in (await replay.get_json())["error_description"]


async def test_a_body_that_is_not_a_form_is_refused(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: the token comes form-encoded, exactly once."""
    token = provider.logout_token()
    as_json = await signed_in["bob"].post(BACKCHANNEL, json={"logout_token": token})
    twice = await signed_in["bob"].post(
        BACKCHANNEL, data=f"logout_token={token}&logout_token={token}", headers=FORM
    )
    assert as_json.status_code == twice.status_code == 400
    assert await live(app, "alice-sub") == 2


# -- the provider unreachable ----------------------------------------------------------


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung provider)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


async def test_keys_unreachable_answers_501_and_ends_nothing(
    app: Quart, provider: ScriptedProvider, signed_in: dict[str, QuartClient]
) -> None:
    """docs/sso.md: the provider's keys cannot be fetched: 501 logout_failed (the
    provider may retry), nothing ended, the jti not spent."""
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k-new"})
    provider.down = True
    token = provider.sign(provider.logout_claims(), key=stranger)
    answer = await post_token(signed_in["bob"], token)
    assert answer.status_code == 501
    assert (await answer.get_json())["error"] == "logout_failed"
    assert await live(app, "alice-sub") == 2


async def test_a_hung_provider_fails_sign_in_within_the_timeout(
    backend_url: str, key_prefix: str, clock: FakeClock
) -> None:
    """docs/sso.md: a provider that never answers fails the sign-in (503
    provider_unavailable, no session stored) within oidc_timeout, and the
    back-channel logout (501, nothing ended) likewise."""
    with silent_listener() as port:
        app = make_app(
            backend_url,
            key_prefix=key_prefix,
            clock=clock,
            oidc_issuer=f"http://127.0.0.1:{port}",
            oidc_client_id=CLIENT_ID,
            oidc_timeout=0.5,
        )
        async with app.test_app():
            client = app.test_client()
            loop = asyncio.get_running_loop()
            began = loop.time()
            answer = await asyncio.wait_for(client.get("/_sessionwatch/oidc/login"), 10)
            assert answer.status_code == 503
            assert (await answer.get_json())["error"] == "provider_unavailable"
            assert "Set-Cookie" not in answer.headers  # no session stored
            scripted = ScriptedProvider(clock)
            token = scripted.logout_token()
            logout = await asyncio.wait_for(post_token(client, token), 10)
            assert logout.status_code == 501
            assert loop.time() - began < 5  # bounded: two exchanges of at most 0.5 s each


async def test_a_closed_provider_fails_the_callback_and_signs_nobody_in(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: the token endpoint unreachable at the callback: 503, nobody signed in."""
    client = app.test_client()
    started = await client.get("/_sessionwatch/oidc/login")
    query = provider.authorize(started.headers["Location"], sub="dave", sid="s-d")
    provider.down = True
    answer = await client.get("/_sessionwatch/oidc/callback?" + query)
    assert answer.status_code == 503
    assert await live(app, "dave") == 0


async def test_rp_initiated_logout_sends_the_browser_to_the_provider(
    app: Quart, provider: ScriptedProvider
) -> None:
    """docs/sso.md: logging out a session signed in through the provider ends it here
    and answers with the provider's end_session_endpoint (id_token_hint, client_id)."""
    client = app.test_client()
    await sign_in(client, provider, "frank-sub", "s-f")
    answer = await client.post("/_sessionwatch/oidc/logout", form={"next": "/"})
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(ISSUER + "/logout?")
    assert "id_token_hint=" in location and f"client_id={CLIENT_ID}" in location
    assert await live(app, "frank-sub") == 0


async def test_the_backend_is_not_needed_to_refuse(
    key_prefix: str, clock: FakeClock, provider: ScriptedProvider
) -> None:
    """An invalid token is refused before the backend is asked (no JWKS-less path
    reaches it): the refusal holds with the backend unreachable."""
    app = sso_app("redis://127.0.0.1:1/0", key_prefix, clock, provider)
    async with app.test_app():
        answer = await post_token(app.test_client(), provider.logout_token(nonce="n"))
        assert answer.status_code == 400
