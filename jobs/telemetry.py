"""What every broker reports about its tasks: metrics, the log context, the trace.

:class:`TelemetryMiddleware` sits on every broker (web app, worker,
scheduler, inline). Where tasks are sent it counts them
(``lms_jobs_kicked_total``) and writes the current trace context into the
message's labels; where they run it counts starts, successes and failures,
times each run, binds ``job_id`` and ``task`` to the log context (so every
record of the run, Taskiq's and the retry middleware's included, carries
them) and runs the task inside its CONSUMER span. Retries and dead letters
are counted by ``jobs.retry``, which decides them.

:func:`report_queues` adds the queues' state, read from Redis before each
scrape: stream length, unacknowledged (pending) messages and the age of
the oldest, retries waiting, messages set aside.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from taskiq import TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq.exceptions import NoResultError

from jobs.registry import QUEUES
from jobs.streams import dead_key, delayed_key
from lms.config import Settings
from lms.logs import bind_log_context, reset_log_context
from lms.metrics import JobMetrics, Metrics
from lms.telemetry import tracing

UNKNOWN_TASK = "unknown"


@dataclass
class _Run:
    started: float
    task: str
    log_token: Token[Any]
    span: tracing.TaskSpan | None
    failed: bool = False
    token: Token[_Run | None] | None = None


# The run in progress in this context (an inline task may run inside another's).
_RUN: ContextVar[_Run | None] = ContextVar("lms_task_run", default=None)


class TelemetryMiddleware(TaskiqMiddleware):
    def __init__(self, metrics: JobMetrics, task_names: Collection[str]) -> None:
        super().__init__()
        self.metrics = metrics
        self.task_names = frozenset(task_names)

    def label(self, task_name: str) -> str:
        """The task's name as a metric label: one of the registry's, never whatever a message says."""
        return task_name if task_name in self.task_names else UNKNOWN_TASK

    # -- where tasks are sent --------------------------------------------------

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        tracing.inject(message.labels)
        return message

    def post_send(self, message: TaskiqMessage) -> None:
        self.metrics.kicked.labels(self.label(message.task_name)).inc()

    # -- where they run -----------------------------------------------------------

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        task = self.label(message.task_name)
        self.metrics.started.labels(task).inc()
        log_token = bind_log_context(job_id=message.task_id, task=message.task_name)
        queue = str(message.labels.get("queue_name", "")).rsplit(":", 1)[-1]
        span = tracing.start_task_span(message.task_name, message.task_id, message.labels, queue)
        run = _Run(time.perf_counter(), task, log_token, span)
        run.token = _RUN.set(run)
        return message

    def on_error(self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException) -> None:
        run = _RUN.get()
        if run is None or isinstance(exception, NoResultError):
            return
        run.failed = True
        if run.span is not None:
            run.span.failed(exception)

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        run = _RUN.get()
        if run is None:
            return
        (self.metrics.failed if run.failed else self.metrics.succeeded).labels(run.task).inc()
        self.metrics.duration.labels(run.task).observe(time.perf_counter() - run.started)
        if run.span is not None:
            run.span.end()
        if run.token is not None:
            _RUN.reset(run.token)
        reset_log_context(run.log_token)


def report_queues(metrics: Metrics, redis: Redis, config: Settings, group: str) -> None:
    """Refresh the queue gauges from Redis before each scrape of ``metrics``."""
    from jobs.broker import stream_name

    jobs = metrics.jobs

    async def refresh() -> None:
        streams = [(queue, stream_name(config, queue)) for queue in QUEUES]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.time()
            for _, stream in streams:
                pipe.xlen(stream)
                pipe.xpending(stream, group)
                pipe.zcard(delayed_key(stream))
                pipe.xlen(dead_key(stream))
            replies = await pipe.execute(raise_on_error=False)
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        for i, (queue, _) in enumerate(streams):
            length, pending, delayed, set_aside = replies[1 + 4 * i : 5 + 4 * i]
            # A stream or group not created yet (no worker ran) is an empty queue.
            summary = pending if isinstance(pending, dict) else {"pending": 0}
            jobs.stream_length.labels(queue).set(_number(length))
            jobs.pending.labels(queue).set(int(summary["pending"]))
            oldest = summary.get("min") if summary["pending"] else None
            age = max(0.0, (now_ms - _entry_ms(oldest)) / 1000) if oldest else 0.0
            jobs.oldest_pending_age.labels(queue).set(age)
            jobs.delayed.labels(queue).set(_number(delayed))
            jobs.set_aside.labels(queue).set(_number(set_aside))

    metrics.on_scrape(refresh)


def _number(reply: Any) -> float:
    return float(reply) if isinstance(reply, int) else 0.0


def _entry_ms(entry_id: Any) -> int:
    """A stream entry id is ``<milliseconds>-<sequence>``: when it was added."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-", 1)[0])
