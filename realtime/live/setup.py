"""Wiring live sessions into the app: the ``/live`` namespace, this instance's runtime, the pages.

Called by ``realtime.server.setup_realtime`` with its Socket.IO server.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from lms.appkeys import DB, METRICS
from lms.config import Settings
from realtime.context import Realtime
from realtime.live import pages
from realtime.live.guessing import PinGuesses
from realtime.live.namespace import LiveNamespace
from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)

LIVE = web.AppKey("live_runtime", LiveRuntime)
LIVE_NAMESPACE = web.AppKey("live_namespace", LiveNamespace)


def setup_live(rt: Realtime, config: Settings, sio: socketio.AsyncServer) -> None:
    app = rt.app
    namespace = LiveNamespace(rt, config)
    sio.register_namespace(namespace)
    app[LIVE_NAMESPACE] = namespace
    app.router.add_routes(pages.routes)
    app.cleanup_ctx.append(live_ctx)


def live_redis(config: Settings) -> Redis:
    """A client of its own with a blocking pool: thousands of answers in a second queue for connections."""
    pool = BlockingConnectionPool.from_url(
        config.redis.url,
        max_connections=config.live.redis_max_connections,
        timeout=config.redis.socket_timeout_seconds,
        socket_timeout=config.redis.socket_timeout_seconds,
        socket_connect_timeout=config.redis.socket_timeout_seconds,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections


async def live_ctx(app: web.Application) -> AsyncIterator[None]:
    namespace = app[LIVE_NAMESPACE]
    redis = live_redis(namespace.config)
    runtime = LiveRuntime(
        config=namespace.config,
        db=app[DB],
        redis=redis,
        deliver=namespace.deliver,
        local_players=namespace.local_players,
    )
    namespace.runtime = runtime
    namespace.pin_guesses = PinGuesses(redis, namespace.config.live)
    app[LIVE] = runtime
    app[METRICS].add_gauges(
        "lms_live_sessions_owned", "Live sessions whose actor runs on this instance",
        lambda: [({}, float(len(runtime.actors)))],
    )  # fmt: skip
    app[METRICS].add_gauges(
        "lms_live_takeovers", "Live sessions this instance took over from a dead owner",
        lambda: [({}, float(runtime.takeovers))],
    )  # fmt: skip
    await runtime.start()
    log.info("live sessions: instance %s ready", runtime.instance_id)
    yield
    await runtime.stop()
    await redis.aclose()
