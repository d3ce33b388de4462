"""Durable ends, black-box (issue 23): a revocation the service acknowledged survives a
Sentinel failover; one no replica confirmed is answered 503, and repeating it after the
failover makes it hold."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from sessionwatch.backends.durable_ends import RECHECK_EVERY, REPLICA_GRACE
from sessionwatch.client import SessionAPI, SessionAPIError
from support.replicated_redis import replicated_redis, wait_until
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

API_KEY = "durable-ends-test-key-0123456789abcdef"
BIG_WRITE = 48 * 1024 * 1024  # more than loopback socket buffers hold: it stays queued


def verify(service: ServiceProcess, cookie: str) -> int:
    """The status ``/verify`` answers for a request carrying ``cookie``."""
    request = urllib.request.Request(
        service.url + "/_sessionwatch/verify",
        headers={"Cookie": cookie, "X-Original-Method": "GET", "X-Original-URI": "/"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_revocation_is_never_acknowledged_and_then_undone_by_a_failover() -> None:
    with replicated_redis() as redis_pair:
        service = ServiceProcess(
            redis_pair.sentinel_url,
            env={"SESSIONWATCH_API_KEYS": API_KEY},
            key_prefix=f"durable:{uuid.uuid4().hex[:8]}:",
        )
        with service:
            api = SessionAPI(service.url, API_KEY)
            signed_in = api.login("victim")
            cookie = f"{signed_in['cookie']['name']}={signed_in['cookie']['value']}"
            assert verify(service, cookie) == 204
            wait_until(redis_pair.caught_up, 10, "the sign-in to reach the replica")

            # The replica stalls; the primary queues a large write for it, then the end.
            stall = subprocess.Popen(
                ["redis-cli", "-p", str(redis_pair.replica.port), "DEBUG", "SLEEP", "4"],
                stdout=subprocess.DEVNULL,
            )
            try:
                wait_until(redis_pair.replica_stalled, 5, "the replica to stall")
                with redis_pair.client(redis_pair.primary) as primary:
                    primary.set("ballast", "x" * BIG_WRITE)
                started = time.monotonic()
                try:
                    api.revoke(user="victim")
                    answer = (200, "ok")
                except SessionAPIError as error:
                    answer = (error.status, error.code)
                revoke_seconds = time.monotonic() - started
                redis_pair.primary.process.kill()  # type: ignore[union-attr]
                redis_pair.primary.process.wait(timeout=5)  # type: ignore[union-attr]
            finally:
                stall.wait(timeout=10)

            replica_port = redis_pair.replica.port
            wait_until(lambda: redis_pair.master_port() == replica_port, 30, "the promotion")
            wait_until(lambda: verify(service, cookie) != 503, 30, "the service to follow")
            after_failover = verify(service, cookie)

            # Never both: acknowledged (200) and alive again after the failover (204).
            assert (answer[0], after_failover) != (200, 204), (
                f"revocation answered {answer} in {revoke_seconds:.3f} s, "
                f"then /verify {after_failover} after the failover"
            )
            # What happens instead: the revocation is answered as failed, in the bounded
            # wait (1 s by default), and repeating it on the new primary makes it hold.
            assert answer == (503, "backend_unavailable")
            assert revoke_seconds < 3
            # Repeated as a caller of a 503 would (bounded): the new primary has no
            # replica (the old one is dead), so ``auto`` answers 503 until its grace
            # for the replica it last saw has passed (REPLICA_GRACE: the replica may
            # have been promoted by a failover this primary did not see), then
            # acknowledges unreplicated. Every repeat ends the session on the new
            # primary at once: it never passes again.
            deadline = time.monotonic() + REPLICA_GRACE + RECHECK_EVERY + 15
            attempt = 0
            while True:
                attempt += 1
                try:
                    api.revoke(user="victim")
                    break
                except SessionAPIError as error:
                    assert error.status == 503, error
                    # Never alive meanwhile: 401 revoked, or the refusal nginx carries as
                    # 403 (a 503 backend_unavailable while the new primary settles).
                    assert verify(service, cookie) in (401, 403)
                    assert time.monotonic() < deadline, "the repeated revocation never held"
                    time.sleep(1)
            print(f"revocation repeated after the failover held at attempt {attempt}")
            assert verify(service, cookie) == 401
