"""A ``rediss+cluster://`` URL's TLS options reach the cluster client and every pub/sub
connection; what it cannot use is refused, never ignored (the real TLS Cluster:
tests/backends/test_backend_contract.py's ``tls_cluster`` and
tests/integration/test_cluster_failover.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from backends.test_backend_contract import (
    test_login_rotates_carrying_data_but_no_claim_state as login_contract,
)
from sessionwatch.backends import Backend, Timeouts, backend_from_url
from sessionwatch.backends.redis_cluster import RedisClusterBackend, cluster_from_url
from sessionwatch.core.exceptions import BackendUnavailable, ConfigurationError
from support.redis_cluster import RedisCluster

NODES = "127.0.0.1:7000,127.0.0.1:7001"


def test_the_ca_and_client_certificate_reach_every_node_client() -> None:
    client, options = cluster_from_url(
        f"rediss+cluster://sw:pw@{NODES}/?ssl_ca_certs=/etc/redis/ca%20bundle.pem"
        "&ssl_certfile=/etc/redis/client.pem&ssl_keyfile=/etc/redis/client.key"
        "&ssl_cert_reqs=required&ssl_check_hostname=false"
    )
    assert options == {
        "username": "sw",
        "password": "pw",
        "ssl": True,
        "ssl_ca_certs": "/etc/redis/ca bundle.pem",
        "ssl_certfile": "/etc/redis/client.pem",
        "ssl_keyfile": "/etc/redis/client.key",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": False,
    }
    node = next(iter(client.nodes_manager.startup_nodes.values()))
    assert node.connection_kwargs["ssl_ca_certs"] == "/etc/redis/ca bundle.pem"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("ssl_ca_cert=/ca.pem", "unknown option 'ssl_ca_cert'"),  # a typo is not ignored
        ("db=1", "unknown option 'db'"),
        ("ssl_ca_certs=/a.pem&ssl_ca_certs=/b.pem", "exactly one value"),
        ("ssl_ca_certs=", "exactly one value"),
        ("ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
        ("ssl_check_hostname=perhaps", "ssl_check_hostname must be true or false"),
        ("ssl_ca_certs", "malformed query"),
    ],
)
def test_what_it_cannot_use_is_refused(query: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as refused:
        backend_from_url(f"rediss+cluster://sw:s3cret@{NODES}/?{query}")
    assert "s3cret" not in str(refused.value)


def test_tls_options_on_a_plain_cluster_url_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs the rediss\\+cluster:// scheme"):
        cluster_from_url(f"redis+cluster://{NODES}/?ssl_ca_certs=/ca.pem")


def test_a_url_without_a_query_keeps_its_options() -> None:
    _, options = cluster_from_url(f"rediss+cluster://{NODES}/")
    assert options == {"ssl": True}


# -- on a real cluster with TLS only and the service's ACL user (started once per run) --


@pytest.fixture(name="tls_backend")
async def _tls_backend(redis_tls_cluster: RedisCluster) -> AsyncIterator[Backend]:
    backend = backend_from_url(redis_tls_cluster.url, key_prefix=f"sw:smoke:{uuid.uuid4().hex}:")
    await asyncio.wait_for(backend.connect(), 15)
    try:
        yield backend
    finally:
        await asyncio.wait_for(backend.disconnect(), 15)


async def test_the_contract_smoke_on_the_tls_cluster(
    tls_backend: Backend, timeouts: Timeouts
) -> None:
    """One contract body (a cross-slot login: scripts on two slots, sharded pub/sub on
    two shards) over TLS as the ACL user; the whole suite runs there in the extended run."""
    await asyncio.wait_for(login_contract(tls_backend, timeouts), 30)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        # the system's CAs, not the cluster's
        pytest.param(lambda url: url.split("?")[0], "certificate verify failed", id="no-ca"),
        pytest.param(
            lambda url: url.replace("sw-password-", "wrong-"),
            "invalid username-password pair",
            id="wrong-password",
        ),
        pytest.param(
            lambda url: url.replace("sw:sw-password-", "default:sw-password-"),
            "invalid username-password pair",
            id="default-user",
        ),
    ],
)
async def test_the_tls_cluster_refuses_a_wrong_ca_or_credentials(
    redis_tls_cluster: RedisCluster, change: Callable[[str], str], why: str
) -> None:
    backend = backend_from_url(change(redis_tls_cluster.url), key_prefix="sw:refused:")
    with pytest.raises(BackendUnavailable, match=why):
        try:
            await asyncio.wait_for(backend.connect(), 15)
            await asyncio.wait_for(backend.ping(), 15)
        finally:
            await asyncio.wait_for(backend.disconnect(), 15)


async def test_the_acl_user_is_confined_to_its_prefix(redis_tls_cluster: RedisCluster) -> None:
    """A key prefix outside ``~sw:*``: every script is refused (503 for the service)."""
    backend = backend_from_url(redis_tls_cluster.url, key_prefix="other:")
    try:
        await asyncio.wait_for(backend.connect(), 15)
        with pytest.raises(BackendUnavailable, match=r"NOPERM|no permissions"):
            await asyncio.wait_for(backend.epoch(), 15)
    finally:
        await asyncio.wait_for(backend.disconnect(), 15)


async def test_an_apps_own_cluster_client_lends_its_credentials_to_every_connection(
    redis_tls_cluster: RedisCluster, timeouts: Timeouts
) -> None:
    """``RedisClusterBackend(client=…)``: the scripts' and the subscription's own
    connections use the given client's password and TLS (they took only the URL's,
    so every script and subscription of such a backend was refused)."""
    client, _ = cluster_from_url(redis_tls_cluster.url, decode_responses=True)
    backend = RedisClusterBackend(client=client, key_prefix=f"sw:given:{uuid.uuid4().hex}:")
    await asyncio.wait_for(backend.connect(), 15)
    try:
        await asyncio.wait_for(login_contract(backend, timeouts), 30)
    finally:
        await asyncio.wait_for(backend.disconnect(), 15)
