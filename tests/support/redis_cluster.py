"""A private 6-node Redis Cluster (3 primaries, 3 replicas) on free loopback ports.

Each node is a real ``redis-server --cluster-enabled yes`` with its own directory; the
cluster is formed by ``redis-cli --cluster create … --cluster-replicas 1 --cluster-yes``
and is ready when every node reports ``cluster_state:ok`` and agrees on the slot map.
:meth:`RedisCluster.cleanup` always stops every process and removes the directories.
A short ``cluster-node-timeout`` (and no replica validity limit: a replica that has just
been resynchronised may still take over) lets the failover tests see a replica take over
within a few seconds of a primary being killed.

``RedisCluster(tls=True, user=AclUser(...))`` is the secure variant: TLS only (``port 0``,
``tls-port``, ``tls-cluster yes``, ``tls-replication yes``; a CA and a node certificate
made for the run, :mod:`.certificates`), the default user locked behind a password the
harness alone uses (``requirepass``/``masterauth``), and the service's own ACL user;
:attr:`RedisCluster.url` is then ``rediss+cluster://user:password@…/?ssl_ca_certs=…``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from .certificates import TlsFiles, make_certificates
from .redis_server import terminate

__all__ = [
    "SERVICE_COMMANDS",
    "SERVICE_USER",
    "AclUser",
    "ClusterNode",
    "RedisCluster",
    "installed",
]

_NODE_TIMEOUT_MS = 1500


def installed() -> str:
    """The path of redis-server; FileNotFoundError unless redis-server and redis-cli are
    both installed."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        raise FileNotFoundError("redis-server / redis-cli are not installed")
    return binary


def _free_cluster_port() -> int:
    """A port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass(frozen=True)
class AclUser:
    """An ACL user of every node: ``user <name> on ><password> <rules…>``."""

    name: str
    password: str
    rules: tuple[str, ...]


# The service's ACL user on the secure cluster: its keys and channels (prefix sw:) and
# the commands it needs, nothing else — docs/deployment.md's list, "Redis ACL user".
SERVICE_COMMANDS = (
    # the client: cluster topology, slot migrations, the commands table, health
    "+cluster|slots", "+asking", "+command", "+ping",
    # the scripts, loaded once, and what they call
    "+evalsha", "+script|load", "+time", "+get", "+set", "+del", "+hget", "+hmget",
    "+hgetall", "+hincrby", "+hset", "+pexpire", "+pttl", "+zadd", "+zcard", "+zcount",
    "+zrange", "+zrangebyscore", "+zrem", "+zremrangebyrank", "+zremrangebyscore", "+zscore",
    # the audit trail (docs/audit.md): the scripts append and remember devices; hooks,
    # export and tail read it
    "+exists", "+xadd", "+xtrim", "+xgroup|create", "+hlen", "+xreadgroup",
    "+xautoclaim", "+xinfo|groups", "+xrange", "+xrevrange", "+xack",
    # sharded pub/sub: the scripts publish, each worker's hub subscribes
    "+spublish", "+ssubscribe", "+sunsubscribe",
    # durable ends: how many replicas are online (INFO replication), then WAIT for one
    "+info", "+wait",
    # the admin tools' listing of every user (SCAN MATCH over the user indexes)
    "+scan",
)  # fmt: skip
SERVICE_USER = AclUser(
    "sw", "sw-password-" + secrets.token_hex(8), ("~sw:*", "&sw:*", "-@all", *SERVICE_COMMANDS)
)


def _command(connection: list[str], *args: str, timeout: float = 5.0) -> str:
    """One command through ``redis-cli`` (raw output); ``connection``: its flags."""
    done = subprocess.run(
        ["redis-cli", *connection, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout


@dataclass
class ClusterNode:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)
    tls: TlsFiles | None = None  # TLS only: ``port`` is the tls-port
    admin_password: str | None = None  # the default user's (requirepass)
    users: tuple[AclUser, ...] = ()

    def __post_init__(self) -> None:
        self.log = self.directory / "redis.log"

    @property
    def connection(self) -> list[str]:
        """``redis-cli``'s flags to reach this node as the harness (default user)."""
        flags = ["-h", "127.0.0.1", "-p", str(self.port)]
        if self.tls is not None:
            flags += ["--tls", "--cacert", str(self.tls.ca)]
        if self.admin_password is not None:
            flags += ["--no-auth-warning", "-a", self.admin_password]
        return flags

    def cli(self, *args: str, timeout: float = 5.0) -> str:
        """One command on this node through ``redis-cli`` (raw output)."""
        return _command(self.connection, *args, timeout=timeout)

    def _security_args(self) -> list[str]:
        args: list[str] = []
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca),
                "--tls-cluster", "yes",
                "--tls-replication", "yes",
                # clients (the service) need no certificate of their own; the nodes
                # present theirs to each other
                "--tls-auth-clients", "optional",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.admin_password is not None:
            args += ["--requirepass", self.admin_password, "--masterauth", self.admin_password]
        for user in self.users:
            args += ["--user", user.name, "on", f">{user.password}", *user.rules]
        return args

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, binary: str) -> None:
        self.process = subprocess.Popen(
            [
                binary,
                *self._security_args(),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.directory / "nodes.conf"),
                "--cluster-node-timeout", str(_NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(self.log),
                "--maxclients", "20000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def alive(self) -> bool:
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                )
                if self.tls is not None:
                    context = ssl.create_default_context(cafile=str(self.tls.ca))
                    sock = stack.enter_context(
                        context.wrap_socket(sock, server_hostname="127.0.0.1")
                    )
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:  # ssl.SSLError too
            return False

    def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict (empty when the node does not answer)."""
        out = self.cli("cluster", "info", timeout=2)
        pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def role(self) -> str:
        out = self.cli("role", timeout=2)
        return out.splitlines()[0].strip() if out else ""

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a goodbye (as a crashed host would)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None


class RedisCluster:
    """Start, inspect, break and always tear down a 3 + 3 node cluster."""

    def __init__(
        self, nodes: int = 6, replicas: int = 1, *, tls: bool = False, user: AclUser | None = None
    ) -> None:
        self.binary = installed()
        self.replicas = replicas
        self.user = user
        self.directory = Path(tempfile.mkdtemp(prefix="sessionwatch-cluster-"))
        self.tls: TlsFiles | None = None
        if tls:
            (self.directory / "tls").mkdir()
            try:
                self.tls = make_certificates(self.directory / "tls")
            except BaseException:
                shutil.rmtree(self.directory, ignore_errors=True)
                raise
        admin = secrets.token_urlsafe(16) if user is not None else None
        self.nodes: list[ClusterNode] = []
        for index in range(nodes):
            directory = self.directory / str(index)
            directory.mkdir()
            self.nodes.append(
                ClusterNode(
                    _free_cluster_port(),
                    directory,
                    tls=self.tls,
                    admin_password=admin,
                    users=(user,) if user is not None else (),
                )
            )

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a start-up node (TLS:
        ``rediss+cluster://``, the ACL user's credentials and the CA)."""
        nodes = ",".join(n.address for n in self.nodes)
        if self.tls is None and self.user is None:
            return f"redis+cluster://{nodes}/"
        scheme = "rediss+cluster" if self.tls is not None else "redis+cluster"
        credentials = ""
        if self.user is not None:
            credentials = f"{quote(self.user.name, safe='')}:{quote(self.user.password, safe='')}@"
        query = f"?ssl_ca_certs={quote(str(self.tls.ca))}" if self.tls is not None else ""
        return f"{scheme}://{credentials}{nodes}/{query}"

    def start(self, timeout: float = 60.0) -> None:
        for node in self.nodes:
            node.start(self.binary)
        deadline = time.monotonic() + 10
        while not all(n.alive() for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("cluster nodes did not start")
            time.sleep(0.05)
        created = subprocess.run(
            ["redis-cli", *self.nodes[0].connection[4:], "--cluster", "create",
             *(n.address for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-2000:]}")
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every running node says ``cluster_state:ok``, all slots are assigned
        and the live nodes agree on the primaries (the replicas see the same map)."""
        deadline = time.monotonic() + timeout
        while True:
            running = [n for n in self.nodes if n.process is not None]
            infos = [n.info() for n in running]
            ok = all(
                i.get("cluster_state") == "ok" and i.get("cluster_slots_assigned") == "16384"
                for i in infos
            )
            if (
                ok
                and self._served() == 16384
                and len({self._primary_view(n) for n in running}) == 1
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ok after {timeout}s: {infos}")
            time.sleep(0.1)

    def wait_replicated(self, primary: ClusterNode, timeout: float = 30.0) -> None:
        """Until every replica of ``primary`` is linked (its initial sync done: right
        after ``--cluster create`` a replica waits in ``wait_bgsave`` for the diskless
        sync's delay, holding nothing) and has everything the primary had written when
        called. Replication is asynchronous: a primary killed before that loses what
        its replica lacks (reliability.md, not guaranteed)."""
        replication = self._replication(primary)
        offset = int(replication.get("master_repl_offset", "0"))
        replicas = self.replicas_of(primary)
        deadline = time.monotonic() + timeout
        while True:
            states = [self._replication(r) for r in replicas]
            if replicas and all(
                s.get("master_link_status") == "up"
                and int(s.get("slave_repl_offset", "-1")) >= offset
                for s in states
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas of {primary.address} not in sync: {states}")
            time.sleep(0.05)

    def _replication(self, node: ClusterNode) -> dict[str, str]:
        out = node.cli("info", "replication", timeout=2)
        pairs = (line.split(":", 1) for line in out.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def _served(self) -> int:
        """How many slots running primaries say they serve themselves."""
        total = 0
        for node in self.nodes:
            mine = self._myself(node) if node.process is not None else []
            if mine and "master" in mine[2]:
                for item in mine[8:]:
                    low, _, high = item.partition("-")
                    if low.isdigit():
                        total += int(high or low) - int(low) + 1
        return total

    def _primary_view(self, node: ClusterNode) -> tuple[str, ...]:
        lines = node.cli("cluster", "nodes", timeout=2).splitlines()
        return tuple(
            sorted(
                line.split()[1].split("@")[0]
                for line in lines
                if "master" in line.split()[2]
                and "fail" not in line.split()[2]
                and len(line.split()) > 8
            )
        )

    def primaries(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None and n.role() == "master"]

    def _myself(self, node: ClusterNode) -> list[str]:
        """This node's own line of ``CLUSTER NODES``, split."""
        for line in node.cli("cluster", "nodes").splitlines():
            parts = line.split()
            if len(parts) > 3 and "myself" in parts[2]:
                return parts
        return []

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        primary_id = self._myself(primary)[0]
        found = []
        for node in self.nodes:
            if node.process is None or node is primary:
                continue
            mine = self._myself(node)
            if mine and "slave" in mine[2] and mine[3] == primary_id:
                found.append(node)
        return found

    def node_for_key(self, key: str) -> ClusterNode:
        """The primary that serves ``key`` now."""
        return self.slot_map()[self.keyslot(key)]

    def slot_map(self) -> dict[int, ClusterNode]:
        """Slot → the running primary that says it serves it."""
        owners: dict[int, ClusterNode] = {}
        for node in self.primaries():
            for item in self._myself(node)[8:]:
                low, _, high = item.partition("-")
                if low.isdigit():
                    for slot in range(int(low), int(high or low) + 1):
                        owners[slot] = node
        return owners

    def keyslot(self, key: str) -> int:
        for node in self.nodes:
            if node.process is not None:
                out = node.cli("cluster", "keyslot", key).strip()
                if out.isdigit():
                    return int(out)
        raise RuntimeError("no node answers")

    def failover(self, replica: ClusterNode, timeout: float = 30.0) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (a manual, coordinated failover) and wait
        until it is a primary and the cluster is ok again."""
        out = replica.cli("cluster", "failover")
        if "OK" not in out:
            raise RuntimeError(f"CLUSTER FAILOVER refused: {out!r}")
        deadline = time.monotonic() + timeout
        while replica.role() != "master":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not take over")
            time.sleep(0.05)
        self.wait_ok(timeout)

    def begin_migration(self, slot: int, target: ClusterNode) -> ClusterNode:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner (returned):
        the owner now answers ``ASK`` for a key of the slot it does not hold."""
        source = self.slot_map()[slot]
        source_id, target_id = self._myself(source)[0], self._myself(target)[0]
        target.cli("cluster", "setslot", str(slot), "importing", source_id)
        source.cli("cluster", "setslot", str(slot), "migrating", target_id)
        return source

    def migrate_slot(self, slot: int, target: ClusterNode) -> None:
        """Move ``slot`` (and its keys) to primary ``target`` the way ``redis-cli
        --cluster reshard`` does: IMPORTING/MIGRATING, MIGRATE the keys, SETSLOT NODE
        (a migration :meth:`begin_migration` began is finished)."""
        source = self.begin_migration(slot, target)
        target_id = self._myself(target)[0]
        for _ in range(1000):  # bounded: 100 keys a round
            keys = source.cli("cluster", "getkeysinslot", str(slot), "100").split()
            if not keys:
                break
            source.cli("migrate", "127.0.0.1", str(target.port), "", "0", "5000",
                     "keys", *keys)  # fmt: skip
        for node in self.primaries():
            node.cli("cluster", "setslot", str(slot), "node", target_id)
        self.wait_ok()

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again (it rejoins from its nodes.conf)."""
        node.start(self.binary)
        deadline = time.monotonic() + 10
        while not node.alive():
            if time.monotonic() > deadline:
                raise RuntimeError("node did not restart")
            time.sleep(0.05)

    def command(self, node: ClusterNode, *args: str) -> str:
        return node.cli(*args)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
