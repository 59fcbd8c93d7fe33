"""What tasks use, opened once per worker process with the same modules the web app uses."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from taskiq import TaskiqDepends, TaskiqState

from lms.certificates.render import PdfRenderer
from lms.config import Settings
from lms.db import Database
from lms.effects import Effects
from lms.jobqueue import JobQueue
from lms.mail.render import Renderer
from lms.mail.service import Mailer
from lms.mail.transport import make_transport
from lms.metrics import Metrics
from lms.storage import Storage, open_storage
from realtime.emitter import Emitter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    config: Settings
    db: Database
    redis: aioredis.Redis
    mailer: Mailer
    # For tasks that fan out (a weekly report enqueues one email per student).
    jobs: JobQueue
    # Socket.IO emits to users' devices on every instance (realtime/emitter.py).
    emitter: Emitter
    # Uploaded files and certificate PDFs, and the WeasyPrint process pool
    # (started on the first certificate, so workers that render none pay nothing).
    storage: Storage
    pdf: PdfRenderer
    # The process's metrics: what tasks count themselves (payments' settlement latency).
    metrics: Metrics

    @property
    def effects(self) -> Effects:
        """What the use cases a task runs are given: as a request's, but events go out through the emitter."""
        return Effects(self.config, self.jobs, self.emitter)


async def open_resources(config: Settings, jobs: JobQueue, metrics: Metrics | None = None) -> Resources:
    from lms.app import redis_client  # the web app's own client settings

    db = await Database.connect(
        config.database.url,
        min_size=config.database.pool_min,
        max_size=config.database.pool_max,
        statement_timeout_ms=config.database.statement_timeout_ms,
        acquire_timeout=config.database.acquire_timeout_seconds,
        connect_timeout=config.database.connect_timeout_seconds,
    )
    redis = redis_client(config.redis.url, config.redis.socket_timeout_seconds)
    mailer = Mailer(
        db=db,
        transport=make_transport(config.smtp),
        renderer=Renderer(app_name=config.app_name, base_url=config.http.public_base_url),
        sender=config.smtp.mail_from,
    )
    emitter = Emitter.open(config)
    storage = await open_storage(config.storage)
    pdf = PdfRenderer(config.certificates.render_processes, config.certificates.render_timeout_seconds)
    return Resources(
        config=config, db=db, redis=redis, mailer=mailer, jobs=jobs, emitter=emitter, storage=storage, pdf=pdf,
        metrics=metrics or Metrics(),
    )  # fmt: skip


async def close_resources(resources: Resources) -> None:
    await resources.pdf.close()
    await resources.storage.close()
    await resources.emitter.close()
    await resources.redis.aclose()
    await resources.db.close()


class ResourceHolder:
    """One set of resources for the brokers of a process (a worker has one broker per queue).

    The first broker's start-up opens them, the last one's shutdown closes them.
    """

    def __init__(self, config: Settings, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.jobs: JobQueue | None = None
        self._resources: Resources | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Resources:
        if self._resources is None:
            raise RuntimeError("worker resources are not open (the broker was not started as a worker)")
        return self._resources

    async def acquire(self) -> Resources:
        async with self._lock:
            if self._resources is None:
                assert self.jobs is not None, "set ResourceHolder.jobs before starting the brokers"
                self._resources = await open_resources(self.config, self.jobs, self.metrics)
                log.debug("worker resources open")
            self._users += 1
            return self._resources

    async def release(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self._resources is not None:
                resources, self._resources = self._resources, None
                await close_resources(resources)


def resources(state: TaskiqState = TaskiqDepends()) -> Resources:
    """Task dependency: ``res: Resources = TaskiqDepends(resources)``."""
    value: Resources = state.resources
    return value
