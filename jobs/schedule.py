"""``lms scheduler``: kicks the cron-scheduled tasks (schedules from ``jobs.*_cron`` settings).

Taskiq's scheduler loop with a label source: each scheduled task carries its
cron and time zone as a label (``jobs.broker``). One tick is sent once even
with several schedulers running: the first to set a Redis key for
(schedule, minute) sends it. The tasks are idempotent anyway (message ids
derived from the week or the inactivity period), so a lost race costs
nothing either way.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

import redis.asyncio as aioredis
from taskiq import ScheduledTask, TaskiqScheduler
from taskiq.cli.scheduler.run import SchedulerLoop
from taskiq.exceptions import ScheduledTaskCancelledError
from taskiq.schedule_sources import LabelScheduleSource

from jobs.broker import build_producer
from lms.config import Settings, load_config
from lms.metrics import Metrics, serve_metrics

log = logging.getLogger(__name__)

# Sends hanging longer than this are dropped (the next tick tries again).
SEND_TIMEOUT_SECONDS = 10.0


class OncePerTickSource(LabelScheduleSource):
    """Schedules from task labels; a tick already claimed by another scheduler is skipped."""

    def __init__(self, broker: object, redis: aioredis.Redis, prefix: str) -> None:
        super().__init__(broker)  # type: ignore[arg-type]
        self.redis = redis
        self.prefix = prefix

    async def pre_send(self, task: ScheduledTask) -> None:
        minute = datetime.now(UTC).strftime("%Y%m%d%H%M")
        key = f"{self.prefix}:schedule:{task.schedule_id}:{minute}"
        if not await self.redis.set(key, b"1", nx=True, ex=3600):
            log.info("%s at %s already sent by another scheduler", task.task_name, minute)
            raise ScheduledTaskCancelledError

    async def shutdown(self) -> None:
        await self.redis.aclose()
        await super().shutdown()


def build_scheduler(config: Settings, metrics: Metrics | None = None) -> TaskiqScheduler:
    from lms.app import redis_client

    broker = build_producer(config, metrics)
    broker.is_scheduler_process = True
    redis = redis_client(config.redis.url, config.redis.socket_timeout_seconds)
    return TaskiqScheduler(broker, sources=[OncePerTickSource(broker, redis, config.jobs.stream_prefix)])


def scheduler() -> TaskiqScheduler:
    """For ``taskiq scheduler jobs.schedule:scheduler``: settings from the environment."""
    return build_scheduler(load_config())


async def run_scheduler(config: Settings, metrics_port: int = 0) -> int:
    metrics = Metrics()
    sched = build_scheduler(config, metrics)
    metrics_server = None
    if metrics_port:
        metrics_server = await serve_metrics(metrics, config.metrics.process_host, metrics_port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    for source in sched.sources:
        await source.startup()
    await sched.startup()  # the consumer groups exist before the first kick
    schedules = [task for source in sched.sources for task in await source.get_schedules()]
    log.info(
        "scheduler ready: %s",
        ", ".join(f"{t.task_name} [{t.cron} {t.cron_offset}]" for t in schedules) or "nothing scheduled",
    )
    ticking = asyncio.create_task(SchedulerLoop(sched).run(send_timeout=SEND_TIMEOUT_SECONDS))
    stop_waiter = asyncio.ensure_future(stopping.wait())
    done, _ = await asyncio.wait({ticking, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
    stop_waiter.cancel()
    ticking.cancel()
    await asyncio.gather(ticking, return_exceptions=True)
    await sched.shutdown()
    for source in sched.sources:
        await source.shutdown()
    if metrics_server is not None:
        await metrics_server.cleanup()
    if ticking in done and ticking.exception() is not None:
        log.error("the scheduler loop failed", exc_info=ticking.exception())
        return 1
    log.info("scheduler stopped")
    return 0
