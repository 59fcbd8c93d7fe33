"""Tasks that observe the job system itself: health checks, benchmarks, delivery tests.

``probe`` records each run in Redis lists under the caller's key
(``<key>:started`` and ``<key>:finished``: process id, consumer, latency from
``sent_at``) and, with ``hold``, waits until ``<key>:release`` exists, so a
test can kill or stop a worker in the middle of a task.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from taskiq import Context, TaskiqDepends

from jobs.registry import TaskTable
from jobs.resources import Resources, resources

tasks = TaskTable()


@tasks.task("diagnostics.noop", timeout_seconds=None)
async def noop() -> None:
    return None


async def probe(
    key: str,
    hold: bool = False,
    sent_at: float | None = None,
    res: Resources = TaskiqDepends(resources),
    task: Context = TaskiqDepends(),
) -> None:
    started = time.time()
    record = json.dumps(
        {
            "pid": os.getpid(),
            "consumer": getattr(task.broker, "consumer_name", "inline"),
            "task_id": task.message.task_id,
            "started_at": started,
            "latency": None if sent_at is None else started - sent_at,
        }
    )
    await res.redis.rpush(f"{key}:started", record)
    # The release flag is set by another process: polling is the simple way.
    while hold and not await res.redis.exists(f"{key}:release"):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await res.redis.rpush(f"{key}:finished", record)


tasks.task("diagnostics.probe", timeout_seconds=600)(probe)
tasks.task("diagnostics.probe_slow", queue="slow", timeout_seconds=600)(probe)
