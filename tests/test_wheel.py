"""The platform as a deployer installs it: a wheel in a fresh virtualenv, run from an unrelated directory.

The wheel is built from a copy of the checkout (a build writes ``build/``
next to the sources). The fresh venv reaches the dependencies through a
path file naming this environment's site-packages (added as plain paths:
their ``.pth`` files, an editable ``lms`` among them, are not run), so
``lms`` itself can only come from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from lms.devservers import free_port
from lms.migrate import head_revision
from tests.conftest import LmsProcess, Servers, SmtpServer
from tests.polling import eventually_blocking

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "*.egg-info", "__pycache__", "build", "dist", ".lms", ".*_cache", ".hypothesis"
)


def build_wheel(tmp: Path) -> Path:
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
         "--wheel-dir", str(tmp / "dist"), str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    [wheel] = (tmp / "dist").glob("lms-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    home = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    ours = [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]
    (site_packages / "dependencies.pth").write_text("\n".join(ours) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    return home


def tracked_package_files() -> set[str]:
    """Files git tracks under the packages (docs aside), as paths inside the wheel (migrations/ is lms/migrations/)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "lms", "realtime", "jobs", "migrations"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    shipped = {name for name in listed if (ROOT / name).exists() and not name.endswith((".gitignore", ".md"))}
    return {f"lms/{name}" if name.startswith("migrations/") else name for name in shipped}


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test URL
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def test_the_wheel_installs_migrates_serves_and_mails_from_anywhere(
    tmp_path: Path, servers: Servers, smtp_server: SmtpServer
) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        contents = set(archive.namelist())
    top_level = {name.split("/", 1)[0] for name in contents if not name.startswith("lms-")}
    assert top_level == {"lms", "realtime", "jobs"}
    if shutil.which("git") and (ROOT / ".git").exists():
        missing = tracked_package_files() - contents
        assert not missing, f"tracked files missing from the wheel (add them to package-data): {sorted(missing)}"

    home = fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LMS_", "PYTHON"))}
    env |= {
        "PATH": f"{home / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "LMS_ENV": "test",
        "LMS_DATABASE_URL": servers.create_database("lms_wheel"),
        "LMS_DATABASE_TRANSACTION_POOLER": str(servers.transaction_pooler).lower(),
        "LMS_REDIS_URL": servers.redis_url,
        "LMS_LOG_LEVEL": "INFO",
        "LMS_HTTP_PUBLIC_BASE_URL": base,
        "LMS_SMTP_HOST": smtp_server.host,
        "LMS_SMTP_PORT": str(smtp_server.port),
    }

    where = subprocess.run(
        [home / "bin" / "python", "-c", "import lms, lms.migrations; print(lms.__file__, lms.migrations.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(home) for p in where), where

    migrated = subprocess.run(
        [home / "bin" / "lms", "migrate"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stderr
    assert f"database upgraded from an empty schema to {head_revision()}" in migrated.stderr

    installed = [str(home / "bin" / "lms")]
    serve = LmsProcess(["serve", "--port", str(port)], env, program=installed, cwd=elsewhere)
    worker = LmsProcess(["worker"], env, program=installed, cwd=elsewhere)
    try:
        worker.wait_for_output("worker ready", timeout=60)

        def ready() -> bool:
            try:
                return get(f"{base}/api/v1/ready")[0] == 200
            except OSError:
                return False

        try:
            eventually_blocking(ready, timeout=60, what="/api/v1/ready answering 200", interval=0.2)
        except AssertionError as err:  # the server's output as of the failure, not as of the call
            raise AssertionError(f"{err}; lms serve's output:\n{serve.output}") from None
        serve.wait_for_output(f"Mail              SMTP {smtp_server.host}:{smtp_server.port}")  # the start-up block
        assert f"API docs          {base}/api/docs" in serve.output
        for path, kind, text in [
            ("/api/docs", "text/html", "swagger-ui"),
            ("/play", "text/html", "Game PIN"),
            ("/", "text/html", "Join a live quiz"),
            ("/static/live_play.js", "javascript", "join_session"),
        ]:
            status, content_type, body = get(base + path)
            assert status == 200 and kind in content_type and text in body, (path, status, content_type)

        register = urllib.request.Request(  # noqa: S310 - loopback test URL
            f"{base}/api/v1/auth/register",
            data=b'{"email": "wheel@example.com", "password": "a freshly installed passphrase", "full_name": "Wheel"}',
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(register, timeout=10) as response:  # noqa: S310
            assert response.status == 201
        welcome = smtp_server.catcher.wait_for(1, timeout=30)[0].message
        assert welcome["To"] == "Wheel <wheel@example.com>"
        assert "Wheel" in welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    finally:
        serve.close()
        worker.close()
