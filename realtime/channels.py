"""Per-room pub/sub channels: an instance hears only the rooms it has members in, and knows when it is deaf.

One :class:`Channels` holds one pub/sub connection and a changing set of
channels. A room's channel is subscribed when its first local member arrives
(:meth:`Channels.watch`, counted) and dropped when the last one leaves, so an
instance with no member of a room never receives, let alone decodes, its
broadcasts. One channel per room keeps delivery ordered per room (Redis
delivers a channel's messages in publish order).

On Redis 7 the channels are sharded (``SSUBSCRIBE``/``SPUBLISH``): in a
Redis Cluster a message travels only within the shard that owns the
channel's slot, and channel names carry a hash tag (``{room}``) like the
keys of the same room. Older servers get classic ``SUBSCRIBE``/``PUBLISH``
on the same names.

The watchdog (the one realtime/fanout.py introduced for the Socket.IO
fan-out): every ``heartbeat_interval`` the instance publishes on its own
heartbeat channel and expects to hear it back; when the listener task ended
or stayed deaf for ``heartbeat_misses`` intervals it is restarted (it
re-subscribes every watched channel), and :meth:`check` raises meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from lms.aio import raise_if_cancelling

log = logging.getLogger(__name__)

OnMessage = Callable[[str, bytes], Awaitable[None]]

BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0
SUBSCRIBED_WAIT_SECONDS = 2.0
STOP_TIMEOUT_SECONDS = 2.0


class ListenerDown(Exception):
    """The instance does not currently hear its channels."""


async def sharded_pubsub(redis: Redis) -> bool:
    """Whether to use sharded pub/sub: Redis 7 and later, and not a Redis Cluster.

    On a cluster a shard channel lives on the node that owns its slot, so one
    listener would need a connection per node; plain pub/sub reaches every
    node from one connection (the cluster bus forwards it), which is what the
    channels use there.
    """
    if isinstance(redis, RedisCluster):
        return False
    try:
        info = await redis.info("server")
    except (RedisError, OSError):
        return False
    return int(str(info.get("redis_version", "0")).split(".")[0]) >= 7


def listener_trouble(
    listener: asyncio.Task[Any], *, subscribed: bool, last_heard: float, deaf_after: float
) -> str | None:
    """Why a watched listener must start over, or None (the fan-out's and the live channels' watchdogs).

    It ended; or it is subscribed but has not heard its own heartbeats for
    ``deaf_after`` seconds (a half-open connection, a listener stuck somewhere),
    in which case it is cancelled here.
    """
    if listener.done():
        return "the listener task ended"
    silent = time.monotonic() - last_heard
    if subscribed and silent > deaf_after:
        listener.cancel()
        return f"no heartbeat heard for {silent:.1f} s"
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Channels:
    def __init__(
        self,
        *,
        redis: Redis,
        on_message: OnMessage,
        heartbeat_channel: str,
        broadcast_channels: Sequence[str] = (),
        heartbeat_interval: float = 5.0,
        heartbeat_misses: int = 3,
        name: str = "channels",
    ) -> None:
        self.redis = redis
        self.on_message = on_message
        self.heartbeat_channel = heartbeat_channel
        # Always subscribed, with plain SUBSCRIBE: what any process PUBLISHes to every
        # instance (the abandoned-sessions sweep, from jobs, which do not shard).
        self.broadcast_channels = tuple(broadcast_channels)
        self.heartbeat_interval = heartbeat_interval
        self.deaf_after = heartbeat_interval * heartbeat_misses
        self.name = name
        self.sharded = False
        self.watched: Counter[str] = Counter()
        self.subscribed = False
        self.restarts = 0
        self.last_heard = 0.0
        self.received = 0
        self._pubsub: PubSub | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self._stopping = False

    # -- life ---------------------------------------------------------------

    async def start(self, wait_seconds: float = 2.0) -> bool:
        """Start listening (and watching the listener); True once subscribed within ``wait_seconds``."""
        self.sharded = await sharded_pubsub(self.redis)
        self.last_heard = time.monotonic()
        self._listener = asyncio.create_task(self._listen(), name=f"{self.name}-listener")
        self._watchdog = asyncio.create_task(self._watch(), name=f"{self.name}-watchdog")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), wait_seconds)
        return self.subscribed

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._watchdog, self._listener) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)

    # -- rooms ----------------------------------------------------------------

    async def watch(self, channel: str) -> None:
        """One more local member of the channel's room: subscribed (and confirmed) on the first."""
        self.watched[channel] += 1
        if self.watched[channel] == 1:
            await self._subscribe([channel], wait=True)

    async def unwatch(self, channel: str) -> None:
        if self.watched[channel] <= 0:
            return
        self.watched[channel] -= 1
        if self.watched[channel] == 0:
            del self.watched[channel]
            pubsub = self._pubsub
            if pubsub is not None and self.subscribed and pubsub.connection is not None:
                with contextlib.suppress(RedisError, OSError):
                    await (pubsub.sunsubscribe(channel) if self.sharded else pubsub.unsubscribe(channel))

    async def publish(self, channel: str, payload: bytes | str) -> None:
        if self.sharded:
            await self.redis.spublish(channel, payload)
        else:
            await self.redis.publish(channel, payload)

    async def _subscribe(self, channels: list[str], *, wait: bool) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.subscribed or not channels or pubsub.connection is None:
            return  # the listener subscribes every watched channel when it (re)connects
        events = [self._confirmed.setdefault(c, asyncio.Event()) for c in channels]
        try:
            await (pubsub.ssubscribe(*channels) if self.sharded else pubsub.subscribe(*channels))
        except (RedisError, OSError) as err:
            raise_if_cancelling(err)
            log.warning("%s: subscribing failed (%s); the listener retries", self.name, err)
            return
        if wait:
            # Confirmed by Redis before the caller goes on: nothing published after this is missed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), SUBSCRIBED_WAIT_SECONDS)

    # -- listening ------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopping:
            pubsub = self.redis.pubsub()  # a connection of its own, returned to the pool on close
            try:
                await self.redis.initialize()  # a cluster client learns its nodes before it can subscribe
                await pubsub.subscribe(self.heartbeat_channel, *self.broadcast_channels)
                if self.watched:
                    rooms = list(self.watched)
                    await (pubsub.ssubscribe(*rooms) if self.sharded else pubsub.subscribe(*rooms))
                self._pubsub = pubsub
                self.subscribed = True
                self._up.set()
                backoff = BACKOFF_FIRST_SECONDS
                async for message in pubsub.listen():
                    await self._handle(message)
                if not self._stopping:
                    log.warning("%s: subscription ended; subscribing again", self.name)
            except (RedisError, OSError) as err:
                raise_if_cancelling(err)
                log.warning("%s: listener lost Redis (%s); retrying in %.1f s", self.name, err, backoff)
            finally:
                self.subscribed = False
                self._up.clear()
                self._pubsub = None
                self._confirmed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = _text(message.get("channel") or b"")
        if kind in ("subscribe", "ssubscribe"):
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()
            return
        if kind not in ("message", "smessage"):
            return
        if channel == self.heartbeat_channel:
            self.last_heard = time.monotonic()
            return
        self.received += 1
        try:
            await self.on_message(channel, message["data"])
        except Exception:  # one bad message must not stop the channel
            log.exception("%s: could not handle a message on %s", self.name, channel)

    # -- supervision ------------------------------------------------------------

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                try:
                    await self.redis.publish(self.heartbeat_channel, b"hb")
                except (RedisError, OSError) as err:
                    raise_if_cancelling(err)
                    # Nothing was sent, so nothing can be missed: Redis (or the pool) is the trouble,
                    # not the listener. Deafness is judged from heartbeats that were published.
                    self.last_heard = max(self.last_heard, time.monotonic() - self.heartbeat_interval)
                self._supervise()
            except Exception as err:  # the watchdog must outlive anything it watches
                raise_if_cancelling(err)
                log.exception("%s: watchdog error", self.name)

    def _supervise(self) -> None:
        listener = self._listener
        if listener is None or self._stopping:
            return
        reason = listener_trouble(
            listener, subscribed=self.subscribed, last_heard=self.last_heard, deaf_after=self.deaf_after
        )
        if reason is not None:
            self.restarts += 1
            log.error("%s: listener restarted: %s", self.name, reason)
            self.last_heard = time.monotonic()
            self._listener = asyncio.create_task(self._relisten(listener), name=f"{self.name}-listener")

    async def _relisten(self, old: asyncio.Task[None]) -> None:
        # The old listener's cleanup must not run after the new one subscribed.
        await asyncio.wait([old], timeout=STOP_TIMEOUT_SECONDS)
        if not self._stopping:  # stop() may have begun while the old one finished
            await self._listen()

    def check(self) -> None:
        """Raise :class:`ListenerDown` unless this instance hears its channels."""
        if self._listener is None or self._listener.done():
            raise ListenerDown(f"the {self.name} listener is not running")
        if not self.subscribed:
            raise ListenerDown(f"the {self.name} listener is not subscribed (Redis unavailable?)")
        silent = time.monotonic() - self.last_heard
        if silent > self.deaf_after:
            raise ListenerDown(f"the {self.name} listener has not heard its heartbeat for {silent:.1f} s")
