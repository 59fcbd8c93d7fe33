"""The brokers: one Redis stream per queue, every task of ``jobs.tasks`` registered on each.

``lms worker`` builds one broker per queue it serves (each with its own
consumer and concurrency limit) and ``lms scheduler`` one to kick with; the
web app builds one to kick with (``jobs.queue``). Any broker can kick any
task: the task's ``queue_name`` label routes it to its queue's stream.

The Taskiq CLI works too (the settings are read when it calls the factory,
not at import)::

    taskiq worker jobs.broker:broker           # all queues, one concurrency limit
    taskiq scheduler jobs.schedule:scheduler
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker, TaskiqEvents, TaskiqState
from taskiq.message import BrokerMessage
from taskiq_redis import RedisAsyncResultBackend

from jobs.queue import BrokerJobQueue, InlineJobQueue
from jobs.registry import QUEUES, JobSpec, Queue
from jobs.resources import ResourceHolder
from jobs.retry import RetryMiddleware, RetryPolicy
from jobs.streams import StreamBroker
from jobs.tasks import all_specs
from jobs.telemetry import TelemetryMiddleware
from lms.config import Settings, load_config
from lms.metrics import Metrics

CONSUMER_GROUP = "workers"


def stream_name(config: Settings, queue: Queue) -> str:
    return f"{config.jobs.stream_prefix}:{queue}"


def concurrency(config: Settings, queue: Queue) -> int:
    limits: dict[Queue, int] = {
        "emails": config.jobs.emails_concurrency,
        "default": config.jobs.default_concurrency,
        "slow": config.jobs.slow_concurrency,
    }
    return limits[queue]


def consumer_prefix() -> str:
    # Unique per process: a restarted worker is a new consumer, and the old
    # one's messages (if it died holding any) are reclaimed from it.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _labels(config: Settings, spec: JobSpec) -> dict[str, Any]:
    labels: dict[str, Any] = {"queue_name": stream_name(config, spec.queue)}
    if spec.timeout_seconds is not None:
        labels["timeout"] = spec.timeout_seconds
    if spec.schedule is not None:
        labels["schedule"] = [
            {
                "cron": getattr(config.jobs, spec.schedule),
                "cron_offset": config.jobs.schedule_timezone,
                "schedule_id": spec.name,
            }
        ]
    return labels


def _equip(broker: AsyncBroker, config: Settings, holder: ResourceHolder, specs: dict[str, JobSpec]) -> None:
    """Tasks, the retry and telemetry middlewares and the worker resources' lifecycle."""
    policy = RetryPolicy.from_settings(config.jobs)
    for spec in specs.values():
        broker.register_task(spec.fn, task_name=spec.name, **_labels(config, spec))
    # Telemetry after retry: errors reach it first (Taskiq calls on_error in
    # reverse), so a failure is recorded even if writing its dead letter fails.
    broker.add_middlewares(
        RetryMiddleware(specs, policy, holder), TelemetryMiddleware(holder.metrics.jobs, specs)
    )
    broker.state.retry_policy = policy

    async def open_resources(state: TaskiqState) -> None:
        state.resources = await holder.acquire()

    async def close_resources(state: TaskiqState) -> None:
        await holder.release()

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, open_resources)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, close_resources)


def build_brokers(
    config: Settings, queues: Iterable[Queue] = QUEUES, *, consumer: str | None = None, metrics: Metrics | None = None
) -> dict[Queue, StreamBroker]:
    """One broker per queue, sharing one set of worker resources (and the process's metrics)."""
    specs = all_specs()
    holder = ResourceHolder(config, metrics or Metrics())
    prefix = consumer or consumer_prefix()
    brokers: dict[Queue, StreamBroker] = {}
    for queue in queues:
        broker = _stream_broker(config, streams=[stream_name(config, queue)], consumer=f"{prefix}:{queue}")
        _equip(broker, config, holder, specs)
        brokers[queue] = broker
    # Tasks that fan out kick through any of them: labels route each task.
    holder.jobs = BrokerJobQueue(next(iter(brokers.values())), specs)
    return brokers


def build_producer(config: Settings, metrics: Metrics | None = None) -> StreamBroker:
    """A broker that only kicks (web app, scheduler): it serves no queue of its own."""
    broker = _stream_broker(config, streams=[stream_name(config, "default")], consumer=consumer_prefix())
    specs = all_specs()
    for spec in specs.values():
        broker.register_task(spec.fn, task_name=spec.name, **_labels(config, spec))
    broker.add_middlewares(TelemetryMiddleware((metrics or Metrics()).jobs, specs))
    return broker


def _stream_broker(config: Settings, *, streams: list[str], consumer: str) -> StreamBroker:
    timeout = config.redis.socket_timeout_seconds
    broker = StreamBroker(
        config.redis.url,
        streams=streams,
        all_streams=[stream_name(config, q) for q in QUEUES],
        consumer_group=CONSUMER_GROUP,
        consumer_name=consumer,
        idle_timeout_seconds=config.jobs.idle_redelivery_seconds,
        socket_timeout=timeout + 2,  # above the longest blocking read
        socket_connect_timeout=timeout,
        health_check_interval=30,
    )
    return broker.with_result_backend(
        RedisAsyncResultBackend(
            config.redis.url,
            result_ex_time=config.jobs.result_ttl_seconds,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
    )


class InlineBroker(InMemoryBroker):
    """Runs each kicked task in the caller's process and awaits it (``jobs.mode = "inline"``).

    Retries wait on a timer in this process; shutdown cancels the pending ones.
    """

    def __init__(self) -> None:
        super().__init__(await_inplace=True, max_stored_results=10_000)
        self._later: set[asyncio.Task[None]] = set()

    async def kick_later(self, message: BrokerMessage, delay_seconds: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay_seconds)
            await self.kick(message)

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def wait_retries(self) -> None:
        """Until no retry is pending (tests)."""
        while self._later:
            await asyncio.gather(*list(self._later), return_exceptions=True)

    async def shutdown(self) -> None:
        for task in list(self._later):
            task.cancel()
        for task in list(self._later):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await super().shutdown()


def build_inline_broker(config: Settings, metrics: Metrics | None = None) -> InlineBroker:
    specs = all_specs()
    holder = ResourceHolder(config, metrics or Metrics())
    broker = InlineBroker()
    _equip(broker, config, holder, specs)
    holder.jobs = InlineJobQueue(broker, specs)
    return broker


def broker() -> StreamBroker:
    """For ``taskiq worker jobs.broker:broker``: every queue, settings from the environment."""
    config = load_config()
    streams = [stream_name(config, q) for q in QUEUES]
    specs = all_specs()
    holder = ResourceHolder(config, Metrics())
    result = _stream_broker(config, streams=streams, consumer=consumer_prefix())
    _equip(result, config, holder, specs)
    holder.jobs = BrokerJobQueue(result, specs)
    return result
