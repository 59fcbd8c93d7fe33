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

Per-room channels: an emit to a shared room (a name with a colon:
``course:<id>``, ``user:<id>``, ``live:<id>``) is published on that room's
own channel (:func:`room_channel`), which an instance subscribes to while it
has a local member of the room (the first ``enter_room`` waits for Redis to
confirm the subscription; the last leave drops it). An instance with no
member of a room receives none of its broadcasts. Everything else (emits to
a whole namespace or a single sid, disconnects, room changes of remote
clients, callbacks, heartbeats) stays on the one main channel. On Redis 7
room channels are sharded (``SPUBLISH``/``SSUBSCRIBE``; realtime/channels.py
says why). One channel per room keeps each room's broadcasts in order.

Delivery to this instance's clients: python-socketio encodes a broadcast
once but then starts a task per recipient, which queues the packet for the
connection's writer task (39 to 88 µs per recipient; ``bench/fanout.py`` measures it). With
``direct=True`` the frame is built once and written straight to each
recipient's websocket when that is safe: the connection is an upgraded
websocket, nothing is queued for it (or taken by its writer and not yet
written), and its transport has nothing
buffered (so nothing written earlier can be overtaken and the write cannot
block on a slow client). Every other recipient (long-polling, busy, slow,
closing) gets the stock path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from engineio import packet as eio_packet
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError
from socketio.async_pubsub_manager import AsyncPubSubManager

from lms.aio import raise_if_cancelling
from lms.clients import redis_client
from lms.config import RedisSettings
from realtime.channels import ListenerDown, listener_trouble, sharded_pubsub
from realtime.rooms import Outgoing
from realtime.sio import PacketJson
from realtime.transport import text_frame, write_directly

log = logging.getLogger(__name__)

HEARTBEAT_PREFIX = b"hb:"
# "end:<host id> <user id> <cutoff>": close the user's sockets authenticated with tokens issued up to cutoff.
END_SESSIONS_PREFIX = b"end:"

SessionsEnded = Callable[[str, float], Coroutine[Any, Any, None]]
LOG_EVERY_SECONDS = 5.0
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 2.0


def room_channel(channel: str, namespace: str, room: Any) -> str | None:
    """The channel of a shared room (hash-tagged: one Cluster slot per room), None for any other target."""
    if not isinstance(room, str) or ":" not in room:
        return None
    return f"{channel}:{{{namespace}|{room}}}"


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
        # Room channels: sharded on Redis 7 (decided on first use); those subscribed on the listener.
        self.sharded: bool | None = None
        self._pubsub: Any = None
        self._room_channels: set[str] = set()
        self._confirmed: dict[str, asyncio.Event] = {}
        self._rooms_lock = asyncio.Lock()
        self.room_messages = 0

    def _client(self) -> Redis:
        # No retries inside redis-py (lms/clients.py): retrying is done here, cancellation-aware.
        return redis_client(self.redis_settings, retries=False)

    # -- publishing -------------------------------------------------------

    async def _publish(self, data: Any) -> None:
        payload, room = self._encoded(data)
        await self.publish_raw(payload, room=room)

    def _encoded(self, data: Any) -> tuple[str | bytes, str | None]:
        """A message's JSON and the channel it goes on: its room's for an emit without ack, else the main one."""
        room = None
        if data.get("method") == "emit" and data.get("callback") is None:
            room = room_channel(self.channel, data.get("namespace") or "/", data.get("room"))
        return self.json.dumps(data), room

    async def _is_sharded(self, client: Redis) -> bool:
        if self.sharded is None:
            self.sharded = await sharded_pubsub(client)
        return self.sharded

    async def publish_raw(self, payload: str | bytes, *, room: str | None = None) -> bool:
        """Publish on the main channel (or a room's); False (logged, counted) when Redis is unavailable
        or the fan-out stopped."""
        return await self.publish_many([(payload, room)])

    async def publish_many(self, items: Sequence[tuple[str | bytes, str | None]]) -> bool:
        """Publish each (payload, room channel or None) in order, several in one round trip (a pipeline).

        Redis runs a pipeline's commands in the order sent, so each room's
        events keep their order. A cluster client sends them one by one
        (its pipelines group commands by node, which would reorder them).
        """
        if self._stopping:
            return False  # a client opened now would never be closed
        if not items:
            return True
        if self._publisher is None:
            self._publisher = self._client()
        if len(items) > 1 and isinstance(self._publisher, RedisCluster):
            results = [await self.publish_many([item]) for item in items]
            return all(results)
        for attempt in (1, 2):  # a second try covers a pooled connection Redis dropped
            try:
                sharded = any(room is not None for _, room in items) and await self._is_sharded(self._publisher)
                if len(items) == 1:
                    await self._publish_one(self._publisher, *items[0], sharded=sharded)
                else:
                    async with self._publisher.pipeline(transaction=False) as pipe:
                        for payload, room in items:
                            self._publish_one(pipe, payload, room, sharded=sharded)
                        await pipe.execute()
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

    def _publish_one(self, client: Any, payload: str | bytes, room: str | None, *, sharded: bool) -> Any:
        # A client's command (awaitable) or a pipeline's (queued).
        if room is None:
            return client.publish(self.channel, payload)
        return client.spublish(room, payload) if sharded else client.publish(room, payload)

    async def emit_many(self, outs: Sequence[Outgoing]) -> None:
        """Server-initiated emits, in order: delivered to this instance's clients, then published together.

        What :meth:`AsyncPubSubManager.emit` does for each (the same message,
        so every instance's listener reads it the same way), with one Redis
        round trip for the lot instead of one per event: a single emitting
        task could not keep up with a few hundred progress reports a second.
        """
        messages = []
        for out in outs:
            message = {
                "method": "emit", "event": out.event, "data": [out.data], "binary": False,
                "namespace": out.namespace, "room": out.room, "skip_sid": None, "callback": None,
                "host_id": self.host_id,
            }  # fmt: skip
            await self._handle_emit(message)
            messages.append(message)
        await self.publish_many([self._encoded(m) for m in messages])

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
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        recipients = [(sid, eio_sid) for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip]
        if recipients:
            await self.send_frame(encode_event(namespace, event, args), recipients)

    async def send_frame(self, encoded: str, recipients: list[tuple[str, str]]) -> None:
        """Write one Socket.IO packet, encoded once (:func:`encode_event`), to each (sid, eio sid) given.

        Straight to the websocket when that is safe (module docstring);
        through python-socketio's queue and writer task otherwise.
        """
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        frame = text_frame("4" + encoded)  # "4" + ...: eio_pkt.encode() for a text message
        sockets = self.server.eio.sockets
        queued = []
        for _, eio_sid in recipients:
            socket = sockets.get(eio_sid)
            if self.direct and socket is not None and write_directly(socket, frame):
                self.delivered_direct += 1
                continue
            queued.append(asyncio.create_task(self.server._send_eio_packet(eio_sid, eio_pkt)))
        if queued:
            self.delivered_queued += len(queued)
            await asyncio.wait(queued)

    async def send_outbox(self, outbox: Outbox) -> None:
        """Write each socket's packets of an :class:`Outbox`, in order: one write per socket where direct.

        A socket that may not be written to directly (module docstring) gets
        its packets through python-socketio's queue, one after the other.
        """
        sockets = self.server.eio.sockets
        queued = []
        for eio_sid, packets in outbox.packets.items():
            socket = sockets.get(eio_sid)
            if self.direct and socket is not None:
                frames = packets[0].frame if len(packets) == 1 else b"".join(p.frame for p in packets)
                if write_directly(socket, frames):
                    self.delivered_direct += len(packets)
                    continue
            queued.append(asyncio.create_task(self._send_in_order(eio_sid, packets)))
        if queued:
            await asyncio.wait(queued)

    async def _send_in_order(self, eio_sid: str, packets: list[Frame]) -> None:
        for p in packets:
            self.delivered_queued += 1
            await self.server._send_eio_packet(eio_sid, eio_packet.Packet(eio_packet.MESSAGE, p.encoded))

    # -- listening --------------------------------------------------------

    async def _listen(self) -> AsyncIterator[bytes]:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._stopping:
            try:
                client = self._client()
                pubsub = client.pubsub()
            except Exception:  # a bad setting: python-socketio would call this again at once, forever
                log.exception("fan-out listener: could not make a Redis client; retrying in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)
                continue
            self._listener_client = client
            try:
                await client.initialize()  # a cluster client learns its nodes before it can subscribe
                await pubsub.subscribe(self.channel)
                rooms = self._local_room_channels()
                if rooms:
                    await self._subscribe_rooms(pubsub, client, rooms)
                self._room_channels = set(rooms)
                self._pubsub = pubsub
                self.subscribed = True
                self._subscribed_event.set()
                backoff = BACKOFF_FIRST_SECONDS
                log.info("fan-out listener subscribed to %s", self.channel)
                async for message in pubsub.listen():
                    kind = message.get("type")
                    if kind in ("subscribe", "ssubscribe"):
                        event = self._confirmed.get(message["channel"].decode())
                        if event is not None:
                            event.set()
                        continue
                    if kind not in ("message", "smessage"):
                        continue
                    data = message["data"]
                    if message.get("channel") != self._channel:
                        self.room_messages += 1
                        yield data
                        continue
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
                self._pubsub = None
                self._room_channels = set()
                self._confirmed.clear()
                self._subscribed_event.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    # -- room channels ----------------------------------------------------

    def _local_room_channels(self) -> list[str]:
        found = []
        for namespace, rooms in list(self.rooms.items()):
            for room in list(rooms):
                channel = room_channel(self.channel, namespace, room)
                if channel is not None:
                    found.append(channel)
        return found

    async def _subscribe_rooms(self, pubsub: Any, client: Redis, channels: list[str]) -> None:
        sharded = await self._is_sharded(client)
        if pubsub.connection is None:
            return  # closed meanwhile: a command now would open a connection nobody closes
        await (pubsub.ssubscribe(*channels) if sharded else pubsub.subscribe(*channels))

    async def enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        if room_channel(self.channel, namespace, room) is not None:
            await self._sync_room(namespace, room)

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        channel = room_channel(self.channel, namespace, room)
        if channel is not None and channel not in self._room_channels:
            # A room entered on another instance's request (enter_room awaits its own subscription).
            self._spawn(self._sync_room(namespace, room))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        channel = room_channel(self.channel, namespace, room)
        if channel is not None and channel in self._room_channels and room not in self.rooms.get(namespace, {}):
            self._spawn(self._sync_room(namespace, room))

    async def _sync_room(self, namespace: str, room: str) -> None:
        """Subscribe the room's channel while the room has local members, unsubscribe once it has none."""
        channel = room_channel(self.channel, namespace, room)
        assert channel is not None
        async with self._rooms_lock:
            pubsub, client = self._pubsub, self._listener_client
            if pubsub is None or client is None or self.write_only:
                return  # the listener subscribes the local rooms when it (re)connects
            wanted = bool(self.rooms.get(namespace, {}).get(room))
            try:
                if wanted and channel not in self._room_channels:
                    confirmed = self._confirmed.setdefault(channel, asyncio.Event())
                    await self._subscribe_rooms(pubsub, client, [channel])
                    self._room_channels.add(channel)
                    # Confirmed before the caller goes on: nothing published after it is missed.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(confirmed.wait(), self.redis_settings.socket_timeout_seconds)
                elif not wanted and channel in self._room_channels:
                    self._room_channels.discard(channel)
                    self._confirmed.pop(channel, None)
                    sharded = await self._is_sharded(client)
                    if pubsub.connection is not None:
                        await (pubsub.sunsubscribe(channel) if sharded else pubsub.unsubscribe(channel))
            except (RedisError, OSError) as err:
                raise_if_cancelling(err)
                log.warning("fan-out: (un)subscribing room %s failed (%s); the listener catches up", room, err)

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
        if self.write_only or self._stopping:
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
        # Once stop() began nothing is restarted: a listener that ends now is meant to. (A
        # watchdog can get here after its cancellation, e.g. when a publish in flight swallowed it.)
        if listener is None or self._stopping:
            return
        reason = listener_trouble(
            listener, subscribed=self.subscribed, last_heard=self.last_heard, deaf_after=self.deaf_after
        )
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
        tasks = [t for t in (self._watchdog, self.listener, *self._tasks) if t is not None]
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


def encode_event(namespace: str, event: str, args: list[Any]) -> str:
    """A Socket.IO EVENT packet as text: what the server's ``packet_class(EVENT, ...).encode()`` gives."""
    prefix = "2" if namespace == "/" else f"2{namespace},"
    return prefix + PacketJson.dumps([event, *args])


@dataclass(frozen=True, slots=True)
class Frame:
    """A Socket.IO packet as text (:func:`encode_event`) and as the websocket frame that carries it."""

    encoded: str
    frame: bytes

    @classmethod
    def of(cls, namespace: str, event: str, data: Any) -> Frame:
        encoded = encode_event(namespace, event, [data])
        return cls(encoded, text_frame("4" + encoded))


@dataclass(slots=True)
class Outbox:
    """Packets for this instance's sockets (by Engine.IO sid), collected in order, sent by
    :meth:`RedisFanout.send_outbox`: the frames of one socket go out in one write (the live
    owner's step often has two or more for every player: ``question_ended`` and ``answer_result``)."""

    packets: dict[str, list[Frame]] = field(default_factory=dict)

    def add(self, eio_sid: str, frame: Frame) -> None:
        queued = self.packets.get(eio_sid)
        if queued is None:
            self.packets[eio_sid] = [frame]
        else:
            queued.append(frame)
