"""Declaring tasks: a name, a queue, which errors are worth retrying, an optional schedule.

Each task module keeps a ``tasks = TaskTable()`` (like a ``RouteTableDef``);
``jobs.broker`` registers them on the brokers it builds. Nothing here opens
a connection or reads the settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import redis.exceptions

from lms.db import DatabaseUnavailable, StatementTimeout

Queue = Literal["emails", "default", "slow"]
# Separate streams, consumers and concurrency limits per queue: a backlog of
# PDFs (slow) cannot hold the slots emails need, nor emails a webhook's.
QUEUES: tuple[Queue, ...] = ("emails", "default", "slow")

# Worth retrying for any task: the outage of something a retry may find back.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    StatementTimeout,
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

Fn = TypeVar("Fn", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class JobSpec:
    name: str
    fn: Callable[..., Awaitable[Any]]
    queue: Queue
    # Declared transient errors (on top of TRANSIENT_ERRORS): retried with
    # backoff. Anything else fails the task at once and dead-letters it.
    retry_on: tuple[type[BaseException], ...]
    # A task running longer is stopped with TimeoutError (and retried).
    timeout_seconds: float | None
    # Name of the JobsSettings field holding the task's cron schedule.
    schedule: str | None
    # Fills kwargs at enqueue time (e.g. an idempotency key the caller omitted).
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None

    @property
    def transient_errors(self) -> tuple[type[BaseException], ...]:
        return TRANSIENT_ERRORS + self.retry_on


class TaskTable:
    def __init__(self) -> None:
        self.specs: list[JobSpec] = []

    def task(
        self,
        name: str,
        *,
        queue: Queue = "default",
        retry_on: tuple[type[BaseException], ...] = (),
        timeout_seconds: float | None = 300.0,
        schedule: str | None = None,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> Callable[[Fn], Fn]:
        def register(fn: Fn) -> Fn:
            self.specs.append(JobSpec(name, fn, queue, retry_on, timeout_seconds, schedule, prepare))
            return fn

        return register
