"""What each process imports (jobs use only the write-only side of realtime/, ...), checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.no_services


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_worker_imports_neither_the_web_app_nor_the_live_actors() -> None:
    # What `lms worker` loads before it serves: the brokers with every task registered.
    loaded = modules_after("from jobs.worker import serve_worker\nfrom jobs.broker import build_brokers")
    assert "jobs.tasks" in loaded and "jobs.tasks.live" in loaded  # the tasks are there
    forbidden = {"lms.app", "jobs.web", "realtime.server", "realtime.live.actor", "realtime.live.runtime"}
    assert not loaded & forbidden
    # Of realtime/, only the write-only side (the emitter and what it is built of).
    assert "realtime.emitter" in loaded
    assert not {m for m in loaded if m.startswith("realtime.live")}


def test_the_scheduler_does_not_import_the_web_app() -> None:
    loaded = modules_after("from jobs.schedule import build_scheduler")
    assert not loaded & {"lms.app", "jobs.web", "realtime.server", "realtime.live.runtime"}


def test_the_app_factory_and_jobs_share_one_client_module() -> None:
    # One place builds PostgreSQL pools and Redis clients (lms/clients.py); nothing else calls the constructors.
    sources = [p for d in ("lms", "realtime", "jobs") for p in (ROOT / d).rglob("*.py")]
    builders = ("Database.connect(", "Redis.from_url(", "RedisCluster(", "BlockingConnectionPool", "Sentinel(")
    offenders = {
        str(p.relative_to(ROOT))
        for p in sources
        if p.name not in ("clients.py", "db.py") and any(b in p.read_text() for b in builders)
    }
    assert offenders == set(), json.dumps(sorted(offenders))
