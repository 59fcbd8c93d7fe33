"""Job system figures against a real Redis, a real PostgreSQL and a real `lms worker` process.

    python3 bench/jobs.py [--tasks 5000] [--rate 200] [--seconds 15]

1. Enqueue rate: ``BrokerJobQueue.kick`` of no-op tasks, one awaited kick at
   a time and 50 concurrent kickers (the web app's side).
2. No-op throughput of one worker (default queue, its configured
   concurrency): a backlog of no-ops between two probe tasks is drained;
   the worker's own timestamps at the first and the last probe give the rate.
3. Kick -> start latency at a steady rate: probe tasks kicked on a fixed
   schedule; each records ``time.time() - sent_at`` when it starts (same
   machine, same clock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from bench.harness import ms, percentiles, platform
from jobs.broker import build_producer
from jobs.queue import BrokerJobQueue
from jobs.tasks import all_specs
from lms.config import load_config


def spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lms.cli", "worker", "--queues", "default"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(process: subprocess.Popen[bytes], redis: aioredis.Redis, stream: str) -> None:
    """Ready once the worker's consumer shows up in the group."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await redis.xinfo_consumers(stream, "workers"):
            return
        if process.poll() is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError("the worker did not start")


async def wait_list(redis: aioredis.Redis, key: str, count: int, within: float) -> list[dict[str, float]]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await redis.llen(key) >= count:
            return [json.loads(x) for x in await redis.lrange(key, 0, -1)]
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{key}: fewer than {count} entries after {within}s")


async def enqueue_rate(queue: BrokerJobQueue, count: int) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(count):
        await queue.kick("diagnostics.noop")
    sequential = count / (time.perf_counter() - started)

    async def kicker(n: int) -> None:
        for _ in range(n):
            await queue.kick("diagnostics.noop")

    started = time.perf_counter()
    await asyncio.gather(*(kicker(count // 50) for _ in range(50)))
    concurrent = (count // 50 * 50) / (time.perf_counter() - started)
    return sequential, concurrent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks per measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="steady kick rate for the latency run (tasks/s)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run")
    parser.add_argument("--log-level", default="WARNING", help="the worker's log level (INFO logs every task)")
    args = parser.parse_args()

    with platform() as servers:
        env = servers.env(LMS_LOG_LEVEL=args.log_level)
        os.environ.update({k: v for k, v in env.items() if k.startswith("LMS_")})
        config = load_config()
        producer = build_producer(config)
        await producer.startup()
        queue = BrokerJobQueue(producer, all_specs())
        redis = aioredis.Redis.from_url(servers.redis_url)
        print(f"host: {host.platform()}, {os.cpu_count()} CPUs, Python {host.python_version()}")
        print(
            f"worker: `lms worker --queues default`, concurrency {config.jobs.default_concurrency}, "
            f"one process, log level {args.log_level}"
        )

        # 1. Enqueue rate (no worker yet: the kicks only append to the stream).
        sequential, concurrent = await enqueue_rate(queue, args.tasks)
        print(
            f"enqueue rate: {sequential:,.0f} kicks/s one at a time, "
            f"{concurrent:,.0f} kicks/s with 50 concurrent kickers"
        )

        # 2. Throughput: the backlog from (1) plus a marked backlog, drained by one worker.
        await queue.kick("diagnostics.probe", key="bench:first")
        for _ in range(args.tasks):
            await queue.kick("diagnostics.noop")
        await queue.kick("diagnostics.probe", key="bench:last")
        backlog = await redis.xlen(f"{config.jobs.stream_prefix}:default")
        worker = spawn_worker(env)
        await wait_ready(worker, redis, f"{config.jobs.stream_prefix}:default")
        try:
            first = (await wait_list(redis, "bench:first:started", 1, 120))[0]
            last = (await wait_list(redis, "bench:last:started", 1, 600))[0]
            drained = last["started_at"] - first["started_at"]
            print(
                f"no-op throughput, one worker: {(args.tasks + 1) / drained:,.0f} tasks/s "
                f"({args.tasks:,} no-ops in {drained:.2f} s; backlog {backlog:,} messages)"
            )

            # 3. Latency at a steady rate (the backlog is gone: wait for the tail).
            await asyncio.sleep(1.0)
            total = int(args.rate * args.seconds)
            interval = 1.0 / args.rate
            began = time.perf_counter()
            for i in range(total):
                delay = began + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await queue.kick("diagnostics.probe", key="bench:latency", sent_at=time.time())
            achieved = total / (time.perf_counter() - began)
            records = await wait_list(redis, "bench:latency:started", total, 120)
            stats = percentiles([r["latency"] for r in records])
            print(
                f"kick -> start latency at {achieved:,.0f} tasks/s for {args.seconds:.0f} s ({total:,} tasks): "
                f"p50 {ms(stats['p50'])}, p90 {ms(stats['p90'])}, p99 {ms(stats['p99'])}, max {ms(stats['max'])}"
            )
        finally:
            worker.terminate()
            worker.wait(30)
            await redis.aclose()
            await producer.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
