"""The web app's side of jobs: a queue to enqueue on, open for the app's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from jobs.broker import build_inline_broker, build_producer
from jobs.queue import BrokerJobQueue, InlineJobQueue
from jobs.tasks import all_specs
from lms.appkeys import CONFIG
from lms.jobqueue import JOBS


async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    """``app.cleanup_ctx`` entry: sets ``app[JOBS]``.

    Broker mode starts the broker before the app serves, which creates the
    consumer groups: a message kicked before any worker ran is not lost.
    """
    config = app[CONFIG]
    if config.jobs.mode == "inline":
        inline = build_inline_broker(config)
        await inline.startup()
        app[JOBS] = InlineJobQueue(inline, all_specs())
        yield
        await inline.shutdown()
        return
    broker = build_producer(config)
    await broker.startup()
    app[JOBS] = BrokerJobQueue(broker, all_specs())
    yield
    await broker.shutdown()
