"""Engine.IO's aiohttp websocket, with compression configurable and every socket closable at shutdown.

Compression: aiohttp compresses every frame once a client negotiates
permessage-deflate, and browsers always offer it: STACK_NOTES measured about
+15 µs per recipient and about 100 KB per connection for the zlib state.
Events here are small JSON; the bytes saved do not pay for that. With
``realtime.websocket_compression`` off the server declines the extension.

Shutdown: an Engine.IO close packet asks clients to hang up, but the server's
handler keeps reading until they do (or until aiohttp's shutdown timeout).
The websockets are kept in a weak set so that shutdown can close them with
1001 (going away) and let the server stop at once.

Broadcasts: each Engine.IO socket gets a reference to its websocket and
transport, so that the fan-out (realtime/fanout.py) can write a broadcast
frame straight to a healthy websocket instead of going through a task, a
queue and a writer task per recipient.

python-engineio builds the ``WebSocketResponse`` in its aiohttp driver with
no way to pass ``compress``; the driver table is per server instance
(``eio._async``), so the replacement below affects only our server.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

import engineio
from aiohttp import WSCloseCode
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as eio_aiohttp

CLOSE_TIMEOUT_SECONDS = 2.0


class TrackedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=self.server.lms_websocket_compression
        )
        await self._sock.prepare(request)
        self.server.lms_websockets.add(self._sock)
        # The Engine.IO socket this websocket serves (the handler is its bound
        # method): the fan-out writes broadcast frames straight to it.
        socket = getattr(self.handler, "__self__", None)
        if socket is not None:
            socket.lms_ws = self._sock
            socket.lms_transport = request.transport
        self.environ = environ
        await self.handler(self)
        return self._sock


def install_websocket_driver(eio: engineio.AsyncServer, *, compression: bool) -> None:
    drivers = dict(eio._async)
    if drivers.get("websocket") is not eio_aiohttp.WebSocket:
        raise RuntimeError("unexpected engine.io websocket driver")
    drivers["websocket"] = TrackedWebSocket
    eio._async = drivers
    eio.lms_websocket_compression = compression
    eio.lms_websockets = weakref.WeakSet()


async def close_websockets(eio: engineio.AsyncServer) -> None:
    """Close every open websocket with 1001 (going away); clients reconnect elsewhere."""
    sockets = [ws for ws in list(eio.lms_websockets) if not ws.closed]
    if sockets:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in sockets),
                    return_exceptions=True,
                ),
                CLOSE_TIMEOUT_SECONDS,
            )
