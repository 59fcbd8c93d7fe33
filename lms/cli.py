"""The ``lms`` command: serve, migrate, up, assets (later: worker, scheduler, ...)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lms.config import ConfigError, Settings, load_config, set_in_environment
from lms.logs import setup_logging

log = logging.getLogger("lms.cli")

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {}


def command(
    name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (help_text, fn, arguments)
        return fn

    return register


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default: http.host)")
    p.add_argument("--port", type=int, help="port to bind (default: http.port)")


@command("serve", "run the HTTP + Socket.IO server", _serve_arguments)
def serve(args: argparse.Namespace, config: Settings) -> int:
    from aiohttp import web

    from lms.app import create_app

    host = args.host or config.http.host
    port = args.port or config.http.port
    log.info("serving on http://%s:%s", host, port)
    web.run_app(create_app(config), host=host, port=port, access_log=None, print=None, shutdown_timeout=10)
    return 0


@command("migrate", "upgrade the database to the latest schema")
def migrate(args: argparse.Namespace, config: Settings) -> int:
    from lms.migrate import upgrade

    upgrade(config.database.url)
    log.info("database is at the latest revision")
    return 0


def _worker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queues",
        default="emails,default,slow",
        help="comma-separated queues to serve (default: all: emails, default, slow)",
    )


@command("worker", "run background jobs (Taskiq worker on the Redis streams)", _worker_arguments)
def worker(args: argparse.Namespace, config: Settings) -> int:
    from jobs.registry import QUEUES
    from jobs.worker import serve_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        print(f"lms: unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}", file=sys.stderr)
        return 2
    return serve_worker(config, [q for q in QUEUES if q in queues])


@command("scheduler", "kick the cron-scheduled jobs (weekly report, reminders, cleanup)")
def scheduler(args: argparse.Namespace, config: Settings) -> int:
    import asyncio

    from jobs.schedule import run_scheduler

    return asyncio.run(run_scheduler(config))


ASSETS_DIR = Path(__file__).resolve().parent / "assets"


@command("assets", "install the browser libraries the pages use (npm ci)")
def assets(args: argparse.Namespace, config: Settings) -> int:
    return 0 if install_assets(force=True) else 1


def install_assets(force: bool = False) -> bool:
    if (ASSETS_DIR / "node_modules").is_dir() and not force:
        return True
    npm = shutil.which("npm")
    if npm is None:
        log.warning("npm is not installed: the docs and live pages will lack their browser libraries")
        return False
    log.info("installing browser libraries with npm ci (lms/assets)")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"], cwd=ASSETS_DIR, check=False)
    return result.returncode == 0


def _create_admin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True, help="full name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


@command("create-admin", "create an admin account (registration never makes admins)", _create_admin_arguments)
def create_admin(args: argparse.Namespace, config: Settings) -> int:
    import asyncio
    import getpass

    from lms.users.admin import AdminError, create_admin_account

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("lms: the passwords differ", file=sys.stderr)
            return 1
    try:
        user_id = asyncio.run(create_admin_account(config, email=args.email, full_name=args.name, password=password))
    except AdminError as err:
        print(f"lms: {err}", file=sys.stderr)
        return 1
    print(f"admin {args.email} created ({user_id})")
    return 0


def _up_arguments(p: argparse.ArgumentParser) -> None:
    _serve_arguments(p)


@command("up", "the whole platform on this machine (embedded PostgreSQL/Redis if none configured)", _up_arguments)
def up(args: argparse.Namespace, config: Settings) -> int:
    from lms.devservers import EmbeddedPostgres, EmbeddedRedis
    from lms.migrate import upgrade

    data_dir = Path(config.data_dir).resolve()
    env = dict(os.environ)
    env.setdefault("LMS_ENV", config.env)
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        if not set_in_environment("database", "url"):
            pg = EmbeddedPostgres(data_dir / "postgres")
            env["LMS_DATABASE_URL"] = pg.start()
            started.append(pg)
            log.info("embedded PostgreSQL in %s", pg.data_dir)
        if not set_in_environment("redis", "url"):
            rd = EmbeddedRedis(data_dir / "redis", persist=True)
            env["LMS_REDIS_URL"] = rd.start()
            started.append(rd)
            log.info("embedded Redis at %s", rd.url)
        upgrade(env.get("LMS_DATABASE_URL", config.database.url))
        install_assets()
        host = args.host or config.http.host
        port = args.port or config.http.port
        lms = [sys.executable, "-m", "lms.cli"]
        for argv in up_processes(host, port):
            children.append(subprocess.Popen(lms + argv, env=env))
        print(
            f"\nLMS is up: API docs at http://{host}:{port}/api/docs · readiness at "
            f"http://{host}:{port}/api/v1/ready · mail in {Path(config.smtp.outbox_dir).resolve()}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    log.error("%s exited with %s; stopping", child.args, child.returncode)
                    stopping = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(started):
            server.stop()
        log.info("stopped")
    return 0


def up_processes(host: str, port: int) -> list[list[str]]:
    """What ``lms up`` runs besides the embedded servers."""
    return [["serve", "--host", host, "--port", str(port)], ["worker"], ["scheduler"]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lms", description="The learning platform.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if arguments:
            arguments(p)
    args = parser.parse_args(argv)
    try:
        config = load_config()
    except ConfigError as err:
        print(f"lms: configuration error: {err}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_json)
    return COMMANDS[args.command][1](args, config)


if __name__ == "__main__":
    sys.exit(main())
