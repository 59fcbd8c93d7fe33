"""The web app's side of jobs: a queue to enqueue on, open for the app's lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from redis.exceptions import RedisError

from jobs.broker import CONSUMER_GROUP, build_inline_broker, build_producer
from jobs.queue import BrokerJobQueue, InlineJobQueue
from jobs.tasks import all_specs
from jobs.telemetry import report_queues
from lms.appkeys import CONFIG, METRICS, REDIS
from lms.jobqueue import JOBS

log = logging.getLogger(__name__)


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry: sets ``app[JOBS]``.

    Broker mode starts the broker before the app serves, which creates the
    consumer groups. Groups start at the stream's beginning, so a message
    kicked before any group existed is delivered anyway: an unreachable
    Redis at start-up is logged, not fatal (kicks fail until it is back).
    """
    config = app[CONFIG]
    metrics = app[METRICS]
    if config.jobs.mode == "inline":
        inline = build_inline_broker(config, metrics)
        await inline.startup()
        app[JOBS] = InlineJobQueue(inline, all_specs())
        yield
        await inline.shutdown()
        return
    broker = build_producer(config, metrics)
    report_queues(metrics, app[REDIS], config, CONSUMER_GROUP)
    try:
        await broker.startup()
    except (RedisError, OSError) as err:
        log.warning("job queue: Redis unreachable at start-up (%s); the workers will create the consumer groups", err)
    app[JOBS] = BrokerJobQueue(broker, all_specs())
    yield
    await broker.shutdown()
