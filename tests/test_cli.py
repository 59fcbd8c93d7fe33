"""The `lms` command, run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.builders import login
from tests.conftest import Servers


def run_lms(servers: Servers, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LMS_")},
        "LMS_ENV": "test",
        "LMS_DATABASE_URL": servers.database_url,
        "LMS_REDIS_URL": servers.redis_url,
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
