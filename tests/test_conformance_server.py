"""The conformance server (realtime/conformance.py): the suites' handlers on the platform's own stack.

``scripts/conformance`` runs the official suites against it; this checks the
entry point itself in CI without npm: configuration and handlers as the
suites' README describes them.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from realtime.conformance import SOCKETIO, conformance_app
from realtime.engine import EngineServer
from realtime.fanout import RedisFanout
from realtime.sio import SocketIOServer


async def test_conformance_server_speaks_as_the_suites_expect(aiohttp_client: Any, servers: Any) -> None:
    app = conformance_app(servers.redis_url)
    client = await aiohttp_client(app)
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(base + "/socket.io/?EIO=4&transport=websocket") as ws:
            opened = json.loads((await ws.receive_str())[1:])
            assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (300, 200, 1_000_000)
            await ws.send_str('40{"token":"123"}')
            assert (await ws.receive_str()).startswith("40{")
            assert await ws.receive_str() == '42["auth",{"token":"123"}]'
            await ws.send_str('42["message",1,"2",{"3":[true]}]')
            assert await ws.receive_str() == '42["message-back",1,"2",{"3":[true]}]'
            await ws.send_str('42456["message-with-ack",1]')
            assert await ws.receive_str() == "43456[1]"
        async with http.ws_connect(base + "/engine.io/?EIO=4&transport=websocket") as ws:
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str("4hello")
            assert await ws.receive_str() == "4hello"
    # The platform's own construction: our server classes and the Redis fan-out as manager.
    sio = app[SOCKETIO]
    assert isinstance(sio, SocketIOServer) and isinstance(sio.eio, EngineServer)
    assert isinstance(sio.manager, RedisFanout)
