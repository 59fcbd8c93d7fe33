"""The Socket.IO server on the app factory's application: ``setup_realtime(app, config)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from lms.appkeys import METRICS, REDIS
from lms.auth.service import SESSIONS_ENDED, SessionsEnded
from lms.config import RealtimeSettings, Settings
from lms.events import EVENTS, DomainEvent
from lms.system.routes import READINESS_PROBES
from realtime.context import REALTIME, EmitQueue, Realtime
from realtime.dashboard import DashboardNamespace
from realtime.devices import DevicesNamespace
from realtime.engine import EngineServer
from realtime.fanout import RedisFanout
from realtime.live.setup import LIVE_NAMESPACE, setup_live
from realtime.metrics import RealtimeMetrics
from realtime.namespace import Client
from realtime.presence import PresenceEntry, PresenceStore, PresenceTracker
from realtime.rooms import DASHBOARD_NAMESPACE, USERS_NAMESPACE, course_room, deliveries
from realtime.sio import SocketIOServer
from realtime.transport import close_websockets

log = logging.getLogger(__name__)

NAMESPACES = (USERS_NAMESPACE, DASHBOARD_NAMESPACE)
SHUTDOWN_DRAIN_SECONDS = 2.0


def setup_realtime(app: web.Application, config: Settings) -> None:
    """Socket.IO on ``/socket.io/`` and its fan-out through Redis (the pages are lms/pages)."""
    settings = config.realtime
    metrics = RealtimeMetrics(app[METRICS])
    fanout = RedisFanout(
        config.redis,
        channel=settings.channel,
        heartbeat_interval=settings.heartbeat_interval_seconds,
        heartbeat_misses=settings.heartbeat_misses,
        direct=settings.direct_broadcast,
    )
    sio = socketio_server(settings, fanout, origin_check(config))
    rt = Realtime(app, settings, sio, fanout, metrics, EmitQueue(fanout, metrics, settings.emit_queue_size))
    app[REALTIME] = rt
    sio.register_namespace(DevicesNamespace(rt))
    sio.register_namespace(DashboardNamespace(rt))
    setup_live(rt, config, sio)
    sio.attach(app)
    app.setdefault(SESSIONS_ENDED, []).append(_sessions_ended(rt))
    fanout.on_sessions_ended = _close_sessions(app, rt)
    forward_domain_events(rt)
    app[READINESS_PROBES]["socketio_fanout"] = _fanout_probe(fanout)
    _add_gauges(rt)
    app.on_shutdown.append(_disconnect_clients)
    app.cleanup_ctx.append(realtime_ctx)


def forward_domain_events(rt: Realtime) -> None:
    """The web app's domain events, emitted where ``realtime/rooms.py`` says (as a worker's emitter does)."""

    async def forward(event: DomainEvent) -> None:
        for out in deliveries(event):
            rt.emits.put(out)

    rt.app[EVENTS].subscribe(forward)


def engine_options(settings: RealtimeSettings) -> dict[str, Any]:
    """What the Engine.IO server is built with, from the settings."""
    return {
        "async_mode": "aiohttp",
        "ping_interval": settings.ping_interval_seconds,
        "ping_timeout": settings.ping_timeout_seconds,
        "max_http_buffer_size": settings.max_payload_bytes,
        "transports": list(settings.transports),
        "websocket_compression": settings.websocket_compression,
        "direct_writes": settings.direct_broadcast,
    }


def socketio_server(settings: RealtimeSettings, manager: Any, cors_allowed_origins: Any) -> SocketIOServer:
    """The platform's Socket.IO server: our Socket.IO and Engine.IO subclasses, our aiohttp driver, the settings.

    ``setup_realtime`` and the conformance server (``realtime/conformance.py``) both build it here.
    """
    return SocketIOServer(
        client_manager=manager,
        cors_allowed_origins=cors_allowed_origins,
        connect_timeout=settings.connect_timeout_seconds,
        logger=_library_logger("realtime.socketio"),
        engineio_logger=_library_logger("realtime.engineio"),
        **engine_options(settings),
    )


def engineio_server(settings: RealtimeSettings, cors_allowed_origins: Any) -> EngineServer:
    """A bare Engine.IO server as the Socket.IO server's own is built (for the Engine.IO conformance suite)."""
    return EngineServer(
        cors_allowed_origins=cors_allowed_origins,
        logger=_library_logger("realtime.engineio"),
        **engine_options(settings),
    )


def _library_logger(name: str) -> logging.Logger:
    # python-socketio logs every packet at INFO: keep it to warnings unless
    # the operator turns the logger up.
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


def origin_check(config: Settings) -> Callable[[str | None, dict[str, Any]], bool]:
    """Origins that may connect: the configured ones, the public base URL, and same-origin pages."""
    configured = config.realtime.cors_origins
    origins = set(config.http.cors_origins if configured is None else configured)
    base = urlsplit(config.http.public_base_url)
    origins.add(f"{base.scheme}://{base.netloc}")
    allow_any = "*" in origins

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return False
        if allow_any or origin in origins:
            return True
        host = environ.get("HTTP_HOST")
        return host is not None and origin in (f"http://{host}", f"https://{host}")

    return allowed


def _sessions_ended(rt: Realtime) -> SessionsEnded:
    async def publish(user_id: uuid.UUID, cutoff: float) -> None:
        await rt.fanout.end_sessions(str(user_id), cutoff)

    return publish


def _close_sessions(app: web.Application, rt: Realtime) -> Callable[[str, float], Coroutine[Any, Any, None]]:
    """Close this instance's connections of a user whose tokens up to a cutoff were revoked, on every namespace."""

    async def close(user_id: str, cutoff: float) -> None:
        uid = uuid.UUID(user_id)
        namespaces = [*(rt.sio.namespace_handlers[ns] for ns in NAMESPACES), app[LIVE_NAMESPACE]]
        for namespace in namespaces:
            try:
                await namespace.end_sessions(uid, cutoff)
            except Exception:
                log.exception("closing the connections of user %s on %s failed", user_id, namespace.namespace)

    return close


def _fanout_probe(fanout: RedisFanout) -> Callable[[], Any]:
    async def probe() -> None:
        fanout.check()

    return probe


def _add_gauges(rt: Realtime) -> None:
    metrics = rt.app[METRICS]
    manager = rt.fanout

    def clients() -> list[tuple[dict[str, str], float]]:
        rooms = manager.rooms
        return [({"namespace": ns}, float(len(rooms.get(ns, {}).get(None, ())))) for ns in NAMESPACES]

    metrics.add_gauges("lms_socketio_clients", "Connected Socket.IO clients on this instance", clients)
    metrics.add_gauges(
        "lms_socketio_fanout_up", "1 while this instance hears the Redis fan-out channel",
        lambda: [({}, 1.0 if manager.is_up() else 0.0)],
    )  # fmt: skip
    metrics.add_gauges(
        "lms_socketio_fanout_publish_failures", "Publishes to Redis that failed since start",
        lambda: [({}, float(manager.publish_failures))],
    )  # fmt: skip
    metrics.add_gauges(
        "lms_socketio_fanout_listener_restarts", "Times the watchdog restarted the Redis listener",
        lambda: [({}, float(manager.listener_restarts))],
    )  # fmt: skip

    def deliveries() -> list[tuple[dict[str, str], float]]:
        return [
            ({"path": "direct"}, float(manager.delivered_direct)),
            ({"path": "queued"}, float(manager.delivered_queued)),
        ]

    metrics.add_gauges("lms_socketio_deliveries", "Events delivered to local clients since start, by path", deliveries)
    eio = rt.sio.eio
    metrics.add_gauges(
        "lms_socketio_protocol_errors", "Connections closed for a frame that is not the protocol, by level",
        lambda: [({"level": level}, float(eio.protocol_errors[level])) for level in ("engineio", "socketio")],
    )  # fmt: skip
    metrics.add_gauges(
        "lms_socketio_connect_timeouts", "Connections closed for connecting no namespace in time",
        lambda: [({}, float(rt.sio.connect_timeouts))],
    )  # fmt: skip
    metrics.add_gauges(
        "lms_socketio_outbox_depth", "Server events waiting to be emitted",
        lambda: [({}, float(rt.emits.queue.qsize()))],
    )  # fmt: skip


async def _local_connections(rt: Realtime) -> list[PresenceEntry]:
    found = []
    for sid, _ in list(rt.fanout.get_participants(USERS_NAMESPACE, None)):
        with contextlib.suppress(KeyError):
            client = (await rt.sio.get_session(sid, namespace=USERS_NAMESPACE)).get("conn")
            if isinstance(client, Client) and client.course_ids:
                found.append(PresenceEntry(str(client.user_id), sid, client.course_ids))
    return found


def _local_watched(rt: Realtime) -> list[str]:
    prefix = course_room("")
    rooms = rt.fanout.rooms.get(DASHBOARD_NAMESPACE, {})
    return [
        room[len(prefix) :]
        for room, members in rooms.items()
        if isinstance(room, str) and room.startswith(prefix) and members
    ]


async def _disconnect_clients(app: web.Application) -> None:
    # An Engine.IO close runs each connection's disconnect handler (presence)
    # and tells clients to reconnect, to another instance. Not eio.disconnect():
    # it waits for every socket's queue to drain, forever for a socket whose
    # writer already died with its connection. Closing the websockets then
    # lets the server stop without waiting for every client to hang up.
    eio = app[REALTIME].sio.eio
    closing = [s.close(wait=False, reason=eio.reason.SERVER_DISCONNECT) for s in list(eio.sockets.values())]
    if closing:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), SHUTDOWN_DRAIN_SECONDS)
    await close_websockets(eio)


async def realtime_ctx(app: web.Application) -> AsyncIterator[None]:
    rt = app[REALTIME]
    settings = rt.config
    rt.presence = PresenceTracker(
        PresenceStore(app[REDIS], settings.redis_prefix, settings.presence_ttl_seconds),
        ttl_seconds=settings.presence_ttl_seconds,
        debounce_seconds=settings.presence_debounce_seconds,
        local_connections=lambda: _local_connections(rt),
        local_watched=lambda: _local_watched(rt),
        emit=rt.send_presence,
    )
    rt.fanout.start()
    if not rt.fanout.write_only and not await rt.fanout.wait_subscribed(2.0):
        # Serve anyway: the listener keeps retrying and /ready reports it.
        log.warning("fan-out listener not subscribed yet (Redis unavailable?); starting without it")
    background = [
        asyncio.create_task(rt.emits.run(), name="realtime-emits"),
        asyncio.create_task(rt.presence.run(), name="realtime-presence"),
    ]
    yield
    await rt.presence.close()
    await rt.emits.drain(SHUTDOWN_DRAIN_SECONDS)
    tasks = [*background, *rt.tasks]
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await rt.fanout.stop()
    # Engine.IO's ping-timeout sweeper, started with the first connection: without this it
    # outlives the app (and keeps the server and everything it references alive).
    await rt.sio.shutdown()
