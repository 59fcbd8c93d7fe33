"""The `lms` command, run as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from lms.devservers import free_port
from lms.migrate import head_revision
from tests.builders import PRODUCTION_ENV, login
from tests.conftest import LmsProcess, Servers, lms_environment


def run_lms(
    servers: Servers, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`lms <args>` against the test servers; ``env`` adds or replaces variables."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LMS_")},
        "LMS_ENV": "test",
        "LMS_DATABASE_URL": servers.database_url,
        "LMS_DATABASE_TRANSACTION_POOLER": str(servers.transaction_pooler).lower(),
        "LMS_REDIS_URL": servers.redis_url,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "lms.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def test_create_admin_makes_an_admin_who_can_sign_in(servers: Servers, client: Any) -> None:
    result = run_lms(
        servers,
        "create-admin",
        "--email",
        "Root@Example.com",
        "--name",
        "Root",
        "--password-stdin",
        stdin="a long admin passphrase\n",
    )
    assert result.returncode == 0, result.stderr
    tokens = await login(client, "root@example.com", "a long admin passphrase")
    assert tokens["user"]["role"] == "admin"
    again = run_lms(
        servers,
        "create-admin",
        "--email",
        "root@example.com",
        "--name",
        "Root",
        "--password-stdin",
        stdin="a long admin passphrase\n",
    )
    assert again.returncode == 1 and "already exists" in again.stderr


def test_create_admin_refuses_a_weak_password(servers: Servers) -> None:
    result = run_lms(
        servers, "create-admin", "--email", "a@example.com", "--name", "A", "--password-stdin", stdin="password\n"
    )
    assert result.returncode == 1 and "Password" in result.stderr


def test_configuration_errors_are_reported_not_raised(servers: Servers) -> None:
    env_result = subprocess.run(
        [sys.executable, "-m", "lms.cli", "migrate"],
        env={**os.environ, "LMS_ENV": "production"}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert env_result.returncode == 2 and "LMS_AUTH_SECRET_KEY" in env_result.stderr


PRODUCTION = {"LMS_ENV": "production", **PRODUCTION_ENV}


def test_migrate_says_what_it_did_in_one_line_without_library_chatter(servers: Servers) -> None:
    url = servers.create_database("lms_cli_migrate")
    first = run_lms(servers, "migrate", env={"LMS_DATABASE_URL": url, "LMS_LOG_LEVEL": "INFO"})
    assert first.returncode == 0, first.stderr
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and "database upgraded from an empty schema to " in lines[0], first.stderr
    again = run_lms(servers, "migrate", env={"LMS_DATABASE_URL": url, "LMS_LOG_LEVEL": "INFO"})
    assert again.stderr.strip().endswith(f"database already at the latest revision ({head_revision()})")
    # Alembic's own narration is there at DEBUG.
    debug = run_lms(servers, "migrate", "--log-level", "debug", env={"LMS_DATABASE_URL": url})
    assert "alembic.runtime.migration" in debug.stderr


def test_log_level_from_the_option_or_the_environment_and_refused_when_unknown(servers: Servers) -> None:
    quiet = run_lms(servers, "migrate", env={"LMS_LOG_LEVEL": "warning"})
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = run_lms(servers, "migrate", "--log-level", "INFO", env={"LMS_LOG_LEVEL": "ERROR"})
    assert "latest revision" in loud.stderr
    bad_option = run_lms(servers, "migrate", "--log-level", "loud")
    assert bad_option.returncode == 2 and "invalid choice" in bad_option.stderr
    bad_variable = run_lms(servers, "migrate", env={"LMS_LOG_LEVEL": "loud"})
    assert bad_variable.returncode == 2 and "LMS_LOG_LEVEL" in bad_variable.stderr


def test_production_logs_json_lines_even_when_a_command_crashes(servers: Servers) -> None:
    ok = run_lms(servers, "migrate", env=PRODUCTION)
    records = [json.loads(line) for line in ok.stderr.splitlines()]
    assert ok.returncode == 0 and [r["msg"] for r in records][-1].startswith("database already at")
    assert {"ts", "level", "logger", "msg"} <= set(records[-1])
    # Nothing listens on this port: the failure is one JSON record with the traceback inside.
    down = run_lms(
        servers, "migrate", env=PRODUCTION | {"LMS_DATABASE_URL": f"postgresql://x@127.0.0.1:{free_port()}/x"}
    )
    assert down.returncode == 1
    crash = [json.loads(line) for line in down.stderr.splitlines()]
    assert crash[-1]["level"] == "CRITICAL" and crash[-1]["msg"] == "lms migrate failed" and "exc" in crash[-1]


def test_a_log_file_gets_the_log_and_the_terminal_only_warnings(servers: Servers, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "migrate.log"
    result = run_lms(servers, "migrate", "--log-file", str(log_file), env={"LMS_LOG_LEVEL": "INFO"})
    assert result.returncode == 0 and result.stderr == ""
    assert "latest revision" in log_file.read_text()


def test_serve_announces_itself_as_one_json_record_where_logs_are_json(servers: Servers) -> None:
    port = free_port()
    env = lms_environment(servers, http={"public_base_url": f"http://127.0.0.1:{port}"}) | {"LMS_LOG_JSON": "true"}
    serve = LmsProcess(["serve", "--host", "127.0.0.1", "--port", str(port)], env)
    try:
        serve.wait_for_output(f'"msg": "serving on http://127.0.0.1:{port}"', timeout=60)
        [record] = [json.loads(line) for line in serve.lines if '"serving on' in line]
        assert record["links"]["API docs"] == f"http://127.0.0.1:{port}/api/docs"
        assert record["mail"].startswith("SMTP ")
        assert all(line.startswith("{") for line in serve.lines), serve.output
    finally:
        serve.close()
