"""The server the official protocol test suites run against: the platform's own Socket.IO stack.

    python -m realtime.conformance --port 3000 --redis-url redis://127.0.0.1:6379/0

Built by the same code as every ``lms serve`` (``realtime.server.socketio_server``:
our Socket.IO and Engine.IO subclasses, the aiohttp driver, the Redis fan-out
as client manager) with the configuration and handlers the suites expect
(``../shared/conformance/README.md``):

- ``/socket.io/``: pingInterval 300 ms, pingTimeout 200 ms, maxPayload
  1,000,000, connectTimeout 1 s, any origin; namespaces ``/`` and
  ``/custom`` emit ``auth`` with the handshake's auth on connection; on
  ``/``, ``message`` is answered with ``message-back`` and the same
  arguments, ``message-with-ack`` by calling the ack with them.
- ``/engine.io/``: a bare Engine.IO server built the same way (same
  settings), sending every message back.

``scripts/conformance`` starts it (and a Redis) and runs both suites.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from lms.config import RealtimeSettings, RedisSettings
from realtime.fanout import RedisFanout
from realtime.server import engineio_server, socketio_server
from realtime.sio import SocketIOServer

log = logging.getLogger(__name__)

SUITE_SETTINGS = RealtimeSettings(
    ping_interval_seconds=0.3,
    ping_timeout_seconds=0.2,
    max_payload_bytes=1_000_000,
    connect_timeout_seconds=1.0,
)
NAMESPACES = ("/", "/custom")
AUTH_EMIT_DELAY_SECONDS = 0.05
SOCKETIO = web.AppKey("conformance_socketio", SocketIOServer)


def conformance_app(redis_url: str) -> web.Application:
    app = web.Application()
    fanout = RedisFanout(RedisSettings(url=redis_url), channel="lms:conformance")
    sio = socketio_server(SUITE_SETTINGS, fanout, "*")
    app[SOCKETIO] = sio

    async def emit_auth(sid: str, auth: Any, namespace: str) -> None:
        # Node emits from its "connection" event, after the CONNECT packet,
        # and writes one frame per write callback. python-socketio sends
        # CONNECT once this handler returns. The suite's client (ws 8.5)
        # emits every frame of one TCP read synchronously and registers its
        # next listener in a promise continuation, so two frames read
        # together lose the second: the auth event follows after a pause.
        await asyncio.sleep(AUTH_EMIT_DELAY_SECONDS)
        await sio.emit("auth", auth, to=sid, namespace=namespace)

    for namespace in NAMESPACES:

        async def connect(sid: str, environ: dict[str, Any], auth: Any, namespace: str = namespace) -> None:
            sio.start_background_task(emit_auth, sid, auth or {}, namespace)

        sio.on("connect", connect, namespace=namespace)

    async def message(sid: str, *args: Any) -> None:
        await sio.emit("message-back", args, to=sid)

    async def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
        return args

    sio.on("message", message)
    sio.on("message-with-ack", message_with_ack)
    sio.attach(app)

    eio = engineio_server(SUITE_SETTINGS, "*")

    async def echo(sid: str, data: Any) -> None:
        await eio.send(sid, data)

    eio.on("message", echo)
    eio.attach(app, "engine.io")

    async def fanout_ctx(app: web.Application) -> AsyncIterator[None]:
        fanout.start()
        if not await fanout.wait_subscribed(5.0):
            raise RuntimeError(f"cannot subscribe to Redis at {redis_url}")
        yield
        await fanout.stop()
        await sio.shutdown()  # each server's ping-timeout sweeper (realtime.server does the same)
        await eio.shutdown()

    app.cleanup_ctx.append(fanout_ctx)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    web.run_app(conformance_app(args.redis_url), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
