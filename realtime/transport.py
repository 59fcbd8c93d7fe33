"""Engine.IO's aiohttp websocket, without permessage-deflate.

aiohttp compresses every frame once a client negotiates permessage-deflate,
and browsers always offer it: STACK_NOTES measured about +15 µs per
recipient and about 100 KB per connection for the zlib state. Events here
are small JSON; the bytes saved do not pay for that. With compression off
the server simply declines the extension in the handshake.

python-engineio builds the ``WebSocketResponse`` in its aiohttp driver with
no way to pass ``compress``; the driver table is per server instance
(``eio._async``), so the replacement below affects only our server.
"""

from __future__ import annotations

from typing import Any

import engineio
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as eio_aiohttp


class UncompressedWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


def disable_websocket_compression(eio: engineio.AsyncServer) -> None:
    drivers = dict(eio._async)
    if drivers.get("websocket") is not eio_aiohttp.WebSocket:
        raise RuntimeError("unexpected engine.io websocket driver; cannot turn compression off")
    drivers["websocket"] = UncompressedWebSocket
    eio._async = drivers
