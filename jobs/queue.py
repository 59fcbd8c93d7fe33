"""``lms.jobqueue.JobQueue`` implementations: kick to the brokers, or run inline."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from taskiq import AsyncBroker, AsyncTaskiqTask, InMemoryBroker
from taskiq.kicker import AsyncKicker

from jobs.registry import JobSpec

log = logging.getLogger(__name__)


class UnknownTask(LookupError):
    """No task has that name (a typo in the caller)."""


class JobFailed(Exception):
    """An inline task failed for good (it was dead-lettered); raised to the caller."""


class BrokerJobQueue:
    """Kicks by task name; the task's labels route it to its queue's stream."""

    def __init__(self, broker: AsyncBroker, specs: Mapping[str, JobSpec]) -> None:
        self.broker = broker
        self.specs = specs

    async def enqueue(self, task_name: str, /, **kwargs: Any) -> None:
        await self.kick(task_name, **kwargs)

    async def kick(self, task_name: str, /, **kwargs: Any) -> str:
        """Send the task; returns its task id. Arguments must be JSON-serialisable."""
        spec = self.specs.get(task_name)
        task = self.broker.find_task(task_name)
        if spec is None or task is None:
            raise UnknownTask(f"no task named {task_name!r}; known: {', '.join(sorted(self.specs))}")
        if spec.prepare is not None:
            kwargs = spec.prepare(dict(kwargs))
        # The schedule is the scheduler's business, not every message's.
        labels = {name: value for name, value in task.labels.items() if name != "schedule"}
        sent: AsyncTaskiqTask[Any] = await AsyncKicker(task_name, self.broker, labels).kiq(**kwargs)
        return sent.task_id


class InlineJobQueue(BrokerJobQueue):
    """Runs the task now, in this process, with the resources a worker has (tests of domain code).

    A task that fails for good raises :class:`JobFailed` here, loudly; a
    transient failure is retried in the background as a worker would.
    """

    broker: InMemoryBroker

    async def kick(self, task_name: str, /, **kwargs: Any) -> str:
        task_id = await super().kick(task_name, **kwargs)
        result = self.broker.result_backend.results.get(task_id)
        if result is not None and result.is_err and result.error is not None:
            raise JobFailed(f"task {task_name} failed: {result.error}") from result.error
        return task_id
