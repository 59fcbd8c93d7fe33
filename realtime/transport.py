"""Engine.IO's aiohttp driver: one route for every method, the websocket with compression configurable,
close codes, and every socket closable at shutdown.

Route: python-engineio registers GET, POST and OPTIONS only, so any other
method got the router's 405; the protocol answers 400, which the server
(realtime/engine.py) does once every method reaches it.

Compression: aiohttp compresses every frame once a client negotiates
permessage-deflate, and browsers always offer it: measured on this stack at
about +15 µs per recipient and about 100 KB per connection for the zlib state.
Events here are small JSON; the bytes saved do not pay for that. With
``realtime.websocket_compression`` off the server declines the extension.

Shutdown: an Engine.IO close packet asks clients to hang up, but the server's
handler keeps reading until they do (or until aiohttp's shutdown timeout).
Shutdown closes every session's websocket (``EngineSocket.lms_ws``) with
1001 (going away) and lets the server stop at once.

Writes: each Engine.IO socket holds its websocket, so that a packet with
nothing queued before it (an ack, a ping, a broadcast to its room: the
server's ``send`` and realtime/fanout.py) is written straight to a healthy
websocket instead of going through a queue and a writer task. The websocket frame itself is built
once per broadcast (:func:`text_frame`) and written with one
``transport.write`` per recipient (:func:`write_directly`): aiohttp's
``send_str`` would encode the text, pack a header and await three coroutines
for every recipient (py-spy: its frame writer was the top Python item of the
live bench's broadcast path).

python-engineio builds the ``WebSocketResponse`` in its aiohttp driver with
no way to pass ``compress`` and closes it with no code: our socket
(realtime/engine.py) opens it with :func:`open_websocket` instead. The
driver table is per server instance (``eio._async``), so the route
replacement below affects only our server.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from typing import Any

import engineio
from aiohttp import WSCloseCode, web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as eio_aiohttp

CLOSE_TIMEOUT_SECONDS = 2.0


async def open_websocket(request: web.Request, eio: engineio.AsyncServer) -> WebSocketResponse:
    """The handshake's 101: a websocket with the server's message limit and compression setting."""
    ws = WebSocketResponse(max_msg_size=eio.max_http_buffer_size, compress=eio.lms_websocket_compression)
    await ws.prepare(request)
    return ws


def create_route(app: web.Application, server: engineio.AsyncServer, path: str) -> None:
    app.router.add_route("*", path, server.handle_request)


def install_drivers(eio: engineio.AsyncServer, *, compression: bool) -> None:
    drivers = dict(eio._async)
    if drivers.get("create_route") is not eio_aiohttp.create_route:
        raise RuntimeError("unexpected engine.io aiohttp driver")
    drivers["create_route"] = create_route
    eio._async = drivers
    eio.lms_websocket_compression = compression


async def close_websockets(eio: engineio.AsyncServer) -> None:
    """Close every open websocket with 1001 (going away); clients reconnect elsewhere."""
    sockets = [s.lms_ws for s in list(eio.sockets.values()) if s.lms_ws is not None and not s.lms_ws.closed]
    if sockets:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(
                    *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down") for ws in sockets),
                    return_exceptions=True,
                ),
                CLOSE_TIMEOUT_SECONDS,
            )


_TEXT_FIN = 0x81  # FIN + text opcode; a server's frames are not masked (RFC 6455, 5.1)


def text_frame(text: str) -> bytes:
    """One complete websocket text frame carrying ``text``, as aiohttp's writer builds it uncompressed."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _TEXT_FIN, size)
    elif size < 65536:
        header = struct.pack("!BBH", _TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return header + payload


def write_directly(socket: Any, frame: bytes) -> bool:
    """Write a prebuilt :func:`text_frame` straight to this Engine.IO socket's websocket, when that is safe.

    False, and nothing written, unless the socket is an upgraded, open
    websocket with an uncompressed aiohttp writer that is not closing (the
    checks aiohttp's own ``send_frame`` makes), and nothing waits before this
    frame: not in the Engine.IO queue, not taken by its writer task but unsent
    (``writing``), not in the transport's buffer (a busy or slow client). Then
    it goes out in order (realtime/fanout.py). One function for all the checks:
    it runs for each recipient of every broadcast.
    """
    ws = getattr(socket, "lms_ws", None)
    if ws is None or socket.closing or socket.closed or not socket.upgraded or socket.upgrading:
        return False
    writer = ws._writer  # aiohttp's WebSocketWriter: set by prepare(), None before
    if writer is None or ws.closed or writer._closing or writer.compress:
        return False
    transport = writer.transport  # the request's: what the websocket writes to
    if socket.writing or transport.get_write_buffer_size() or transport.is_closing() or not socket.queue.empty():
        return False
    transport.write(frame)
    return True
