"""The ``lms`` command: up, serve, migrate, worker, scheduler, jobs, seed-demo, assets, create-admin.

Every command takes ``--log-level`` (else the ``log_level`` setting,
``LMS_LOG_LEVEL``) and ``--log-file`` (the file gets the log, the terminal
only warnings and errors). Logs are JSON lines where ``log_json`` is set
(production).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, get_args

from lms.config import ConfigError, Settings, load_config, set_in_environment
from lms.logs import setup_logging

log = logging.getLogger("lms.cli")

Command = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = {}
LOG_LEVELS: tuple[str, ...] = get_args(Settings.model_fields["log_level"].annotation)
ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# How long `lms up` waits for its server to answer before printing the block anyway.
SERVE_WAIT_SECONDS = 60.0


def command(
    name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = (help_text, fn, arguments)
        return fn

    return register


def say(text: str) -> None:
    """Output for the person at the terminal (not a log record)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fail(text: str, status: int = 1) -> int:
    sys.stderr.write(f"lms: {text}\n")
    return status


# --- serve, migrate, worker, scheduler ----------------------------------------


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to bind (default: http.host)")
    p.add_argument("--port", type=int, help="port to bind (default: http.port)")
    p.add_argument(
        "--workers",
        default="1",
        help="server processes sharing the port (SO_REUSEPORT); auto: one per core (default: 1)",
    )


@command("serve", "run the HTTP + Socket.IO server", _serve_arguments)
def serve(args: argparse.Namespace, config: Settings) -> int:
    from lms.banner import mail_destination, public_links, serve_block
    from lms.processes import supervise, worker_count

    host = args.host or config.http.host
    port = args.port or config.http.port
    listening = f"http://{host}:{port}"
    try:
        workers = worker_count(args.workers)
    except ValueError:
        return fail(f"--workers takes a number of processes or auto, not {args.workers!r}", 2)

    def announce(_aiohttp_message: str | None = None) -> None:
        where = listening if workers == 1 else f"{listening} ({workers} worker processes)"
        if getattr(args, "no_banner", False):
            log.info("serving on %s", where)
        elif config.log_json:
            facts = {"links": dict(public_links(config)), "mail": mail_destination(config), "workers": workers}
            log.info("serving on %s", where, extra=facts)
        else:
            say(serve_block(config, where))

    if workers == 1:
        return serve_one(config, host, port, announce, reuse_port=args.reuse_port)
    worker = ["serve", "--host", host, "--port", str(port), "--workers", "1", "--reuse-port", "--no-banner"]
    for option, value in (("--log-level", args.log_level), ("--log-file", args.log_file)):
        if value is not None:
            worker += [option, str(value)]
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104 - compared, not bound

    def ready() -> None:
        wait_until_serving(local, [], SERVE_WAIT_SECONDS)
        announce()

    return supervise(worker, workers, ready=ready)


def serve_one(config: Settings, host: str, port: int, announce: Callable[[str], None], *, reuse_port: bool) -> int:
    """One server process (the app factory's app, on uvloop unless http.uvloop is off), until SIGTERM or SIGINT."""
    from aiohttp import web

    from lms.app import create_app

    app = create_app(config)
    app.on_startup.append(_freeze_startup_objects)
    loop = None
    if config.http.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(
        app, host=host, port=port, access_log=None, print=announce, shutdown_timeout=10,
        reuse_port=reuse_port or None, loop=loop,
    )  # fmt: skip
    return 0


GC_THRESHOLDS = (2_000, 2, 1_000)


async def _freeze_startup_objects(app: object) -> None:
    """Move what start-up made (modules, the app, pools) out of the collector's sight.

    Those objects live as long as the process; without this every full
    collection walks them again while thousands of connections come and go.
    """
    gc.collect()
    gc.freeze()
    # Connections are long-lived objects too: with 2,500 websockets on an instance one full
    # collection took about 190 ms (bench/live.py, gc callbacks), and the default thresholds
    # (700, 10, 10) ran one every second or two while players joined, each a pause of every
    # connection. A full collection comes after 2,000 young ones (4 million objects, as many as 5,000
    # players joining make): once or not at all while a classroom joins. A middle collection walks
    # what survived since the last one, so it runs after every second young collection: with
    # (10,000, 20, 20) it came after 20 and, as players joined, walked 200,000 objects in 300-400 ms
    # (bench/live.py, 5,000 players, gc callbacks); now at most 10 ms. Cyclic garbage still goes young.
    gc.set_threshold(*GC_THRESHOLDS)


@command("migrate", "upgrade the database to the latest schema")
def migrate(args: argparse.Namespace, config: Settings) -> int:
    from lms.migrate import describe, upgrade

    log.info("%s", describe(*upgrade(config.database.url)))
    return 0


def _metrics_port_argument(p: argparse.ArgumentParser, setting: str) -> None:
    p.add_argument(
        "--metrics-port", type=int, help=f"serve /metrics on this port (default: metrics.{setting}; 0: not served)"
    )


def _worker_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queues",
        default="emails,default,slow",
        help="comma-separated queues to serve (default: all: emails, default, slow)",
    )
    _metrics_port_argument(p, "worker_port")


@command("worker", "run background jobs (Taskiq worker on the Redis streams)", _worker_arguments)
def worker(args: argparse.Namespace, config: Settings) -> int:
    from jobs.registry import QUEUES
    from jobs.worker import serve_worker

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        return fail(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)}", 2)
    port = config.metrics.worker_port if args.metrics_port is None else args.metrics_port
    return serve_worker(config, [q for q in QUEUES if q in queues], metrics_port=port)


@command(
    "scheduler",
    "kick the cron-scheduled jobs (weekly report, reminders, cleanup)",
    lambda p: _metrics_port_argument(p, "scheduler_port"),
)
def scheduler(args: argparse.Namespace, config: Settings) -> int:
    from jobs.schedule import run_scheduler

    port = config.metrics.scheduler_port if args.metrics_port is None else args.metrics_port
    return asyncio.run(run_scheduler(config, metrics_port=port))


# --- jobs: the task registry by hand -------------------------------------------


def _jobs_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="jobs_command", required=True, metavar="{list,run,dead,requeue}")
    sub.add_parser("list", help="the registered tasks, their queues and schedules")
    run = sub.add_parser("run", help="run one task once, here and now; exits 1 if it fails")
    run.add_argument("task", help="its name (see `lms jobs list`)")
    run.add_argument("arguments", nargs="*", metavar="NAME=VALUE", help="the task's arguments")
    dead = sub.add_parser("dead", help="the dead letters: tasks that failed for good, newest first")
    dead.add_argument("--limit", type=int, default=50)
    requeue = sub.add_parser("requeue", help="send a dead-lettered task back to its queue")
    requeue.add_argument("id", type=uuid.UUID, help="the dead letter's id (see `lms jobs dead`)")


@command("jobs", "list, run by hand, and requeue background tasks", _jobs_arguments)
def jobs(args: argparse.Namespace, config: Settings) -> int:
    from jobs import admin
    from jobs.queue import UnknownTask

    try:
        if args.jobs_command == "list":
            return _jobs_list(admin.describe(config))
        if args.jobs_command == "run":
            kwargs = admin.parse_arguments(args.arguments)
            started = time.monotonic()
            result = asyncio.run(admin.run_once(config, args.task, kwargs))
            say(f"{args.task} finished in {time.monotonic() - started:.1f} s: {json.dumps(result, default=str)}")
            return 0
        if args.jobs_command == "dead":
            return _jobs_dead(asyncio.run(admin.dead_letters(config, args.limit)))
        letter, task_id = asyncio.run(admin.requeue(config, args.id))
        say(f"{letter['task_name']} requeued on {letter['queue']} as task {task_id}")
        return 0
    except admin.TaskFailed as err:
        log.error("%s", err, exc_info=err.__cause__)
        return 1
    except (UnknownTask, admin.BadArguments, admin.NoSuchDeadLetter, admin.AlreadyRequeued) as err:
        return fail(str(err).strip("'\""), 2)


def _jobs_list(infos: Sequence[Any]) -> int:
    width = max(len(i.name) for i in infos) + 2
    for info in infos:
        when = info.schedule or "when enqueued"
        takes = f" · takes {', '.join(info.parameters)}" if info.parameters else ""
        say(f"{info.name.ljust(width)}{info.queue:<9}{when:<28}{info.summary}{takes}")
    return 0


def _jobs_dead(letters: Sequence[Any]) -> int:
    if not letters:
        say("no dead letters")
        return 0
    for letter in letters:
        error = (letter["error"].splitlines() or [""])[0][:100]
        state = f"requeued {letter['requeued_at']:%Y-%m-%d %H:%M}" if letter["requeued_at"] else letter["reason"]
        say(
            f"{letter['id']}  {letter['created_at']:%Y-%m-%d %H:%M}  {letter['task_name']}  "
            f"({state}, {letter['attempts']} attempt(s))  {letter['error_type'].rsplit('.', 1)[-1]}: {error}"
        )
    return 0


# --- demo, assets, admins ---------------------------------------------------------


@command("seed-demo", "add demo accounts, a course, a quiz and a live session (idempotent; not in production)")
def seed_demo(args: argparse.Namespace, config: Settings) -> int:
    from lms.banner import demo_rows, render
    from lms.demo import seed_demo as seed

    if config.is_production:
        return fail("seed-demo creates accounts with known passwords; production refuses it", 2)
    demo = asyncio.run(seed(config))
    title = f"Demo data: {demo.added} row(s) added" if demo.added else "Demo data: all there already, nothing added"
    say(render(title, demo_rows(demo, config.http.public_base_url)))
    return 0


@command("assets", "install the browser libraries the pages use (npm ci)")
def assets(args: argparse.Namespace, config: Settings) -> int:
    return 0 if install_assets(force=True) else 1


ASSETS_STAMP = "node_modules/.lms-installed-lock"


def _lock_digest() -> str:
    return hashlib.sha256((ASSETS_DIR / "package-lock.json").read_bytes()).hexdigest()


def assets_current(dev: bool = False) -> bool:
    """node_modules holds today's package-lock.json (with the dev packages, if asked): a changed lock needs npm ci."""
    stamp = ASSETS_DIR / ASSETS_STAMP
    if not stamp.is_file():
        return False
    digest, _, kind = stamp.read_text().partition(" ")
    return digest == _lock_digest() and (kind == "dev" or not dev)


def install_assets(force: bool = False, output: Path | None = None, dev: bool = False) -> bool:
    """``npm ci`` in the installed package's ``assets`` folder unless it is current; npm's output to ``output``.

    ``dev`` adds the packages the tests and benchmarks drive browsers and
    websockets with (playwright-core, ws). npm ci empties node_modules first,
    so the stamp written after it always describes what is there.
    """
    if not force and assets_current(dev):
        return True
    npm = shutil.which("npm")
    if npm is None:
        log.warning("npm is not installed: the docs and live pages will lack their browser libraries")
        return False
    log.info("installing browser libraries with npm ci in %s", ASSETS_DIR)
    argv = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error", *([] if dev else ["--omit=dev"])]
    if output is None:
        result = subprocess.run(argv, cwd=ASSETS_DIR, check=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("ab") as sink:
            result = subprocess.run(argv, cwd=ASSETS_DIR, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        log.warning("npm ci failed (exit %s)%s", result.returncode, f"; see {output}" if output else "")
        return False
    (ASSETS_DIR / ASSETS_STAMP).write_text(f"{_lock_digest()} {'dev' if dev else 'runtime'}")
    return True


def _create_admin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True, help="full name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")


@command("create-admin", "create an admin account (registration never makes admins)", _create_admin_arguments)
def create_admin(args: argparse.Namespace, config: Settings) -> int:
    import getpass

    from lms.users.admin import AdminError, create_admin_account

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            return fail("the passwords differ")
    try:
        user_id = asyncio.run(create_admin_account(config, email=args.email, full_name=args.name, password=password))
    except AdminError as err:
        return fail(str(err))
    say(f"admin {args.email} created ({user_id})")
    return 0


# --- up: everything on one machine ------------------------------------------------


def _up_arguments(p: argparse.ArgumentParser) -> None:
    _serve_arguments(p)
    p.add_argument("--demo", action="store_true", help="add demo accounts and content first (see `lms seed-demo`)")


@command("up", "the whole platform on this machine (embedded PostgreSQL/Redis if none configured)", _up_arguments)
def up(args: argparse.Namespace, config: Settings) -> int:
    from lms.banner import demo_rows, mail_destination, public_links, render, without_credentials
    from lms.devservers import EmbeddedPostgres, EmbeddedRedis
    from lms.migrate import describe, upgrade

    data_dir = Path(config.data_dir).resolve()
    logs = data_dir / "logs"
    if args.log_file is None:  # this process's own log (pgserver, migrations) goes there too
        setup_logging(config.log_level, config.log_json, logs / "up.log")
    host = args.host or config.http.host
    port = args.port or config.http.port
    local = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104 - compared, not bound
    env = dict(os.environ) | {"LMS_ENV": config.env, "LMS_LOG_LEVEL": config.log_level}
    if not set_in_environment("http", "public_base_url"):
        env["LMS_HTTP_PUBLIC_BASE_URL"] = local  # links in emails point at this server
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    try:
        servers: list[tuple[str, str]] = []
        if not set_in_environment("database", "url"):
            pg = EmbeddedPostgres(data_dir / "postgres")
            env["LMS_DATABASE_URL"] = pg.start()
            started.append(pg)
            servers.append(("PostgreSQL", f"embedded, data in {pg.data_dir}"))
        else:
            servers.append(("PostgreSQL", without_credentials(config.database.url)))
        if not set_in_environment("redis", "url"):
            rd = EmbeddedRedis(data_dir / "redis", persist=True)
            env["LMS_REDIS_URL"] = rd.start()
            started.append(rd)
            servers.append(("Redis", f"embedded, {rd.url}"))
        else:
            servers.append(("Redis", without_credentials(config.redis.url)))
        settings = load_config(environ=env)  # what the processes below see
        log.info("%s", describe(*upgrade(settings.database.url)))
        demo = None
        if args.demo:
            from lms.demo import seed_demo as seed

            demo = asyncio.run(seed(settings))
        install_assets(output=logs / "npm.log")
        lms = [sys.executable, "-m", "lms.cli"]
        names: dict[int, str] = {}
        for argv in up_processes(host, port):
            log_file = ["--log-file", str(logs / f"{argv[0]}.log")]
            # Own sessions: Ctrl-C reaches this process only, which stops them in order.
            child = subprocess.Popen([*lms, *argv, *log_file], env=env, start_new_session=True)
            children.append(child)
            names[child.pid] = argv[0]
        serving = wait_until_serving(local, children, SERVE_WAIT_SECONDS)
        if not serving and not stopping:
            log.warning("the server did not answer within %.0f s; see %s", SERVE_WAIT_SECONDS, logs / "serve.log")
        say(
            render(
                f"{settings.app_name} is up ({settings.env}) · press Ctrl-C to stop",
                public_links(settings),
                [("Mail", mail_destination(settings)), ("Logs", str(logs)), *servers],
                demo_rows(demo, settings.http.public_base_url) if demo else [],
            )
        )
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    log.error("lms %s exited with %s; stopping", names[child.pid], child.returncode)
                    stopping = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        say("Stopping…")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for server in reversed(started):
            server.stop()
        log.info("stopped")
        say("Stopped.")
    return 0


def up_processes(host: str, port: int) -> list[list[str]]:
    """What ``lms up`` runs besides the embedded servers (``up`` prints the start-up block, not ``serve``)."""
    serve = ["serve", "--host", host, "--port", str(port), "--workers", "auto", "--no-banner"]
    return [serve, ["worker"], ["scheduler"]]


def wait_until_serving(url: str, children: Sequence[subprocess.Popen[bytes]], timeout: float) -> bool:
    """Until ``url`` answers its health check; False if a child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            return False
        try:
            with urllib.request.urlopen(f"{url}/api/v1/health", timeout=1):  # noqa: S310 - our own server
                return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


# --- the parser ----------------------------------------------------------------


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, help="how much to log (default: log_level, LMS_LOG_LEVEL)"
    )
    p.add_argument("--log-file", type=Path, help="write the log to this file; the terminal shows warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lms", description="The learning platform. Start with `lms up --demo`.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _fn, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common_arguments(p)
        if arguments:
            arguments(p)
        if name == "serve":  # `lms up` prints the block for the server it starts
            p.add_argument("--no-banner", action="store_true", help=argparse.SUPPRESS)
            # A worker of `serve --workers N`: binds with SO_REUSEPORT next to its siblings.
            p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(overrides={"log_level": args.log_level} if args.log_level else None)
    except ConfigError as err:
        return fail(f"configuration error: {err}", 2)
    setup_logging(config.log_level, config.log_json, args.log_file)
    try:
        if args.command != "up":  # `lms up` starts processes that set up their own
            from lms.telemetry import setup_telemetry

            setup_telemetry(config, args.command)
        return COMMANDS[args.command][1](args, config)
    except KeyboardInterrupt:
        return 130
    except Exception:
        # Logged, so that production's JSON log has it as one record.
        log.critical("lms %s failed", args.command, exc_info=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
