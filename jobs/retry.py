"""Retries with exponential backoff and jitter for declared transient errors; dead letters after.

A task that raises one of its spec's transient errors is kicked again after
a delay (``kick_later``: a Redis sorted set in production, a timer inline),
up to ``jobs.max_retries`` times; the retry count travels in the message's
``retries`` label and the task id stays the same. Any other error, or a
transient one on the last attempt, writes a dead letter and the message is
acknowledged. If the dead letter (or the delayed kick) cannot be written,
the error propagates, the message stays unacknowledged and comes back later:
nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from taskiq import Context, TaskiqDepends, TaskiqMiddleware, TaskiqResult
from taskiq.exceptions import NoResultError
from taskiq.labels import prepare_label
from taskiq.message import BrokerMessage, TaskiqMessage

from jobs import deadletter
from jobs.registry import JobSpec
from jobs.resources import ResourceHolder
from lms.config import JobsSettings

log = logging.getLogger(__name__)

RETRIES_LABEL = "retries"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    base_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, jobs: JobsSettings) -> RetryPolicy:
        return cls(jobs.max_retries, jobs.retry_base_seconds, jobs.retry_max_seconds)

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before retry number ``retry`` (1-based).

        "Equal jitter": half of ``base * 2**(retry-1)`` (capped) plus a random
        part of the other half. Workers that failed together spread out, and
        each delay is still at least the previous one.
        """
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** (retry - 1))
        return ceiling / 2 + rand() * ceiling / 2


def retries_of(message: TaskiqMessage) -> int:
    return int(message.labels.get(RETRIES_LABEL, 0) or 0)


@dataclass(frozen=True)
class Attempt:
    number: int  # 1 for the first run
    is_last: bool  # no retry follows a transient failure of this run


def current_attempt(context: Context = TaskiqDepends()) -> Attempt:
    """Task dependency: which attempt this is (a task records a final failure on its last)."""
    policy: RetryPolicy = context.state.retry_policy
    retries = retries_of(context.message)
    return Attempt(number=retries + 1, is_last=retries >= policy.max_retries)


class DelayingBroker(Protocol):
    async def kick_later(self, message: BrokerMessage, delay_seconds: float) -> None: ...


class RetryMiddleware(TaskiqMiddleware):
    def __init__(self, specs: Mapping[str, JobSpec], policy: RetryPolicy, holder: ResourceHolder) -> None:
        super().__init__()
        self.specs = specs
        self.policy = policy
        self.holder = holder

    async def on_error(self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException) -> None:
        if isinstance(exception, NoResultError):
            return
        if isinstance(exception, asyncio.CancelledError):
            # Stopped, not failed (a worker past its shutdown grace): no retry,
            # no dead letter and no acknowledgement; the message was handed back.
            raise exception
        spec = self.specs.get(message.task_name)
        task = message.task_name if spec is not None else "unknown"
        retries = retries_of(message)
        transient = spec is not None and isinstance(exception, spec.transient_errors)
        if transient and retries < self.policy.max_retries:
            delay = self.policy.delay(retries + 1)
            broker: DelayingBroker = self.broker  # type: ignore[assignment]
            await broker.kick_later(self._retry_message(message, retries + 1), delay)
            # The failed run stores no result; the retry will.
            result.error = NoResultError()
            self.holder.metrics.jobs.retried.labels(task).inc()
            log.warning(
                "task %s (%s) failed: %s; retry %d of %d in %.1f s",
                message.task_name, message.task_id, exception, retries + 1, self.policy.max_retries, delay,
            )  # fmt: skip
            return
        reason = "exhausted" if transient else "permanent"
        async with self.holder.current.db.transaction() as conn:
            recorded = await deadletter.record(
                conn,
                task_id=message.task_id,
                task_name=message.task_name,
                queue=spec.queue if spec else "unknown",
                args=message.args,
                kwargs=message.kwargs,
                labels=message.labels,
                reason=reason,
                error=exception,
                attempts=retries + 1,
            )
        if recorded:  # not a redelivery of a task already dead-lettered
            self.holder.metrics.jobs.dead_lettered.labels(task, reason).inc()
        # With its traceback: error tracking reports this, once per task.
        log.error(
            "task %s (%s) dead-lettered (%s) after %d attempt(s): %s: %s",
            message.task_name, message.task_id, reason, retries + 1, type(exception).__name__, exception,
            exc_info=exception,
        )  # fmt: skip

    def _retry_message(self, message: TaskiqMessage, retries: int) -> BrokerMessage:
        labels: dict[str, Any] = {}
        types: dict[str, int] = {}
        for name, value in {**message.labels, RETRIES_LABEL: retries}.items():
            labels[name], types[name] = prepare_label(value)
        retry = TaskiqMessage(
            task_id=message.task_id,  # same task: dead letters and results stay keyed by it
            task_name=message.task_name,
            labels=labels,
            labels_types=types,
            args=message.args,
            kwargs=message.kwargs,
        )
        return self.broker.formatter.dumps(retry)
