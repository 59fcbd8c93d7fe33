"""Real servers for benchmarks: embedded PostgreSQL and Redis, `lms serve` processes."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lms.devservers import EmbeddedPostgres, EmbeddedRedis, free_port
from lms.migrate import upgrade

ASSETS = Path(__file__).resolve().parent.parent / "lms" / "assets"
NODE_MODULES = ASSETS / "node_modules"


def ensure_node_modules() -> Path:
    """The npm packages the Node load generators use (``ws``): installed with ``npm ci`` on a fresh clone."""
    if not (NODE_MODULES / "ws").is_dir():
        print("installing the load generators' npm packages (npm ci in lms/assets) ...", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ASSETS, check=True)
    return NODE_MODULES


@dataclass
class Platform:
    database_url: str
    redis_url: str
    tmp: Path
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # The postmaster (its children are the backends) and redis-server: benchmarks read their CPU time.
    postgres_pid: int = 0
    redis_pid: int = 0

    def env(self, **extra: str) -> dict[str, str]:
        # A pool of 8: this machine's PostgreSQL has two cores. At 20 connections its backends
        # cost a third more CPU per request (analytics 540 against 410 µs, progress writes 850 against
        # 670) and the server fewer requests per second; README "Capacity" sizes pools from cores.
        base = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
        return (
            base
            | {
                "LMS_ENV": "test",
                "LMS_DATABASE_URL": self.database_url,
                "LMS_REDIS_URL": self.redis_url,
                "LMS_LOG_LEVEL": "WARNING",
                "LMS_DATABASE_POOL_MAX": "8",
            }
            | extra
        )

    def server_pid(self, server: str) -> int:
        return next(p.pid for p in self.servers if getattr(p, "lms_url", None) == server)

    def cpu_groups(self, server: str) -> dict[str, list[int]]:
        """The processes whose CPU a request costs: the `lms serve` at ``server``, PostgreSQL, Redis."""
        return {"server": [self.server_pid(server)], "postgres": [self.postgres_pid], "redis": [self.redis_pid]}

    def serve(self, **extra: str) -> str:
        """Start an `lms serve` process; returns its base URL once it is ready."""
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "lms.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env(**extra),
        )
        self.servers.append(process)
        url = f"http://127.0.0.1:{port}"
        process.lms_url = url  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/api/v1/health", timeout=1):  # noqa: S310
                return url
            time.sleep(0.2)
        raise RuntimeError("lms serve did not start")


@contextlib.contextmanager
def platform(data_dir: Path | None = None) -> Iterator[Platform]:
    """Throwaway servers; with ``data_dir``, PostgreSQL's data lives (and stays) there, so a run can reuse it."""
    tmp = data_dir or Path(tempfile.mkdtemp(prefix="lms-bench-"))
    pg = EmbeddedPostgres(tmp / "pg", database="lms_bench")
    redis = EmbeddedRedis(tmp / "redis")
    try:
        database_url = pg.start()
        redis_url = redis.start()
        upgrade(database_url)
        result = Platform(database_url, redis_url, tmp, postgres_pid=pg.postmaster_pid(), redis_pid=redis.pid)
        yield result
    finally:
        for process in result.servers if "result" in locals() else []:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        redis.stop()
        pg.stop()


def shares(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` counts as even as can be (the load generators' processes)."""
    return [n // parts + (1 if j < n % parts else 0) for j in range(parts)]


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else [ordered[0]] * 99
    return {"p50": q[49], "p90": q[89], "p99": q[98], "max": ordered[-1]}


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"
