"""Real Redis topologies on 127.0.0.1 for tests and benchmarks: Debian's redis-server 7 as a
Redis Cluster, a Sentinel-managed primary with a replica, a TLS server; certificates made with
the ``openssl`` command at run time (never committed).

Every process runs in a temporary directory the caller owns, on free ports, and is killed by
``stop()`` (or the context manager's exit). Waits are bounded.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

DEBIAN_REDIS = Path("/usr/bin/redis-server")
DEBIAN_SENTINEL = Path("/usr/bin/redis-sentinel")
START_TIMEOUT = 15.0


def free_port(also_plus: int = 0) -> int:
    """A free TCP port on 127.0.0.1 (and, with ``also_plus``, port + also_plus free too)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not also_plus:
            return port
        if port + also_plus < 65536:
            with socket.socket() as s, contextlib.suppress(OSError):
                s.bind(("127.0.0.1", port + also_plus))
                return port
    raise RuntimeError("no free port")


def redis7_missing() -> str | None:
    """Why Redis 7 servers cannot be started here (None when they can)."""
    if not DEBIAN_REDIS.is_file():
        return f"{DEBIAN_REDIS} is absent (apt-get install redis-server redis-sentinel)"
    try:
        out = subprocess.run([str(DEBIAN_REDIS), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{DEBIAN_REDIS} does not run: {exc}"
    version = next((w[2:] for w in out.stdout.split() if w.startswith("v=")), "0")
    if int(version.split(".")[0] or 0) < 7:
        return f"{DEBIAN_REDIS} is {version}, not 7.x"
    return None


def sentinel_missing() -> str | None:
    return redis7_missing() or (None if DEBIAN_SENTINEL.exists() else f"{DEBIAN_SENTINEL} is absent")


def openssl_missing() -> str | None:
    return None if shutil.which("openssl") else "the openssl command is absent (test certificates)"


@dataclass
class RedisProcess:
    """One redis-server (or redis-sentinel) with its config file in ``directory``."""

    directory: Path
    port: int
    options: dict[str, Any] = field(default_factory=dict)
    sentinel: bool = False
    tls_port: int = 0
    client: dict[str, Any] = field(default_factory=dict)  # redis-py arguments to reach it
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def start(self) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "bind": "127.0.0.1",
            "port": self.port,
            "dir": str(self.directory),
            "logfile": str(self.directory / "redis.log"),
            "daemonize": "no",
            **({} if self.sentinel else {"save": '""', "appendonly": "no", "repl-diskless-sync-delay": 0}),
            **self.options,
        }
        lines = []
        for name, value in options.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"{name} {item}")
        config = self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")
        config.write_text("\n".join(lines) + "\n")
        binary = DEBIAN_SENTINEL if self.sentinel else DEBIAN_REDIS
        args = [str(binary), str(config)] + (["--sentinel"] if self.sentinel else [])
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready()
        return self

    def connection(self, **kw: Any) -> redis.Redis:
        port = self.tls_port or self.port
        return redis.Redis(
            "127.0.0.1",
            port,
            socket_timeout=5,
            socket_connect_timeout=2,
            decode_responses=True,
            **self.client,
            **kw,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.directory.name} exited: {self.log()[-1500:]}")
            try:
                with contextlib.closing(self.connection()) as r:
                    if r.ping():
                        return
            except (redis.RedisError, OSError):
                time.sleep(0.02)
        raise RuntimeError(f"{self.directory.name} did not start: {self.log()[-1500:]}")

    def log(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGKILL) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out ({timeout:g} s) waiting for {what}")
        time.sleep(0.05)


# -- Redis Cluster -------------------------------------------------------------------------------


class Cluster:
    """``masters`` primaries sharing the 16384 slots evenly (CLUSTER ADDSLOTSRANGE), and
    ``replicas`` replicas for the first ones; node timeout short so failovers are quick."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000
    ) -> None:
        self.directory = directory
        self.nodes: list[RedisProcess] = []
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms

    def start(self) -> Cluster:
        try:
            for i in range(self.masters + self.replicas):
                port = free_port()
                node = RedisProcess(
                    self.directory / f"node{i}",
                    port,
                    {
                        "cluster-enabled": "yes",
                        "cluster-config-file": "nodes.conf",
                        "cluster-node-timeout": self.node_timeout_ms,
                        "cluster-port": free_port(),
                        "cluster-replica-validity-factor": 0,
                        "cluster-allow-replica-migration": "no",
                    },
                )
                self.nodes.append(node.start())
            first = self.nodes[0].connection()
            for node in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.options["cluster-port"])
            share = 16384 // self.masters
            for i in range(self.masters):
                hi = 16383 if i == self.masters - 1 else (i + 1) * share - 1
                self.nodes[i].connection().execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, hi)
            wait_until(self._all_known, 20, "every node to know the others")
            for i in range(self.replicas):
                master_id = self.node_id(self.nodes[i])
                self.nodes[self.masters + i].connection().execute_command("CLUSTER", "REPLICATE", master_id)
            wait_until(self._ok, 20, "cluster_state:ok on every node")
            if self.replicas:
                wait_until(self._replicas_synced, 20, "replicas in sync")
        except BaseException:
            self.stop()
            raise
        return self

    def node_id(self, node: RedisProcess) -> str:
        return str(node.connection().execute_command("CLUSTER", "MYID"))

    def _all_known(self) -> bool:
        for node in self.nodes:
            known = [
                line for line in node.connection().execute_command("CLUSTER", "NODES").splitlines() if line
            ]
            if len(known) != len(self.nodes) or any("handshake" in line for line in known):
                return False
        return True

    def _ok(self) -> bool:
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            info = node.connection().execute_command("CLUSTER", "INFO")
            if "cluster_state:ok" not in info:
                return False
            slots = node.connection().execute_command("CLUSTER", "SLOTS")
            if sum(int(e[1]) - int(e[0]) + 1 for e in slots) != 16384:
                return False
        return True

    def _replicas_synced(self) -> bool:
        for node in self.nodes[self.masters :]:
            info = node.connection().info("replication")
            if info.get("master_link_status") != "up":
                return False
        return True

    def live(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def owner(self, slot: int) -> RedisProcess:
        """The live node that serves ``slot`` as every live node sees it."""

        def agreed() -> RedisProcess | None:
            owners = set()
            for node in self.live():
                for start, end, master, *_ in node.connection().execute_command("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        owners.add(int(master[1]))
            if len(owners) == 1:
                port = owners.pop()
                return next((n for n in self.live() if n.port == port), None)
            return None

        return wait_until(agreed, 20, f"the live nodes to agree on the owner of slot {slot}")

    def primaries(self) -> list[RedisProcess]:
        return [n for n in self.live() if n.connection().info("replication")["role"] == "master"]

    def start_migration(self, slot: int, target: RedisProcess) -> RedisProcess:
        """Mark ``slot`` migrating from its owner to ``target`` and move its keys (MIGRATE); the
        owner answers ASK (or TRYAGAIN) for it until ``finish_migration``."""
        source = self.owner(slot)
        target_id, source_id = self.node_id(target), self.node_id(source)
        target.connection().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.connection().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        for _ in range(1000):
            keys = source.connection().execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            source.connection().execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
            )
        return source

    def finish_migration(self, slot: int, target: RedisProcess) -> None:
        target_id = self.node_id(target)
        for node in [target, *[n for n in self.primaries() if n is not target]]:
            node.connection().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        wait_until(lambda: self.owner(slot) is target, 20, "the slot's new owner to be known")

    def url(self, node: RedisProcess) -> str:
        return f"redis://127.0.0.1:{node.port}"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- Sentinel ------------------------------------------------------------------------------------

SERVICE = "empq-primary"


class SentinelSet:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels (quorum 1) watching it."""

    def __init__(
        self, directory: Path, replicas: int = 1, sentinels: int = 1, down_after_ms: int = 1000
    ) -> None:
        self.directory = directory
        self.servers: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []
        self.replicas = replicas
        self.count = sentinels
        self.down_after_ms = down_after_ms

    def start(self) -> SentinelSet:
        try:
            primary = RedisProcess(self.directory / "primary", free_port()).start()
            self.servers.append(primary)
            for i in range(self.replicas):
                replica = RedisProcess(
                    self.directory / f"replica{i}",
                    free_port(),
                    {"replicaof": f"127.0.0.1 {primary.port}"},
                )
                self.servers.append(replica.start())
            wait_until(
                lambda: all(s.connection().info("replication").get("master_link_status") == "up"
                            for s in self.servers[1:]),
                20,
                "replicas in sync",
            )  # fmt: skip
            for i in range(self.count):
                sentinel = RedisProcess(
                    self.directory / f"sentinel{i}",
                    free_port(),
                    {
                        "sentinel monitor": f"{SERVICE} 127.0.0.1 {primary.port} 1",
                        "sentinel down-after-milliseconds": f"{SERVICE} {self.down_after_ms}",
                        "sentinel failover-timeout": f"{SERVICE} 5000",
                        "sentinel parallel-syncs": f"{SERVICE} 1",
                    },
                    sentinel=True,
                )
                self.sentinels.append(sentinel.start())
            wait_until(self._sentinels_see_replicas, 20, "the Sentinels to see the replicas")
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinels_see_replicas(self) -> bool:
        for sentinel in self.sentinels:
            replicas = sentinel.connection().execute_command("SENTINEL", "REPLICAS", SERVICE)
            if len(replicas) < self.replicas:
                return False
        return True

    def primary_port(self) -> int:
        host, port = (
            self.sentinels[0].connection().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        )
        return int(port)

    def primary(self) -> RedisProcess:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def wait_failover(self, old_port: int, timeout: float = 30) -> RedisProcess:
        """The replica the Sentinels promoted, once it answers as a primary."""

        def promoted() -> RedisProcess | None:
            port = self.primary_port()
            if port == old_port:
                return None
            server = next(s for s in self.servers if s.port == port)
            return server if server.connection().info("replication")["role"] == "master" else None

        return wait_until(promoted, timeout, "the Sentinels to promote a replica")

    def rejoin(self, old: RedisProcess, timeout: float = 30) -> None:
        """Start a stopped primary again as a replica of the current one (as its restart script
        would: the Sentinels would convert it too, within about ten seconds) and wait for the sync."""
        old.options["replicaof"] = f"127.0.0.1 {self.primary_port()}"
        old.start()

        def synced() -> bool:
            info = old.connection().info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        wait_until(synced, timeout, f"127.0.0.1:{old.port} to rejoin as a replica")

    def url(self, extra_sentinels: tuple[str, ...] = (), query: str = "") -> str:
        hosts = ",".join([*extra_sentinels, *(f"127.0.0.1:{s.port}" for s in self.sentinels)])
        return f"redis+sentinel://{hosts}/{SERVICE}" + (f"?{query}" if query else "")

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- TLS -----------------------------------------------------------------------------------------


KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")  # EC: quick to make


@dataclass
class Certificates:
    """A private CA, a server certificate it signed (127.0.0.1, localhost), a client certificate
    it signed (mutual TLS), and an unrelated CA (the wrong one)."""

    directory: Path

    def __post_init__(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = d / "ca.crt", d / "ca.key"
        self.server, self.server_key = d / "server.crt", d / "server.key"
        self.client, self.client_key = d / "client.crt", d / "client.key"
        self.other_ca, self.other_ca_key = d / "other-ca.crt", d / "other-ca.key"
        self._ca(self.ca, self.ca_key, "empq test CA")
        self._ca(self.other_ca, self.other_ca_key, "some other CA")
        self._signed(self.server, self.server_key, "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self._signed(self.client, self.client_key, "empq hub", "extendedKeyUsage=clientAuth")

    def _run(self, *args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=self.directory)

    def _ca(self, cert: Path, key: Path, name: str) -> None:
        self._run(
            "req", "-x509", *KEY, "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(key), "-out", str(cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _signed(self, cert: Path, key: Path, name: str, extension: str) -> None:
        request = cert.with_suffix(".csr")
        extfile = cert.with_suffix(".ext")
        extfile.write_text(extension + "\n")
        self._run("req", *KEY, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(request))
        self._run(
            "x509", "-req", "-in", str(request), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(extfile),
        )  # fmt: skip


def tls_server(
    directory: Path, certs: Certificates, client_certs: bool = True, **options: Any
) -> RedisProcess:
    """A redis-server speaking only TLS (``port 0``), on ``tls_port``; ``client_certs``: it
    wants a client certificate signed by the CA (mutual TLS)."""
    port = free_port()
    server = RedisProcess(
        directory,
        0,
        {
            "tls-port": port,
            "tls-cert-file": str(certs.server),
            "tls-key-file": str(certs.server_key),
            "tls-ca-cert-file": str(certs.ca),
            "tls-auth-clients": "yes" if client_certs else "no",
            **options,
        },
        tls_port=port,
        client={
            "ssl": True,
            "ssl_ca_certs": str(certs.ca),
            "ssl_certfile": str(certs.client),
            "ssl_keyfile": str(certs.client_key),
        },
    )
    return server.start()


@contextlib.contextmanager
def started(*processes: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            process.stop()
