"""``lms worker``: consume the queues until SIGTERM, then stop within the grace period.

Built on Taskiq's ``Receiver.callback`` (parsing, dependencies, middlewares,
results, acknowledgement) with our own fetch loop, for two reasons:

- each queue gets its own consumer and concurrency limit, so slow work
  cannot take the slots of fast work;
- shutdown is ours: the stock receiver cancels a blocked XREADGROUP, which
  hung taskiq-redis 1.2.x workers on SIGTERM with redis-py 8. Here a read is
  never cancelled; it returns within ``block_ms`` and the loop checks the
  stop flag.

On SIGTERM (or SIGINT) the worker stops reading, lets running tasks finish
until shortly before ``jobs.shutdown_grace_seconds``, hands every message it
still holds back to its stream (other workers take them at once), closes its
resources and exits. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable

from redis.exceptions import RedisError
from taskiq import AckableMessage
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from jobs.broker import CONSUMER_GROUP, build_brokers, concurrency
from jobs.registry import QUEUES, Queue
from jobs.streams import StreamBroker, StreamMessage
from jobs.telemetry import report_queues
from lms.config import Settings
from lms.metrics import Metrics, serve_metrics

log = logging.getLogger(__name__)

# Kept from the grace period for handing messages back and closing resources.
CLOSE_RESERVE_SECONDS = 1.5
# A message whose processing crashed (not a task error: those are retried or
# dead-lettered) comes back after this long.
REQUEUE_AFTER_CRASH_SECONDS = 5.0


class QueueConsumer:
    """Runs the messages of one queue, at most ``limit`` at a time."""

    def __init__(self, queue: Queue, broker: StreamBroker, limit: int) -> None:
        self.queue = queue
        self.broker = broker
        self.limit = limit
        self.receiver = Receiver(
            broker, max_async_tasks=limit, run_startup=False, ack_type=AcknowledgeType.WHEN_SAVED
        )
        self.running: set[asyncio.Task[None]] = set()

    async def consume(self, stopping: asyncio.Event) -> None:
        stop_waiter = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                if len(self.running) >= self.limit:
                    await asyncio.wait({*self.running, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    batch = await self.broker.read(self.limit - len(self.running))
                except (RedisError, OSError) as err:
                    log.warning("reading queue %s failed (%s); retrying in a second", self.queue, err)
                    await asyncio.wait({stop_waiter}, timeout=1.0)
                    continue
                if stopping.is_set():
                    break  # read during shutdown: left pending, handed back below
                for message in batch:
                    self._start(message)
        finally:
            stop_waiter.cancel()

    def _start(self, message: AckableMessage) -> None:
        task = asyncio.create_task(self._run(message))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _run(self, message: AckableMessage) -> None:
        try:
            await self.receiver.callback(message, raise_err=False)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not a task error (the retry middleware handles those) but a
            # failure around it, e.g. the dead letter could not be written.
            # Put the message back for later rather than hold it forever.
            log.exception("processing a %s message failed; it comes back later", self.queue)
            if isinstance(message, StreamMessage):
                with contextlib.suppress(RedisError, OSError):
                    await self.broker.requeue(message, REQUEUE_AFTER_CRASH_SECONDS)


async def run_worker(config: Settings, queues: Iterable[Queue] = QUEUES, metrics_port: int = 0) -> int:
    queues = tuple(queues)
    metrics = Metrics()
    brokers = build_brokers(config, queues, metrics=metrics)
    consumers = [QueueConsumer(q, b, concurrency(config, q)) for q, b in brokers.items()]
    stopping = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stopping.is_set():
            log.warning("second %s: not waiting for running tasks", signal.Signals(signum).name)
            hurry.set()
        else:
            log.info("%s: stopping (grace %ss)", signal.Signals(signum).name, config.jobs.shutdown_grace_seconds)
            stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    for broker in brokers.values():
        broker.is_worker_process = True
        await broker.startup()
    metrics_server = None
    if metrics_port:
        report_queues(metrics, next(iter(brokers.values())).redis, config, CONSUMER_GROUP)
        metrics_server = await serve_metrics(metrics, config.metrics.process_host, metrics_port)
    log.info(
        "worker ready: queues %s, pid %d, consumer %s",
        ", ".join(f"{c.queue} ({c.limit})" for c in consumers),
        os.getpid(),
        consumers[0].broker.consumer_name.rsplit(":", 1)[0],
    )

    consuming = [asyncio.create_task(c.consume(stopping), name=f"consume-{c.queue}") for c in consumers]
    await stopping.wait()
    deadline = time.monotonic() + config.jobs.shutdown_grace_seconds
    await asyncio.gather(*consuming, return_exceptions=True)

    running = {task for c in consumers for task in c.running}
    if running:
        log.info("waiting for %d running task(s)", len(running))
        all_done = asyncio.ensure_future(asyncio.wait(running))
        hurry_waiter = asyncio.ensure_future(hurry.wait())
        wait_for = max(0.0, deadline - CLOSE_RESERVE_SECONDS - time.monotonic())
        await asyncio.wait({all_done, hurry_waiter}, timeout=wait_for, return_when=asyncio.FIRST_COMPLETED)
        all_done.cancel()
        hurry_waiter.cancel()
    # Whatever is still running or was read after the stop goes back to the
    # queues now; another worker runs it. Then the local copies are stopped.
    for broker in brokers.values():
        with contextlib.suppress(RedisError, OSError):
            await broker.hand_back()
    unfinished = [task for task in running if not task.done()]
    for task in unfinished:
        task.cancel()
    if unfinished:
        log.warning("stopped %d task(s) past the grace period; their messages were handed back", len(unfinished))
        await asyncio.wait(unfinished, timeout=0.5)

    for broker in brokers.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            await asyncio.wait_for(broker.shutdown(), remaining)
        except (TimeoutError, RedisError, OSError) as err:
            log.warning("closing the broker failed or took too long (%s)", err or type(err).__name__)
    if metrics_server is not None:
        await metrics_server.cleanup()
    log.info("worker stopped")
    return 0


def serve_worker(config: Settings, queues: Iterable[Queue] = QUEUES, metrics_port: int = 0) -> int:
    """Run the worker in a fresh event loop; returns the exit status."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run_worker(config, queues, metrics_port))
    finally:
        # Tasks stopped past the grace period had a moment to unwind; the
        # process does not wait for one that will not.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=1.0))
        loop.close()
