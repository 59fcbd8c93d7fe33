"""The stream broker's delivery mechanics against a real Redis, several consumers in one process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import redis.asyncio as aioredis
from taskiq import AckableMessage

from jobs.broker import build_brokers, build_producer, stream_name
from jobs.queue import BrokerJobQueue
from jobs.streams import StreamBroker, dead_key, delayed_key
from jobs.tasks import all_specs
from lms.config import Settings
from tests.conftest import Servers, make_config
from tests.polling import eventually

IDLE = 1.0

Factory = Callable[..., Coroutine[Any, Any, StreamBroker]]


@pytest.fixture
def jobs_config(servers: Servers) -> Settings:
    return make_config(servers, jobs={"idle_redelivery_seconds": int(IDLE)})


@pytest.fixture
async def consumers(jobs_config: Settings) -> AsyncIterator[Factory]:
    """Consumers of the default queue, started as clients (no resources, no heartbeat task)."""
    started: list[StreamBroker] = []

    async def start(name: str, config: Settings = jobs_config) -> StreamBroker:
        broker = build_brokers(config, ["default"], consumer=name)["default"]
        await broker.startup()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        await broker.shutdown()


@pytest.fixture
async def kick(jobs_config: Settings) -> AsyncIterator[Callable[..., Coroutine[Any, Any, str]]]:
    producer = build_producer(jobs_config)
    queue = BrokerJobQueue(producer, all_specs())
    yield queue.kick
    await producer.shutdown()


async def read_until(broker: StreamBroker, count: int, timeout: float) -> list[AckableMessage]:
    """``count`` messages, read with blocking reads (Redis wakes the read when one arrives)."""
    got: list[AckableMessage] = []

    async def enough() -> list[AckableMessage]:
        got.extend(await broker.read(count - len(got), block_ms=100))
        return got if len(got) >= count else []

    return await eventually(enough, timeout=timeout, what=f"{count} message(s) read", interval=0)


async def test_a_message_kicked_before_any_consumer_group_existed_is_delivered(
    kick: Any, consumers: Factory, redis: aioredis.Redis, jobs_config: Settings
) -> None:
    await kick("diagnostics.noop")  # nothing has created the group yet
    assert await redis.xlen(stream_name(jobs_config, "default")) == 1
    worker = await consumers("w1")
    assert len(await read_until(worker, 1, timeout=5)) == 1


async def test_a_silent_consumers_message_is_reclaimed_on_a_timer_without_new_traffic(
    kick: Any, consumers: Factory
) -> None:
    dead, alive = await consumers("dead"), await consumers("alive")
    await kick("diagnostics.noop")
    [held] = await read_until(dead, 1, timeout=5)
    started = time.monotonic()
    # No new messages arrive: only the reclaim timer can bring this back.
    [again] = await read_until(alive, 1, timeout=IDLE + 5)
    waited = time.monotonic() - started
    assert again.data == held.data
    assert waited >= IDLE * 0.9  # not before it went idle
    await again.ack()
    assert await alive.read(1, block_ms=0) == []


async def test_heartbeats_keep_a_running_task_from_being_handed_to_another_worker(
    kick: Any, consumers: Factory, redis: aioredis.Redis, jobs_config: Settings
) -> None:
    busy, other = await consumers("busy"), await consumers("other")
    await kick("diagnostics.noop")
    [held] = await read_until(busy, 1, timeout=5)
    for _ in range(8):  # well past the idle timeout, beating every third of it
        assert await busy.heartbeat() == 1
        assert await other.read(1, block_ms=int(IDLE * 1000 / 3)) == []
    # The holder falls silent: now the message moves.
    [moved] = await read_until(other, 1, timeout=IDLE + 5)
    assert moved.data == held.data


async def test_hand_back_makes_held_messages_available_at_once(
    kick: Any, consumers: Factory, redis: aioredis.Redis, jobs_config: Settings, servers: Servers
) -> None:
    # Idle for a minute: a message only reclaimed after going idle could not be read within 15 s.
    patient = make_config(servers, jobs={"idle_redelivery_seconds": 60})
    leaving, staying = await consumers("leaving", patient), await consumers("staying", patient)
    for _ in range(2):
        await kick("diagnostics.noop")
    held = await read_until(leaving, 2, timeout=5)
    assert await leaving.hand_back() == 2
    taken = await read_until(staying, 2, timeout=15)  # handed back, not reclaimed
    assert {m.data for m in taken} == {m.data for m in held}
    stream = stream_name(jobs_config, "default")
    consumers_left = {c["name"] for c in await redis.xinfo_consumers(stream, "workers")}  # type: ignore[arg-type]
    assert b"leaving:default" not in consumers_left


async def test_a_delayed_message_waits_in_redis_until_due(
    consumers: Factory, redis: aioredis.Redis, jobs_config: Settings
) -> None:
    worker = await consumers("w")
    producer = build_producer(jobs_config)
    try:
        task = producer.find_task("diagnostics.noop")
        assert task is not None
        message = producer.formatter.dumps(task.kicker()._prepare_message())
        await worker.kick_later(message, 1.0)
    finally:
        await producer.shutdown()
    assert await redis.zcard(delayed_key(stream_name(jobs_config, "default"))) == 1
    assert await worker.read(1, block_ms=200) == []
    [due] = await read_until(worker, 1, timeout=5)
    assert due.data == message.message
    assert await redis.zcard(delayed_key(stream_name(jobs_config, "default"))) == 0


async def test_trimming_drops_acknowledged_entries_and_keeps_pending_and_new_ones(
    kick: Any, consumers: Factory, redis: aioredis.Redis, jobs_config: Settings
) -> None:
    worker = await consumers("w")
    for _ in range(3):
        await kick("diagnostics.noop")
    first, second, third = await read_until(worker, 3, timeout=5)
    await first.ack()
    await third.ack()  # the second stays pending
    await kick("diagnostics.noop")  # not delivered yet
    await worker._trim()
    stream = stream_name(jobs_config, "default")
    kept = [fields[b"data"] for _, fields in await redis.xrange(stream)]
    assert kept[0] == second.data and len(kept) == 3  # second, third (newer than a pending one), the new one
    [new] = await read_until(worker, 1, timeout=5)
    assert new.data == kept[-1]


async def test_a_flushed_redis_does_not_stop_a_consumer(kick: Any, consumers: Factory, redis: aioredis.Redis) -> None:
    worker = await consumers("w")
    assert await worker.read(1, block_ms=0) == []
    await redis.flushdb()  # the stream and its group are gone
    assert await worker.read(1, block_ms=0) == []  # recreates them
    await kick("diagnostics.noop")
    assert len(await read_until(worker, 1, timeout=5)) == 1


async def test_every_queue_has_its_own_stream(kick: Any, redis: aioredis.Redis, jobs_config: Settings) -> None:
    await kick("send_email", template="welcome", to="a@example.com", context={"full_name": "A"})
    await kick("diagnostics.probe_slow", key="k")
    await kick("diagnostics.noop")
    lengths = {q: await redis.xlen(stream_name(jobs_config, q)) for q in ("emails", "default", "slow")}  # type: ignore[arg-type]
    assert lengths == {"emails": 1, "default": 1, "slow": 1}
    await asyncio.sleep(0)


async def test_a_message_that_keeps_killing_its_workers_is_set_aside(
    kick: Any, consumers: Factory, redis: aioredis.Redis, jobs_config: Settings
) -> None:
    await kick("diagnostics.noop")
    first = await consumers("first")
    [held] = await read_until(first, 1, timeout=5)  # delivery 1; "first" dies holding it
    second = await consumers("second")
    second.max_deliveries = 2
    [again] = await read_until(second, 1, timeout=IDLE + 5)  # delivery 2; "second" dies too
    third = await consumers("third")
    third.max_deliveries = 2
    stream = stream_name(jobs_config, "default")

    async def set_aside() -> bool:
        # Every read once the message is idle again would be delivery 3: over the limit, never handed out.
        assert await third.read(1, block_ms=100) == []
        return bool(await redis.xlen(dead_key(stream)))

    await eventually(set_aside, timeout=IDLE + 15, what="the message set aside", interval=0)
    [(_, fields)] = await redis.xrange(dead_key(stream))
    assert fields[b"data"] == held.data == again.data and fields[b"deliveries"] == b"3"
    assert int((await redis.xpending(stream, "workers"))["pending"]) == 0  # type: ignore[arg-type]
