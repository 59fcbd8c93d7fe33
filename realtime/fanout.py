"""Fan-out across instances through Redis pub/sub, with a listener that cannot die unnoticed.

Every instance's Socket.IO server uses a :class:`RedisFanout` as its client
manager: an emit is delivered to the local clients and published on one
channel; every other instance hears it and delivers to its own clients.

python-socketio's stock ``AsyncRedisManager`` shares one client between
publishing and listening, replaces (without closing) both on every
reconnect, and its listener has gone deaf without a trace in the past
(python-socketio#1581: one worker never re-subscribed after Redis killed the
pub/sub clients; #826: subscribed but not processing). This class implements
the two extension points ``AsyncPubSubManager`` documents (``_publish`` and
``_listen``) instead:

- publishing has a client of its own; a failure is logged (at most every few
  seconds) and counted, never raised: during a Redis outage an emit reaches
  the local clients only, and the server keeps serving;
- the listener opens a fresh connection for each subscription, closes the
  previous one, and retries with a capped backoff;
- every ``heartbeat_interval`` the instance publishes ``hb:<host id>`` and
  expects to hear it back through its own listener. A watchdog restarts the
  listener task when it has ended or stayed deaf for ``heartbeat_misses``
  intervals, and :meth:`check` (the readiness probe) raises meanwhile.

Delivery to this instance's clients: python-socketio encodes a broadcast
once but then starts a task per recipient, which queues the packet for the
connection's writer task (39 to 88 µs per recipient; ``bench/fanout.py`` measures it). With
``direct=True`` the frame is built once and written straight to each
recipient's websocket when that is safe: the connection is an upgraded
websocket, nothing is queued for it, and its transport has nothing
buffered (so nothing written earlier can be overtaken and the write cannot
block on a slow client). Every other recipient (long-polling, busy, slow,
closing) gets the stock path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from engineio import packet as eio_packet
from redis.asyncio import Redis
from redis.exceptions import RedisError
from socketio import packet as sio_packet
from socketio.async_pubsub_manager import AsyncPubSubManager

from lms.aio import raise_if_cancelling
from lms.clients import redis_client
from lms.config import RedisSettings

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = b"hb:"
# "end:<host id> <user id> <cutoff>": close the user's sockets authenticated with tokens issued up to cutoff.
END_SESSIONS_PREFIX = b"end:"

SessionsEnded = Callable[[str, float], Coroutine[Any, Any, None]]
LOG_EVERY_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 2.0


class ListenerDown(Exception):
    """The instance does not currently hear the fan-out channel."""


class RedisFanout(AsyncPubSubManager):  # type: ignore[misc]
    name = "lms-redis"

    def __init__(
        self,
        redis: RedisSettings,
        *,
        channel: str,
        write_only: bool = False,
        heartbeat_interval: float = 5.0,
        heartbeat_misses: int = 3,
        direct: bool = True,
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=log)
        self.redis_settings = redis
        self.heartbeat_interval = heartbeat_interval
        self.deaf_after = heartbeat_interval * heartbeat_misses
        self.direct = direct
        self.publish_failures = 0
        # Deliveries to this instance's clients: written straight to the websocket, or queued.
        self.delivered_direct = 0
        self.delivered_queued = 0
        self.listener_restarts = 0
        self.subscribed = False
        self._subscribed_event = asyncio.Event()
        # Monotonic time the listener last heard this instance's own heartbeat.
        self.last_heard = 0.0
        self._channel = channel.encode()
        self._publisher: Redis | None = None
        self._listener_client: Redis | None = None
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._heartbeat = HEARTBEAT_PREFIX + self.host_id.encode()
        self._last_log = 0.0
        # Closes this instance's sockets of a user whose sessions ended (realtime/server.py).
        self.on_sessions_ended: SessionsEnded | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _client(self) -> Redis:
        # No retries inside redis-py (lms/clients.py): retrying is done here, cancellation-aware.
        return redis_client(self.redis_settings, retries=False)

    # -- publishing -------------------------------------------------------

    async def _publish(self, data: Any) -> None:
        await self.publish_raw(self.json.dumps(data))

    async def publish_raw(self, payload: str | bytes) -> bool:
        """Publish on the channel; False (logged, counted) when Redis is unavailable or the fan-out stopped."""
        if self._stopping:
            return False  # a client opened now would never be closed
        if self._publisher is None:
            self._publisher = self._client()
        for attempt in (1, 2):  # a second try covers a pooled connection Redis dropped
            try:
                await self._publisher.publish(self.channel, payload)
            except (RedisError, OSError) as err:
                raise_if_cancelling(err)
                if attempt == 1:
                    continue
                self.publish_failures += 1
                now = time.monotonic()
                if now - self._last_log >= LOG_EVERY_SECONDS:
                    self._last_log = now
                    log.warning(
                        "fan-out publish failed (%s); events reach this instance's clients only "
                        "(%d failures so far)", err, self.publish_failures,
                    )  # fmt: skip
                return False
            return True
        return False

    async def end_sessions(self, user_id: str, cutoff: float) -> None:
        """Close the user's sockets here and on every other instance (theirs through the channel)."""
        if self.on_sessions_ended is not None:
            await self.on_sessions_ended(user_id, cutoff)
        await self.publish_raw(END_SESSIONS_PREFIX + f"{self.host_id} {user_id} {cutoff!r}".encode())

    def _heard_sessions_ended(self, data: bytes) -> None:
        try:
            host, user_id, cutoff = data[len(END_SESSIONS_PREFIX) :].decode().split(" ")
            when = float(cutoff)
        except ValueError:
            log.warning("fan-out: malformed end-of-sessions message %r", data[:80])
            return
        if host != self.host_id and self.on_sessions_ended is not None:
            task = asyncio.create_task(self.on_sessions_ended(user_id, when))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- local delivery ---------------------------------------------------

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        if not self.direct or message.get("callback") is not None or message.get("binary"):
            await super()._handle_emit(message)
            return
        data = message["data"]
        args = list(data) if isinstance(data, list) else [data]
        if args == [None]:  # as python-socketio does: emit(event) and emit(event, None) send no argument
            args = []
        await self.deliver(
            message["event"], args, namespace=message.get("namespace") or "/",
            room=message.get("room"), skip_sid=message.get("skip_sid"),
        )  # fmt: skip

    async def deliver(self, event: str, args: list[Any], *, namespace: str, room: Any, skip_sid: Any) -> None:
        """Send an event (no ack, no binary) to this instance's clients in ``room``."""
        if namespace not in self.rooms:
            return
        encoded = self.server.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, *args]).encode()
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = eio_pkt.encode()
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        sockets = self.server.eio.sockets
        queued = []
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            socket = sockets.get(eio_sid)
            if socket is not None and _can_write_directly(socket):
                try:
                    await socket.lms_ws.send_str(frame)
                except (ConnectionError, RuntimeError):
                    pass  # closing under us: the stock path decides
                else:
                    self.delivered_direct += 1
                    continue
            queued.append(asyncio.create_task(self.server._send_eio_packet(eio_sid, eio_pkt)))
        if queued:
            self.delivered_queued += len(queued)
            await asyncio.wait(queued)

    # -- listening --------------------------------------------------------

    async def _listen(self) -> AsyncIterator[bytes]:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopping:
            client = self._client()
            self._listener_client = client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await client.initialize()  # a cluster client learns its nodes before it can subscribe
                await pubsub.subscribe(self.channel)
                self.subscribed = True
                self._subscribed_event.set()
                backoff = BACKOFF_FIRST_SECONDS
                log.info("fan-out listener subscribed to %s", self.channel)
                async for message in pubsub.listen():
                    if message.get("type") != "message" or message.get("channel") != self._channel:
                        continue
                    data = message["data"]
                    if data.startswith(HEARTBEAT_PREFIX):
                        if data == self._heartbeat:
                            self.last_heard = time.monotonic()
                        continue
                    if data.startswith(END_SESSIONS_PREFIX):
                        self._heard_sessions_ended(data)
                        continue
                    yield data
                if self._stopping:
                    return
                log.warning("fan-out listener: subscription ended; subscribing again")
            except Exception as err:  # Redis errors, and any surprise of a client library: back off, never spin
                # redis-py reports a cancelled read as ConnectionError: stop, do not retry.
                raise_if_cancelling(err)
                log.warning("fan-out listener lost Redis (%s); retrying in %.1f s", err, backoff)
            finally:
                self.subscribed = False
                self._subscribed_event.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    # -- supervision ------------------------------------------------------

    @property
    def listener(self) -> asyncio.Task[None] | None:
        task: asyncio.Task[None] | None = getattr(self, "thread", None)
        return task

    async def wait_subscribed(self, seconds: float) -> bool:
        """Wait (bounded) for the first subscription, so that /ready is true once start-up ends."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed_event.wait(), seconds)
        return self.subscribed

    def start(self) -> None:
        """Start the listener (python-socketio would wait for the first client) and the watchdog."""
        if self.write_only:
            return
        self.initialize()
        self.server.manager_initialized = True
        self.last_heard = time.monotonic()
        self._watchdog = asyncio.create_task(self._watch(), name="fanout-watchdog")

    async def _watch(self) -> None:
        # Checked after every wait: once stop() began nothing is restarted, even
        # if a library swallowed the cancellation meant for this task.
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_interval)
            if self._stopping:
                return
            try:
                await self.publish_raw(self._heartbeat)
                self._supervise()
            except Exception as err:  # the watchdog must outlive anything it watches
                raise_if_cancelling(err)
                log.exception("fan-out watchdog error")

    def _supervise(self) -> None:
        listener = self.listener
        if listener is None or self._stopping:
            return
        reason = None
        if listener.done():
            reason = "the listener task ended"
        elif self.subscribed and time.monotonic() - self.last_heard > self.deaf_after:
            # Subscribed but not hearing its own heartbeats: a half-open
            # connection, or a listener stuck somewhere. Start over.
            reason = f"no heartbeat heard for {time.monotonic() - self.last_heard:.1f} s"
            listener.cancel()
        if reason is not None:
            self.listener_restarts += 1
            log.error("fan-out listener of %s restarted: %s", self.host_id, reason)
            self.last_heard = time.monotonic()
            self.thread = self.server.start_background_task(self._thread)

    def check(self) -> None:
        """Raise :class:`ListenerDown` unless this instance hears the channel."""
        listener = self.listener
        if listener is None or listener.done():
            raise ListenerDown("the fan-out listener is not running")
        if not self.subscribed:
            raise ListenerDown("the fan-out listener is not subscribed (Redis unavailable?)")
        silent = time.monotonic() - self.last_heard
        if silent > self.deaf_after:
            raise ListenerDown(f"the fan-out listener has not heard its heartbeat for {silent:.1f} s")

    def is_up(self) -> bool:
        try:
            self.check()
        except ListenerDown:
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for t in (self._watchdog, self.listener) if t is not None]
        for task in tasks:
            task.cancel()
        _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS) if tasks else (set(), set())
        for task in pending:
            log.warning("fan-out task %s did not stop", task.get_name())
        for client in (self._publisher, self._listener_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        self._publisher = self._listener_client = None


def _can_write_directly(socket: Any) -> bool:
    ws = getattr(socket, "lms_ws", None)
    if ws is None or ws.closed or socket.closing or socket.closed or not socket.upgraded or socket.upgrading:
        return False
    # Something waiting in the Engine.IO queue or in the transport's buffer
    # (a busy or slow client, or a writer paused mid-batch) must go first.
    transport = socket.lms_transport
    return bool(socket.queue.empty()) and transport is not None and transport.get_write_buffer_size() == 0
