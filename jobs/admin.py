"""``lms jobs``: the operator's view of the task registry and the dead letters.

Everything here works from ``jobs.tasks.all_specs()``, so a task added to the
registry (with its schedule, if any) is listed, runnable and requeueable
without touching the CLI.

- :func:`run_once` runs one task in this process, once, with the resources
  a worker has: no retry, no dead letter; a failure is the caller's to
  report. Work the task fans out (a weekly report's emails) goes to the
  queues as usual.
- :func:`requeue` sends a dead-lettered task back to its queue with its
  original arguments (a new task id, so a second failure is recorded anew)
  and marks the letter requeued.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from taskiq import InMemoryBroker
from taskiq_dependencies.dependency import Dependency

from jobs import deadletter
from jobs.broker import build_inline_broker, build_producer
from jobs.queue import BrokerJobQueue, InlineJobQueue, UnknownTask
from jobs.registry import JobSpec
from jobs.resources import close_resources, open_resources
from jobs.retry import RetryPolicy
from jobs.tasks import all_specs
from lms.clients import open_database
from lms.config import Settings
from lms.db import Row

log = logging.getLogger(__name__)


class TaskFailed(Exception):
    """The task ran and raised; ``__cause__`` is its error."""


class BadArguments(ValueError):
    """The arguments do not fit the task's parameters."""


class NoSuchDeadLetter(LookupError):
    pass


class AlreadyRequeued(Exception):
    pass


@dataclass(frozen=True)
class TaskInfo:
    name: str
    queue: str
    schedule: str | None  # "0 9 * * 1 (UTC)", or None: runs when enqueued
    parameters: tuple[str, ...]  # what a caller passes (required ones without a default)
    summary: str


def spec_of(name: str) -> JobSpec:
    specs = all_specs()
    if name not in specs:
        raise UnknownTask(f"no task named {name!r}; `lms jobs list` names them")
    return specs[name]


def caller_parameters(spec: JobSpec) -> dict[str, inspect.Parameter]:
    """The task's own parameters; those filled by Taskiq's dependencies are not the caller's."""
    return {
        name: p
        for name, p in inspect.signature(spec.fn).parameters.items()
        if not isinstance(p.default, Dependency) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def describe(config: Settings) -> list[TaskInfo]:
    infos = []
    for spec in sorted(all_specs().values(), key=lambda s: (s.schedule is None, s.name)):
        schedule = None
        if spec.schedule is not None:
            schedule = f"{getattr(config.jobs, spec.schedule)} ({config.jobs.schedule_timezone})"
        parameters = tuple(
            name if p.default is inspect.Parameter.empty else f"[{name}]" for name, p in caller_parameters(spec).items()
        )
        summary = (inspect.getdoc(spec.fn) or "").split("\n", 1)[0]
        infos.append(TaskInfo(spec.name, spec.queue, schedule, parameters, summary))
    return infos


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs from a command line; a value that starts like a JSON object or list is JSON.

    Other values stay text: Taskiq converts them to the parameter's type.
    """
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise BadArguments(f"task arguments are NAME=VALUE, not {pair!r}")
        if value.lstrip().startswith(("{", "[")):
            try:
                kwargs[name] = json.loads(value)
            except json.JSONDecodeError as err:
                raise BadArguments(f"{name}: not valid JSON ({err})") from None
        else:
            kwargs[name] = value
    return kwargs


def check_arguments(spec: JobSpec, kwargs: Mapping[str, Any]) -> None:
    parameters = caller_parameters(spec)
    unknown = sorted(set(kwargs) - set(parameters))
    missing = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    problems = []
    if unknown:
        problems.append(f"unknown argument(s) {', '.join(unknown)}")
    if missing:
        problems.append(f"missing argument(s) {', '.join(missing)}")
    if problems:
        accepted = ", ".join(parameters) or "none"
        raise BadArguments(f"{spec.name}: {'; '.join(problems)} (it takes: {accepted})")


@contextlib.asynccontextmanager
async def job_queue(config: Settings) -> AsyncIterator[BrokerJobQueue]:
    """The queue the web app would use: the Redis streams, or inline in ``jobs.mode = "inline"``."""
    specs = all_specs()
    if config.jobs.mode == "inline":
        inline = build_inline_broker(config)
        await inline.startup()
        try:
            yield InlineJobQueue(inline, specs)
        finally:
            await inline.shutdown()
        return
    producer = build_producer(config)
    await producer.startup()
    try:
        yield BrokerJobQueue(producer, specs)
    finally:
        await producer.shutdown()


async def run_once(config: Settings, name: str, kwargs: Mapping[str, Any]) -> Any:
    """Run the task now, in this process; its return value, or :class:`TaskFailed`."""
    spec = spec_of(name)
    check_arguments(spec, kwargs)
    async with job_queue(config) as jobs:
        resources = await open_resources(config, jobs)
        broker = InMemoryBroker(await_inplace=True)
        labels = {} if spec.timeout_seconds is None else {"timeout": spec.timeout_seconds}
        broker.register_task(spec.fn, task_name=spec.name, **labels)
        broker.state.resources = resources
        # One attempt, and it is the last: a task that records a final failure does so.
        broker.state.retry_policy = RetryPolicy(max_retries=0, base_seconds=1, max_seconds=1)
        try:
            await broker.startup()
            task = broker.find_task(spec.name)
            assert task is not None
            sent = await task.kiq(**kwargs)
            result = broker.result_backend.results.get(sent.task_id)
        finally:
            await broker.shutdown()
            await close_resources(resources)
    if result is None:
        raise TaskFailed(f"{name} left no result")
    if result.is_err:
        raise TaskFailed(f"{name} failed: {type(result.error).__name__}: {result.error}") from result.error
    return result.return_value


async def dead_letters(config: Settings, limit: int) -> list[Row]:
    db = await open_database(config.database, pool_max=1)
    try:
        async with db.connection() as conn:
            return await deadletter.recent(conn, limit=limit)
    finally:
        await db.close()


async def requeue(config: Settings, letter_id: uuid.UUID) -> tuple[Row, str]:
    """Send the dead-lettered task back to its queue; the letter and the new task id."""
    db = await open_database(config.database, pool_max=1)
    try:
        async with db.transaction() as conn:
            letter = await deadletter.get_for_update(conn, letter_id)
            if letter is None:
                raise NoSuchDeadLetter(f"no dead letter {letter_id}; `lms jobs dead` lists them")
            if letter["requeued_at"] is not None:
                when = f"{letter['requeued_at']:%Y-%m-%d %H:%M:%S %Z}"
                raise AlreadyRequeued(f"dead letter {letter_id} was requeued already, at {when}")
            if letter["args"]:
                raise BadArguments(f"{letter['task_name']} was sent with positional arguments; requeue it by hand")
            spec = spec_of(letter["task_name"])
            async with job_queue(config) as jobs:
                task_id = await jobs.kick(spec.name, **letter["kwargs"])
            await deadletter.mark_requeued(conn, letter_id)
    finally:
        await db.close()
    log.info("dead letter %s (%s) requeued as task %s", letter_id, letter["task_name"], task_id)
    return letter, task_id
