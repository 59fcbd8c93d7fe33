"""The Redis stream broker, with what at-least-once delivery needs and taskiq-redis 1.2 lacks.

``taskiq_redis.RedisStreamBroker`` gives acknowledged delivery (XREADGROUP,
XACK). This subclass adds:

- **Reclaim on a timer.** Upstream runs XAUTOCLAIM only after a read returns
  messages, so a dead worker's message waited for new traffic. Here every
  read checks, at most every ``reclaim_interval``, for messages idle longer
  than ``idle_timeout`` and takes them over.
- **Heartbeats.** A live worker refreshes the idle time of the messages it
  holds (XCLAIM of its own pending entries, JUSTID) every third of
  ``idle_timeout``: only a dead worker's messages go idle, so a long task is
  not handed to a second worker while the first still runs it.
- **Delayed messages.** Retries wait in a sorted set per stream (score: when
  due) and a Lua script moves due ones to the stream. The delay lives in
  Redis, not in a sleeping coroutine that dies with its process.
- **Hand-back.** At shutdown a worker re-adds the messages it still holds to
  the stream and acknowledges its copies (one Lua script), so the other
  workers take them at once instead of after ``idle_timeout``.
- **A cancel-safe read.** ``listen`` (used by the Taskiq CLI's receiver) runs
  each blocking read in its own task behind ``asyncio.shield``: cancelling a
  blocked XREADGROUP inside redis-py 8 left the receiver waiting forever: a
  ``taskiq worker`` on taskiq-redis 1.2.3/1.2.4 never exited on SIGTERM
  (``tests/test_jobs_delivery.py`` checks that ours does).
- **Crash loops set aside.** A message taken over from dead workers more
  than ``max_deliveries`` times goes to ``<stream>:dead`` instead of killing
  the next worker too.
- **Trimming.** Acknowledged entries older than the oldest pending one are
  removed (XTRIM MINID) so streams do not grow without bound; trimming never
  drops a message that is pending or not yet delivered.

Consumer groups are created at id ``0``: a message kicked before the group
existed is still delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage
from taskiq.message import BrokerMessage
from taskiq_redis import RedisStreamBroker

log = logging.getLogger(__name__)

# Refresh the idle time of this consumer's pending entries (they are alive).
HEARTBEAT = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
if #pending == 0 then return 0 end
local args = {KEYS[1], ARGV[1], ARGV[2], 0}
for _, entry in ipairs(pending) do args[#args + 1] = entry[1] end
args[#args + 1] = 'JUSTID'
redis.call('XCLAIM', unpack(args))
return #pending
"""

# Re-add this consumer's pending entries at the end of the stream and
# acknowledge the originals, atomically: nothing is lost or doubled in between.
HAND_BACK = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[3]), ARGV[2])
local returned = 0
for _, entry in ipairs(pending) do
  local id = entry[1]
  local found = redis.call('XRANGE', KEYS[1], id, id)
  if #found > 0 then
    local args = {KEYS[1], '*'}
    for _, value in ipairs(found[1][2]) do args[#args + 1] = value end
    redis.call('XADD', unpack(args))
    returned = returned + 1
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return returned
"""

# Move due delayed messages (sorted set, score = due time) to the stream.
PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, data in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'data', data)
  redis.call('ZREM', KEYS[1], data)
end
return #due
"""

TRIM_INTERVAL_SECONDS = 60.0
# Due retries reach the stream within about this long.
PROMOTE_INTERVAL_SECONDS = 0.5
# A consumer that holds nothing and has not read for this long is gone.
STALE_CONSUMER_MS = 3_600_000
MAX_HELD = 1000


def delayed_key(stream: str) -> str:
    return f"{stream}:delayed"


def dead_key(stream: str) -> str:
    return f"{stream}:dead"


class StreamMessage(AckableMessage):
    """A delivered message and where it came from (to requeue it)."""

    stream: str
    entry_id: str


class StreamBroker(RedisStreamBroker):
    """Consumes ``streams`` (one per queue it serves) and can kick to any of ``all_streams``."""

    def __init__(
        self,
        url: str,
        *,
        streams: Sequence[str],
        all_streams: Sequence[str],
        consumer_group: str,
        consumer_name: str,
        idle_timeout_seconds: float,
        block_ms: int = 1000,
        max_deliveries: int = 10,
        **connection_kwargs: Any,
    ) -> None:
        first, *others = streams
        super().__init__(
            url,
            queue_name=first,
            consumer_group_name=consumer_group,
            consumer_name=consumer_name,
            consumer_id="0",
            idle_timeout=int(idle_timeout_seconds * 1000),
            xread_block=block_ms,
            additional_streams={s: ">" for s in others},
            **connection_kwargs,
        )
        self.streams = tuple(streams)
        self.all_streams = tuple(dict.fromkeys([*all_streams, *streams]))
        self.idle_timeout_seconds = idle_timeout_seconds
        # Deliveries (first read plus takeovers from dead workers) before a
        # message is set aside as a crash loop.
        self.max_deliveries = max_deliveries
        # Reclaim checks often enough that a dead worker's message waits at
        # most about idle_timeout * 1.25 (plus one read).
        self.reclaim_interval = min(max(idle_timeout_seconds / 4, 0.1), 5.0)
        # An idle consumer wakes at least this often to move due retries.
        self.block_ms = min(block_ms, int(self.reclaim_interval * 1000) or 1, int(PROMOTE_INTERVAL_SECONDS * 1000))
        self.redis = Redis(connection_pool=self.connection_pool)
        self._heartbeat = self.redis.register_script(HEARTBEAT)
        self._hand_back = self.redis.register_script(HAND_BACK)
        self._promote = self.redis.register_script(PROMOTE)
        self._next_reclaim = 0.0
        self._next_promote = 0.0
        self._next_trim = 0.0
        self._autoclaim_cursor = dict.fromkeys(self.streams, "0-0")
        self._heartbeat_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------

    async def startup(self) -> None:
        await super().startup()
        if self.is_worker_process and self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name="jobs-heartbeat")

    async def shutdown(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None
        if self.is_worker_process:
            with contextlib.suppress(RedisError, OSError):
                await self.hand_back()
        await self.redis.aclose()
        await super().shutdown()

    async def _declare_consumer_group(self) -> None:
        for stream in self.all_streams:
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                await self.redis.xgroup_create(stream, self.consumer_group_name, id="0", mkstream=True)

    # -- producing ---------------------------------------------------------

    async def kick(self, message: BrokerMessage) -> None:
        """Upstream's XADD, on the broker's one client: upstream builds a client per message,
        which cost a quarter of a webhook's CPU in bench/payments.py."""
        stream = message.labels.get("queue_name") or self.queue_name
        await self.redis.xadd(stream, {b"data": message.message}, maxlen=self.maxlen, approximate=self.approximate)

    async def kick_later(self, message: BrokerMessage, delay_seconds: float) -> None:
        """Deliver ``message`` after ``delay_seconds`` (a retry with backoff)."""
        stream = message.labels.get("queue_name") or self.queue_name
        await self.redis.zadd(delayed_key(stream), {message.message: time.time() + delay_seconds})

    # -- consuming ---------------------------------------------------------

    async def read(self, count: int, block_ms: int | None = None) -> list[AckableMessage]:
        """Up to ``count`` messages: reclaimed ones first, then new ones (waiting up to ``block_ms``, 0: no wait)."""
        messages: list[AckableMessage] = []
        now = time.monotonic()
        if now >= self._next_promote:
            self._next_promote = now + PROMOTE_INTERVAL_SECONDS
            await self._promote_due()
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.reclaim_interval
            messages.extend(await self._reclaim(count))
        if now >= self._next_trim:
            self._next_trim = now + TRIM_INTERVAL_SECONDS
            await self._trim()
        wanted = count - len(messages)
        if wanted <= 0:
            return messages
        try:
            fetched = await self.redis.xreadgroup(
                self.consumer_group_name,
                self.consumer_name,
                dict.fromkeys(self.streams, ">"),
                count=wanted,
                # Reclaimed work is ready: do not block on top of it. (BLOCK 0
                # would wait forever; 0 here means "do not wait".)
                block=None if messages or block_ms == 0 else (block_ms or self.block_ms),
            )
        except ResponseError as err:
            if "NOGROUP" not in str(err):
                raise
            # The stream or the group vanished (Redis restarted without
            # persistence, FLUSHDB): create them again and carry on.
            log.warning("consumer group missing on %s; creating it again", ", ".join(self.streams))
            await self._declare_consumer_group()
            return messages
        for stream, entries in fetched or []:  # type: ignore[str-unpack]
            messages.extend(await self._ackable(_text(stream), entries))  # type: ignore[arg-type]
        return messages

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:  # type: ignore[override]
        """For the Taskiq CLI's receiver: one message at a time, cancel-safe."""
        while True:
            # A cancelled receiver cancels only the shield; the read finishes
            # on its own (within block_ms) and what it took is handed back at
            # shutdown or reclaimed.
            reading = asyncio.ensure_future(self.read(1))
            reading.add_done_callback(_consume_error)
            try:
                batch = await asyncio.shield(reading)
            except (RedisError, OSError) as err:
                log.warning("reading jobs failed (%s); trying again in a second", err)
                await asyncio.sleep(1)
                continue
            for message in batch:
                yield message

    async def _ackable(self, stream: str, entries: Any) -> list[AckableMessage]:
        result: list[AckableMessage] = []
        for entry_id, fields in entries:
            ack = self._ack_generator(id=entry_id, queue_name=stream)
            if not fields:  # deleted while pending: nothing left to run
                await ack()
                continue
            result.append(StreamMessage(data=fields[b"data"], ack=ack, stream=stream, entry_id=_text(entry_id)))
        return result

    async def requeue(self, message: StreamMessage, delay_seconds: float) -> None:
        """Deliver this message again after a delay, and release the current delivery."""
        await self.redis.zadd(delayed_key(message.stream), {message.data: time.time() + delay_seconds})
        await self.redis.xack(message.stream, self.consumer_group_name, message.entry_id)

    async def _reclaim(self, count: int) -> list[AckableMessage]:
        messages: list[AckableMessage] = []
        for stream in self.streams:
            if len(messages) >= count:
                break
            try:
                reply = await self.redis.xautoclaim(
                    stream,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=int(self.idle_timeout_seconds * 1000),
                    start_id=self._autoclaim_cursor[stream],
                    count=count - len(messages),
                )
            except ResponseError as err:
                if "NOGROUP" in str(err):
                    continue  # read() recreates it
                raise
            cursor, entries = reply[0], reply[1]
            self._autoclaim_cursor[stream] = _text(cursor)
            claimed = await self._ackable(stream, entries)
            if claimed:
                log.warning(
                    "took over %d message(s) on %s from a worker that stopped answering", len(claimed), stream
                )
                claimed = await self._bury_crash_loops(stream, claimed)
            messages.extend(claimed)
        return messages

    async def _bury_crash_loops(self, stream: str, claimed: list[AckableMessage]) -> list[AckableMessage]:
        """Set aside messages whose every delivery ended with its worker gone.

        A task that kills its worker (out of memory, a segfault in a C
        library) would otherwise take down one worker after another forever.
        Past ``max_deliveries`` the message goes to ``<stream>:dead`` with the
        count, for a human; task errors never get here (they are retried or
        dead-lettered in PostgreSQL by the retry middleware).
        """
        pending = await self.redis.xpending_range(
            stream, self.consumer_group_name, min="-", max="+", count=MAX_HELD, consumername=self.consumer_name
        )
        deliveries = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}  # type: ignore[arg-type]
        alive: list[AckableMessage] = []
        for message in claimed:
            times = deliveries.get(message.entry_id, 0) if isinstance(message, StreamMessage) else 0
            if times <= self.max_deliveries or not isinstance(message, StreamMessage):
                alive.append(message)
                continue
            await self.redis.xadd(
                dead_key(stream), {"data": message.data, "deliveries": times, "entry_id": message.entry_id}
            )
            await self.redis.xack(stream, self.consumer_group_name, message.entry_id)
            log.error(
                "message %s on %s was delivered %d times and never finished; moved to %s",
                message.entry_id, stream, times, dead_key(stream),
            )  # fmt: skip
        return alive

    async def _promote_due(self) -> None:
        for stream in self.streams:
            await self._promote(keys=[delayed_key(stream), stream], args=[time.time(), 100])

    async def _trim(self) -> None:
        for stream in self.streams:
            try:
                pending = await self.redis.xpending(stream, self.consumer_group_name)
                groups = await self.redis.xinfo_groups(stream)
                consumers = await self.redis.xinfo_consumers(stream, self.consumer_group_name)
            except ResponseError:
                continue  # no stream or group yet
            group = next((g for g in groups if _text(g["name"]) == self.consumer_group_name), None)
            if group is None:
                continue
            oldest_kept = pending["min"] if pending["pending"] else group["last-delivered-id"]
            if _text(oldest_kept) != "0-0":
                await self.redis.xtrim(stream, minid=oldest_kept, approximate=False)
            for consumer in consumers:
                name = _text(consumer["name"])
                if name != self.consumer_name and consumer["pending"] == 0 and consumer["idle"] > STALE_CONSUMER_MS:
                    await self.redis.xgroup_delconsumer(stream, self.consumer_group_name, name)

    async def _heartbeat_loop(self) -> None:
        interval = max(self.idle_timeout_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
            except (RedisError, OSError) as err:
                log.warning("job heartbeat failed (%s); retrying", err)

    async def heartbeat(self) -> int:
        """Mark every message this consumer holds as alive; returns how many."""
        held = 0
        for stream in self.streams:
            try:
                args: list[str | int] = [self.consumer_group_name, self.consumer_name, MAX_HELD]
                held += int(await self._heartbeat(keys=[stream], args=args))
            except ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
        return held

    async def hand_back(self) -> int:
        """Give every message this consumer holds back to the stream; returns how many."""
        returned = 0
        for stream in self.streams:
            try:
                args: list[str | int] = [self.consumer_group_name, self.consumer_name, MAX_HELD]
                returned += int(await self._hand_back(keys=[stream], args=args))
            except ResponseError as err:
                if "NOGROUP" not in str(err):
                    raise
        if returned:
            log.warning("handed %d unfinished message(s) back to the queue", returned)
        return returned


def _consume_error(task: asyncio.Future[Any]) -> None:
    # An abandoned read (its receiver was cancelled) must not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
