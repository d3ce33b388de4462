"""A private primary, its replica and one Sentinel on loopback, for failover tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from support.redis_server import RedisServer, free_port, terminate

__all__ = ["ReplicatedRedis", "replicated_redis", "wait_until"]

SERVICE = "primary"


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class ReplicatedRedis:
    primary: RedisServer
    replica: RedisServer
    sentinel_port: int

    @property
    def sentinel_url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}?db=0"

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, socket_timeout=10, decode_responses=True)

    def master_port(self) -> int:
        sentinel = redis.Redis(port=self.sentinel_port, socket_timeout=2, decode_responses=True)
        with sentinel:
            address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(address[1])

    def replica_stalled(self) -> bool:
        """Whether the replica fails to answer a PING within 0.2 s (``DEBUG SLEEP``)."""
        with socket.create_connection(("127.0.0.1", self.replica.port), timeout=0.2) as probe:
            probe.sendall(b"PING\r\n")
            try:
                probe.recv(16)
            except TimeoutError:
                return True
        return False

    def caught_up(self) -> bool:
        """Whether the replica is past its first sync and has acknowledged everything
        the primary wrote."""
        with self.client(self.primary) as primary:
            info = primary.info("replication")
        replica = info.get("slave0")
        return (
            bool(replica)
            and replica["state"] == "online"
            and int(replica["offset"]) >= int(info["master_repl_offset"])
        )


@contextlib.contextmanager
def replicated_redis() -> Iterator[ReplicatedRedis]:
    """A primary, a replica (``DEBUG`` enabled, to stall it) and a Sentinel that fails
    over half a second after the primary stops answering; all stopped on exit."""
    with RedisServer(args=("--repl-diskless-sync-delay", "0")) as primary:
        replica = RedisServer(
            args=("--replicaof", "127.0.0.1", str(primary.port), "--enable-debug-command", "yes")
        )
        with replica:
            pair = ReplicatedRedis(primary, replica, free_port())
            wait_until(pair.caught_up, 10, "the replica to sync")
            directory = Path(tempfile.mkdtemp(prefix="sessionwatch-sentinel-"))
            (directory / "sentinel.conf").write_text(
                f"port {pair.sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 500\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            process = subprocess.Popen(
                [primary.binary, str(directory / "sentinel.conf"), "--sentinel"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:

                def knows_replica() -> bool:
                    try:
                        sentinel = redis.Redis(port=pair.sentinel_port, socket_timeout=1)
                        with sentinel:
                            return bool(sentinel.execute_command("SENTINEL", "REPLICAS", SERVICE))
                    except redis.RedisError:
                        return False

                wait_until(knows_replica, 15, "Sentinel to find the replica")
                yield pair
            finally:
                terminate(process)
                shutil.rmtree(directory, ignore_errors=True)
