"""The fault suite's topology, from real processes.

- **Network**: with ``ip netns`` (root), every "host" is a network namespace linked by a
  veth pair to a bridge in the root namespace; Redis and its Sentinels share one more
  namespace. Addresses come from the benchmarking range 198.18.0.0/15 (RFC 2544), one
  /24 per run; all traffic goes to namespaces this run created. Names carry the
  prefix ``swf`` and the runner's pid in hex, so stale ones (of a dead runner) are swept
  at start and nothing clashes with a run in parallel. Without ``ip netns`` everything
  runs on loopback and the partition fault is left out (the report says so).
- **Redis**: a primary, a replica and 3 Sentinels (quorum 2), each a ``redis-server``.
- **Hosts**: each runs ``sessionwatch serve --workers 2`` on ``redis+sentinel://``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from support.processes import ManagedProcess
from support.redis_server import free_port

__all__ = ["SERVICE", "Host", "Network", "RedisNode", "Topology"]

PREFIX = "swf"
SERVICE = "primary"  # the Sentinel service name
ORIGIN = "http://app.test"  # the one page origin every client sends (a load balancer's)
DOWN_AFTER_MS = 8_000  # longer than DEBUG SLEEP / CLIENT PAUSE / SIGSTOP faults last
SERVICE_PORT = 8000
SESSIONS_PER_USER = 2
# The hosts' policy, from the environment as in production: one tab, SESSIONS_PER_USER
# sessions per user, the oldest evicted past it.
POLICY_ENV = {
    "SESSIONWATCH_TABS_PER_SESSION": "1",
    "SESSIONWATCH_SESSIONS_PER_USER": str(SESSIONS_PER_USER),
    "SESSIONWATCH_ON_LIMIT": "evict_oldest",
}
API_KEY = secrets.token_urlsafe(32)  # the workload signs users in through the session API
# The slow link of the ``slow_link`` fault (Network.slow).
SLOW_DELAY_MS = 150
SLOW_LOSS = 3
SLOW_RATE = "1mbit"
# A wall clock the clock_step fault can step (its sitecustomize.py)
CLOCK_SHIM = Path(__file__).resolve().parents[1] / "support" / "clockshim"


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Remove namespaces and links of fault-suite runs whose runner is gone."""
    removed = []
    listing = _run("ip", "netns", "list", check=False).stdout.split()
    links = _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    names = [n for n in listing if n.startswith(PREFIX)]
    names += [line.split(":")[1].strip().split("@")[0] for line in links if f": {PREFIX}" in line]
    for name in names:
        owner = name[len(PREFIX) :].split("-")[0]
        try:
            pid = int(owner, 16)
        except ValueError:
            continue
        if _alive(pid):
            continue
        if name in listing:
            _run("ip", "netns", "del", name, check=False)
        else:
            _run("ip", "link", "del", name, check=False)
        removed.append(name)
    return removed


class Network:
    """Namespaces on a bridge (``netns``), or plain loopback when that is impossible."""

    def __init__(self, *, use_netns: bool = True) -> None:
        self.tag = f"{PREFIX}{os.getpid():x}"
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.inside: dict[str, str] = {}  # namespace -> its end of the veth pair
        self.netns = use_netns and self._can_netns()
        self.subnet = self._free_subnet() if self.netns else (18, 0)
        self.reason = "" if self.netns else self._why_not
        self.bridge_address = self.address(1) if self.netns else "127.0.0.1"

    _why_not = "ip netns is unavailable (not root, or no ip tool): hosts run on loopback"

    def _can_netns(self) -> bool:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            return False
        sweep_stale()
        probe = f"{self.tag}-probe"
        made = _run("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            self._why_not = f"ip netns add failed ({made.stderr.strip()}): hosts run on loopback"
            return False
        _run("ip", "netns", "del", probe, check=False)
        return True

    @staticmethod
    def _free_subnet() -> tuple[int, int]:
        """A /24 of 198.18.0.0/15 no interface of this machine uses yet."""
        used = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
        start = os.getpid() % 512
        for step in range(512):
            index = (start + step) % 512
            second, third = 18 + index // 256, index % 256
            if f" 198.{second}.{third}." not in used:
                return second, third
        raise RuntimeError("no free /24 in 198.18.0.0/15")

    def address(self, last: int) -> str:
        second, third = self.subnet
        return f"198.{second}.{third}.{last}"

    def setup(self) -> None:
        if not self.netns:
            return
        bridge = f"{self.tag}-br"
        _run("ip", "link", "add", bridge, "type", "bridge")
        self.links.append(bridge)
        _run("ip", "addr", "add", f"{self.bridge_address}/24", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")

    def namespace(self, name: str, last: int) -> tuple[str, str]:
        """A namespace linked to the bridge with address ``.last``: (name, address)."""
        if not self.netns:
            return "", "127.0.0.1"
        ns = f"{self.tag}-{name}"
        outside, inside = f"{self.tag}-{name}", f"{self.tag}-{name}i"  # at most 15 chars
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        self.links.append(outside)
        _run("ip", "link", "set", inside, "netns", ns)
        self.inside[ns] = inside
        _run("ip", "link", "set", outside, "master", f"{self.tag}-br")
        _run("ip", "link", "set", outside, "up")
        address = self.address(last)
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inside)
        _run("ip", "-n", ns, "link", "set", inside, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        return ns, address

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns] if ns else []

    def partition(self, ns: str, addresses: list[str], *, cut: bool) -> None:
        """Drop (``cut``) or restore every packet from namespace ``ns`` to ``addresses``:
        a blackhole route, so packets vanish without an error, as on a broken link."""
        for address in addresses:
            _run(
                "ip",
                "-n",
                ns,
                "route",
                "del" if not cut else "add",
                "blackhole",
                f"{address}/32",
                check=cut,
            )

    def slow(self, ns: str, *, on: bool) -> str:
        """Make (``on``) or unmake the link of namespace ``ns`` slow and lossy: ``tc
        netem`` delay and loss when the kernel has it; else (no ``sch_netem``, as on this
        project's machines) a ``tbf`` rate limit, whose queue delays what bursts, and
        random loss both ways from an nftables rule (``numgen``). Returns what it did."""
        link = self.inside[ns]
        if not on:
            _run("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", link, "root", check=False)
            _run("ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "swslow", check=False)
            return ""
        netem = (
            "netem",
            "delay",
            f"{SLOW_DELAY_MS}ms",
            f"{SLOW_DELAY_MS // 2}ms",
            "loss",
            f"{SLOW_LOSS}%",
        )
        tc = ("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", link, "root")
        if _run(*tc, *netem, check=False).returncode == 0:
            return f"netem delay {SLOW_DELAY_MS}±{SLOW_DELAY_MS // 2} ms, loss {SLOW_LOSS} %"
        _run(*tc, "tbf", "rate", SLOW_RATE, "burst", "16kb", "latency", "400ms")
        rule = f"numgen random mod 100 < {SLOW_LOSS} drop"
        table = (
            "table inet swslow {\n"
            f"  chain out {{ type filter hook output priority 0; policy accept; {rule}; }}\n"
            f"  chain in {{ type filter hook input priority 0; policy accept; {rule}; }}\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=table,
            text=True,
            check=True,
            timeout=30,
        )
        return f"no netem in this kernel: tbf {SLOW_RATE} (queueing delay) and nftables loss {SLOW_LOSS} % each way"

    def teardown(self) -> None:
        for ns in reversed(self.namespaces):
            _run("ip", "netns", "del", ns, check=False)
        for link in reversed(self.links):
            _run("ip", "link", "del", link, check=False)
        self.namespaces.clear()
        self.links.clear()


def _free_port(address: str) -> int:
    """A free port (each namespace has its own ports; on loopback they are shared)."""
    return free_port()


@dataclass
class RedisNode:
    """One ``redis-server`` (data node or Sentinel) in namespace ``ns``."""

    name: str
    ns: str
    address: str
    port: int
    directory: Path
    prefix: list[str]
    sentinel: bool = False
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, replica_of: tuple[str, int] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        binds = " ".join(dict.fromkeys([self.address, "127.0.0.1"]))
        if self.sentinel:
            config = self.directory / "sentinel.conf"
            if not config.exists():  # Sentinel rewrites its config: keep what it learned
                config.write_text("\n".join(self.extra) + "\n")
            command = [
                binary,
                str(config),
                "--sentinel",
                "--port",
                str(self.port),
                "--bind",
                *binds.split(),
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
            ]
        else:
            command = [
                binary,
                "--port",
                str(self.port),
                "--bind",
                *binds.split(),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--enable-debug-command",
                "local",
                "--replica-announce-ip",
                self.address,
                "--maxclients",
                "10000",
            ]
            if replica_of is not None:
                command += ["--replicaof", replica_of[0], str(replica_of[1])]
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            [*self.prefix, *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.cli("PING", check=False).strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {self.log_tail()}")

    def cli(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """``redis-cli`` from inside the node's namespace (so ``DEBUG`` counts as local)."""
        done = subprocess.run(
            [*self.prefix, "redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and (done.returncode != 0 or done.stdout.startswith("ERR")):
            raise RuntimeError(
                f"{self.name}: redis-cli {' '.join(args)}: {done.stdout}{done.stderr}"
            )
        return done.stdout

    def cli_background(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.prefix, "redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def signal(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def shutdown(self, *, save: bool) -> None:
        """``SHUTDOWN SAVE`` (the data survives the restart) or ``NOSAVE`` (it does not)."""
        if self.process is None:
            return
        self.cli("SHUTDOWN", "SAVE" if save else "NOSAVE", check=False)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None
        if not save:
            (self.directory / "dump.rdb").unlink(missing_ok=True)

    def log_tail(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class Host(ManagedProcess):
    """``sessionwatch serve --workers 2`` in one namespace (or on loopback)."""

    ready_path = "/readyz"

    def __init__(
        self, name: str, ns: str, address: str, prefix: list[str], redis_url: str, directory: Path
    ) -> None:
        self.name = name
        super().__init__()
        self.ns = ns
        self.address = address
        if ns:
            self.port = SERVICE_PORT
        self.metrics_dir = directory / f"{name}-metrics"
        # This host's wall clock runs this many seconds off (the clock_step fault).
        self.clock_file = directory / f"{name}-clock-offset"
        self.clock_file.write_text("0\n")
        path = self.env.get("PYTHONPATH", "")
        self.env.update(
            {
                "SECRET_KEY": "faults-secret-key-0123456789abcdef",
                "REDIS_URL": redis_url,
                "LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
                "SESSIONWATCH_ALLOWED_ORIGINS": ORIGIN,
                "SESSIONWATCH_API_KEYS": API_KEY,
                "SESSIONWATCH_FORWARD_AUTH": "traefik",  # workload.PROTECTED's headers
                **POLICY_ENV,
                "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
                "FAULTS_CLOCK_OFFSET_FILE": str(self.clock_file),
                "PYTHONPATH": str(CLOCK_SHIM) + (":" + path if path else ""),
                "PATH": str(Path(sys.executable).parent) + ":" + self.env.get("PATH", ""),
            }
        )
        self.command = [
            *prefix,
            *(sys.executable, "-m", "sessionwatch", "serve", "--host", address),
            *("--port", str(self.port), "--workers", "2", "--backend", redis_url),
        ]

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self, timeout: float = 60) -> None:
        shutil.rmtree(self.metrics_dir, ignore_errors=True)
        self.metrics_dir.mkdir(parents=True)
        super().start(timeout)

    def probe(self, path: str, timeout: float = 2.0) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, OSError):
            return 0

    def step_clock(self, offset: float) -> None:
        """Set this host's wall clock ``offset`` seconds off the real one."""
        self.clock_file.write_text(f"{offset}\n")

    def workers(self) -> list[int]:
        """The worker processes (children of the supervisor, itself a child of
        ``ip netns exec`` only until it execs)."""
        if self.process is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_text(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
            # spawned workers, not multiprocessing's resource tracker; not zombies
            if int(fields[1]) == self.process.pid and "spawn_main" in cmdline and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return found

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None


class Topology:
    """The whole system under test: network, Redis + Sentinels, hosts."""

    def __init__(self, *, hosts: int = 2, use_netns: bool = True) -> None:
        self.net = Network(use_netns=use_netns)
        self.directory = Path(tempfile.mkdtemp(prefix="sessionwatch-faults-"))
        self.host_count = hosts
        self.nodes: list[RedisNode] = []
        self.sentinels: list[RedisNode] = []
        self.hosts: list[Host] = []
        self.redis_ns = ""
        self.redis_address = "127.0.0.1"
        self.keep = False  # keep the logs (a run with violations)

    @property
    def mode(self) -> str:
        return "netns" if self.net.netns else "loopback"

    def _node(
        self, name: str, *, sentinel: bool = False, extra: list[str] | None = None
    ) -> RedisNode:
        directory = self.directory / name
        directory.mkdir()
        port = _free_port(self.redis_address)
        return RedisNode(
            name,
            self.redis_ns,
            self.redis_address,
            port,
            directory,
            self.net.exec_prefix(self.redis_ns),
            sentinel,
            extra or [],
        )

    def start(self) -> None:
        try:
            self.net.setup()
            self.redis_ns, self.redis_address = self.net.namespace("r", 2)
            first = self._node("redis-a")
            second = self._node("redis-b")
            first.start()
            second.start(replica_of=(first.address, first.port))
            self.nodes = [first, second]
            for index in range(3):
                sentinel = self._node(
                    f"sentinel-{index}",
                    sentinel=True,
                    extra=[
                        f"sentinel monitor {SERVICE} {first.address} {first.port} 2",
                        f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
                        f"sentinel failover-timeout {SERVICE} 20000",
                        f"sentinel parallel-syncs {SERVICE} 1",
                        f"sentinel announce-ip {self.redis_address}",
                    ],
                )
                sentinel.start()
                self.sentinels.append(sentinel)
            self._wait_replicated()
            url = (
                "redis+sentinel://"
                + ",".join(f"{s.address}:{s.port}" for s in self.sentinels)
                + f"/{SERVICE}"
            )
            for index in range(self.host_count):
                ns, address = self.net.namespace(f"h{index + 1}", 11 + index)
                host = Host(
                    f"host{index + 1}", ns, address, self.net.exec_prefix(ns), url, self.directory
                )
                self.hosts.append(host)
            for host in self.hosts:
                host.start()
        except BaseException:
            self.stop()
            raise

    def _wait_replicated(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            known = [self.primary_port(s) for s in self.sentinels]
            replicas = self.sentinels[0].cli("SENTINEL", "REPLICAS", SERVICE, check=False)
            if all(p == self.nodes[0].port for p in known) and str(self.nodes[1].port) in replicas:
                return
            time.sleep(0.2)
        raise RuntimeError("Sentinels did not agree on the primary and its replica")

    def primary_port(self, sentinel: RedisNode | None = None) -> int | None:
        answer = (
            (sentinel or self.sentinels[0])
            .cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, check=False)
            .split()
        )
        return int(answer[1]) if len(answer) == 2 and answer[1].isdigit() else None

    def primary(self) -> RedisNode:
        port = self.primary_port()
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no node on the primary's port {port}")

    def replica(self) -> RedisNode:
        primary = self.primary()
        return next(node for node in self.nodes if node is not primary)

    def redis_addresses(self) -> list[str]:
        return [self.redis_address]

    def stop(self) -> None:
        for host in self.hosts:
            host.stop()
        for node in [*self.sentinels, *self.nodes]:
            node.kill()
        self.net.teardown()

    def cleanup(self) -> None:
        self.stop()
        for host in self.hosts:
            host.log.unlink(missing_ok=True)
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Topology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
