"""One instance's part in live sessions: its actors, the supervisor that claims orphans, the event channel.

- **Supervisor**: every ``supervisor_interval_ms`` it tries to take the lease
  of every active session this instance does not run (``SET NX PX``: it only
  succeeds once the owner's lease expired) and starts an actor for each
  session it won. It also keeps this instance's players marked as connected.
- **Channels**: owners publish each step's events (and the replies to host
  commands) as one message on the session's channel
  (``<live.channel>:{<session id>}``, sharded on Redis 7: realtime/channels.py).
  An instance subscribes to a session's channel while it has a member of the
  session connected (:meth:`LiveRuntime.watch`) or waits for a command's
  reply, delivers the events to its own clients (``deliver``) and resolves the
  replies; an instance with nobody of a session receives none of its traffic.
  The listener has the fan-out's heartbeat watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.aio import raise_if_cancelling
from lms.config import Settings
from lms.db import Database
from lms.live import queries
from lms.live.keys import SWEEP_ABANDONED
from lms.logs import bind_log_context
from realtime.channels import Channels
from realtime.live.abandoned import end_abandoned_sessions
from realtime.live.actor import SessionActor, initial_gate, initial_snapshot
from realtime.live.errors import LiveError
from realtime.live.leases import LeaseKeeper
from realtime.live.store import LiveStore
from realtime.metrics import LiveMetrics

log = logging.getLogger(__name__)

Deliver = Callable[[str, list[dict[str, Any]]], Awaitable[None]]
# session id -> ids of the players connected to this instance.
LocalPlayers = Callable[[], Awaitable[dict[str, list[str]]]]

# An actor notices a stop request within one step (at most about a second).
STOP_WAIT_SECONDS = 5.0


async def _settle(tasks: list[asyncio.Task[None]], wait_seconds: float) -> None:
    """Wait for tasks to end; cancel those still running after ``wait_seconds`` (and wait a little more)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=wait_seconds)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=wait_seconds)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("task %s ended with %r", task.get_name(), task.exception())


async def _deliver_nowhere(session_id: str, events: list[dict[str, Any]]) -> None:
    return None


async def _nobody_here() -> dict[str, list[str]]:
    return {}


class LiveRuntime:
    def __init__(
        self,
        *,
        config: Settings,
        db: Database,
        redis: Redis,
        deliver: Deliver | None = None,
        local_players: LocalPlayers | None = None,
        instance_id: str | None = None,
        metrics: LiveMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or LiveMetrics(CollectorRegistry())
        self.db = db
        self.redis = redis
        self.store = LiveStore(redis, config.live)
        self.deliver = deliver or _deliver_nowhere
        self.local_players = local_players or _nobody_here
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.actors: dict[str, asyncio.Task[None]] = {}
        self.owned: dict[str, SessionActor] = {}
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # pin -> (monotonic time read, session row): realtime.live.edge.session_by_pin.
        self.pin_cache: dict[str, tuple[float, Any]] = {}
        # Leases renewed from a thread (realtime/live/leases.py): a busy loop must not lose a live session.
        self.leases = LeaseKeeper(
            redis_settings=config.redis,
            ttl_ms=config.live.lease_ttl_ms,
            interval_ms=config.live.lease_renew_interval_ms,
            on_lost=self._lease_lost,
        )
        self._leases_started = False
        self.channels = Channels(
            redis=redis,
            on_message=self._on_message,
            heartbeat_channel=f"{config.live.channel}:hb:{self.instance_id}",
            broadcast_channels=[config.live.channel],
            heartbeat_interval=config.realtime.heartbeat_interval_seconds,
            heartbeat_misses=config.realtime.heartbeat_misses,
            name="live channels",
        )
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sweeping: asyncio.Task[None] | None = None
        self._presence_at = 0.0
        self.takeovers = 0

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(), name="live-supervisor"))
        self._start_leases()
        if not await self.channels.start(wait_seconds=2):
            # Start anyway: the listener keeps retrying, and /ready reports
            # Redis until it is back. Refusing to start would turn a Redis
            # blip into an outage of everything else the server does.
            log.warning("live channel not subscribed yet (Redis unavailable?); starting without it")

    async def stop(self) -> None:
        """Stop this instance's actors and hand their sessions over at once (release the leases)."""
        await self._halt(release=True)

    async def crash(self) -> None:
        """Tests: stop as a killed process would: no more writes, leases left to expire."""
        await self._halt(release=False)

    async def _halt(self, *, release: bool) -> None:
        # Actors stop between steps rather than by cancellation: redis-py turns
        # a cancelled read into a ConnectionError and its retry runs the
        # command again, so a cancelled actor could block on its mailbox on.
        self.stopping.set()
        owned = dict(self.owned)
        for actor in owned.values():
            actor.stop_requested = "crash" if not release else "stop"
        background = [*self._tasks, *([self._sweeping] if self._sweeping else [])]
        tasks = [*background, *self.actors.values()]
        for task in background:
            task.cancel()
        await _settle(tasks, STOP_WAIT_SECONDS)
        await self.channels.stop()
        if self._leases_started:
            await asyncio.to_thread(self.leases.stop)
        if release:
            for actor in owned.values():
                with contextlib.suppress(RedisError, OSError):
                    await self.store.release(actor.keys, actor.token)
        self.actors.clear()
        self.owned.clear()

    def lease_token(self, session_id: str) -> str:
        return f"{self.instance_id}:{session_id}"

    # -- ownership ----------------------------------------------------------

    async def ensure(self, session_id: str) -> None:
        """Make sure the session is in Redis and has an owner (this instance if nobody holds it)."""
        keys = self.store.keys(session_id)
        created = not await self.store.exists(keys)
        if created:
            async with self.db.connection() as conn:
                session = await queries.get_session(conn, uuid.UUID(session_id))
                total = len(await queries.list_questions(conn, session["quiz_id"])) if session else 0
            if session is None:
                raise LiveError("not_found")
            if session["status"] != "lobby":
                raise LiveError("session_ended")
            now = await self.store.now_ms(keys)
            await self.store.initialize(keys, initial_gate(), initial_snapshot(session, total, now))
        if session_id not in self.actors and not await self.redis.exists(keys.lease):
            # A session that was already running has lost its owner: whoever claims it first
            # (this join, or a supervisor) takes it over.
            await self.claim(session_id, takeover=not created)

    async def claim(self, session_id: str, *, takeover: bool) -> bool:
        if session_id in self.actors:
            return True
        if self.stopping.is_set():
            return False
        if not await self.store.acquire(self.store.keys(session_id), self.lease_token(session_id)):
            return False
        if takeover:
            self._count_takeover(session_id)
        self._run_actor(session_id)
        return True

    def _count_takeover(self, session_id: str) -> None:
        self.takeovers += 1
        self.metrics.takeovers.inc()
        log.info("live session %s: taken over by %s", session_id, self.instance_id)

    def _start_leases(self) -> None:
        if not self._leases_started:
            self._leases_started = True
            self.leases.start(asyncio.get_running_loop())
            self._tasks.append(asyncio.create_task(self._beat(), name="live-beat"))

    async def _beat(self) -> None:
        """Tell the lease thread the loop runs (it stops renewing when the loop stalls for long)."""
        interval = self.config.live.lease_renew_interval_ms / 2000
        while True:
            self.leases.beat()
            await asyncio.sleep(interval)

    def _lease_lost(self, session_id: str) -> None:
        actor = self.owned.get(session_id)
        if actor is not None:
            actor.stop_requested = "lost"

    def _run_actor(self, session_id: str) -> None:
        actor = SessionActor(self, session_id, self.lease_token(session_id))
        self._start_leases()

        async def own() -> None:
            bind_log_context(session_id=session_id)  # every record of this actor's task
            self.leases.hold(session_id, actor.keys.lease, actor.token)
            try:
                await actor.run()
            finally:
                self.leases.drop(session_id)

        task = asyncio.create_task(own(), name=f"live-actor-{session_id}")
        self.actors[session_id] = task
        self.owned[session_id] = actor
        task.add_done_callback(lambda t: self._actor_done(session_id, t))

    def _actor_done(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self.actors.get(session_id) is task:
            del self.actors[session_id]
            self.owned.pop(session_id, None)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, (RedisError, OSError)):
            # Redis went away (a failover): the lease expires on its own and a supervisor,
            # here or elsewhere, takes the session over from its snapshot once Redis is back.
            log.warning("live session %s: actor stopped, Redis unavailable (%s)", session_id, error)
        elif error is not None:
            log.error("live session %s: actor failed", session_id, exc_info=error)
        if error is not None:
            # Hand the session back at once if Redis lets us (the supervisor retries).
            asyncio.get_running_loop().create_task(self._release_quietly(session_id))

    async def _release_quietly(self, session_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.store.release(self.store.keys(session_id), self.lease_token(session_id))

    async def _supervise(self) -> None:
        interval = self.config.live.supervisor_interval_ms / 1000
        while not self.stopping.is_set():
            try:
                await self._supervise_once()
            except (RedisError, OSError) as err:
                raise_if_cancelling(err)
                log.warning("live supervisor: Redis unavailable (%s)", err)
            except Exception:
                log.exception("live supervisor failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)

    async def _supervise_once(self) -> None:
        # Owners mark their sessions every round; one unmarked for longer than a lease outlives its
        # last renewal may have lost its owner, and only those are tried (SET NX on the lease is the
        # arbiter: a busy owner whose mark is late keeps its session). Trying every session's lease
        # every round was a command per session per instance per round.
        live = self.config.live
        quiet_ms = live.lease_ttl_ms - live.lease_renew_interval_ms
        sessions = await self.store.active_sessions(marked_before_ms=int(time.time() * 1000) - quiet_ms)
        orphans = [s for s in sessions if s not in self.actors]
        if orphans:
            won = await self.store.acquire_many([(self.store.keys(s), self.lease_token(s)) for s in orphans])
            for session_id, got in zip(orphans, won, strict=True):
                if got and self.stopping.is_set():
                    await self.store.release(self.store.keys(session_id), self.lease_token(session_id))
                elif got:
                    self._count_takeover(session_id)
                    self._run_actor(session_id)
        now_ms = int(time.time() * 1000)
        if self.actors:
            await self.redis.zadd(self.store.active_key, dict.fromkeys(self.actors, now_ms), xx=True)
        presence = self.config.live.presence_ttl_seconds
        if time.monotonic() - self._presence_at >= presence / 3:
            self._presence_at = time.monotonic()
            local = await self.local_players()
            if local:
                expiry = now_ms + int(presence * 1000)
                await self.store.refresh_presence(((self.store.keys(s), p) for s, p in local.items()), expiry)

    # -- abandoned sessions ---------------------------------------------------

    async def sweep_abandoned(self) -> list[str]:
        """End and store the sessions nobody runs any more (the scheduled task asks for it)."""
        return await end_abandoned_sessions(self)

    def _start_sweep(self) -> None:
        if self.stopping.is_set() or (self._sweeping is not None and not self._sweeping.done()):
            return  # one sweep at a time: the one running sees the same sessions

        async def sweep() -> None:
            try:
                ended = await self.sweep_abandoned()
            except Exception:
                log.exception("ending abandoned live sessions failed")
                return
            if ended:
                log.info("ended %d abandoned live session(s)", len(ended))

        self._sweeping = asyncio.create_task(sweep(), name="live-abandoned-sweep")

    # -- the channel ----------------------------------------------------------

    def channel(self, session_id: str) -> str:
        """The session's channel: hash-tagged like its keys (one Cluster slot, one shard)."""
        return f"{self.config.live.channel}:{{{session_id}}}"

    async def watch(self, session_id: str) -> None:
        """A member of the session is connected here (counted): hear its channel from now on."""
        await self.channels.watch(self.channel(session_id))

    async def unwatch(self, session_id: str) -> None:
        await self.channels.unwatch(self.channel(session_id))

    async def publish(self, session_id: str, events: list[dict[str, Any]], replies: list[dict[str, Any]]) -> None:
        message = orjson.dumps({"s": session_id, "events": events, "replies": replies})
        await self.channels.publish(self.channel(session_id), message)

    async def _on_message(self, channel: str, data: bytes | str) -> None:
        if data == SWEEP_ABANDONED:
            self._start_sweep()
            return
        try:
            message = orjson.loads(data)
            for reply in message.get("replies", ()):
                if reply.get("i") == self.instance_id:
                    future = self.pending.get(reply.get("req", ""))
                    if future is not None and not future.done():
                        future.set_result(reply["result"])
            if message.get("events"):
                await self.deliver(message["s"], message["events"])
        except Exception:  # one bad message must not stop the channel
            log.exception("live channel: could not handle a message")

    # -- commands -------------------------------------------------------------

    async def command(self, session_id: str, name: str, args: dict[str, Any], *, by: str) -> dict[str, Any]:
        """Send a host command to the session's owner (wherever it runs) and wait for its result."""
        request = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request] = future
        keys = self.store.keys(session_id)
        await self.watch(session_id)  # the reply comes on the session's channel
        try:
            await self.store.post(
                keys,
                {"t": "cmd", "c": name, "a": json.dumps(args), "req": request, "i": self.instance_id, "by": by},
            )
            await self.ensure(session_id)
            return await asyncio.wait_for(future, self.config.live.command_timeout_seconds)
        except TimeoutError:
            return {"ok": False, "error": {"code": "unavailable", "message": "The session did not answer; try again."}}
        finally:
            self.pending.pop(request, None)
            await self.unwatch(session_id)
