"""Engine.IO v4 as the reference (Node) server speaks it: our subclasses of python-engineio's server and socket.

python-engineio 4.15 differs from the protocol, as the official test suite
(``../shared/conformance``, run by ``scripts/conformance``) checks it, in the
ways below; each rule is implemented here and has its own test in
``tests/test_realtime_protocol.py``.

Requests (:meth:`EngineServer.handle_request`)
    - ``transport`` is required: a request without it is 400 (it was taken
      as polling). GET, POST and OPTIONS are the methods; any other is 400
      (the route takes every method; it was a 405 from the router).
    - A POST answers ``ok``. Its body is read whole, however it arrives in
      pieces, up to ``max_http_buffer_size`` (it was one read of whatever
      was buffered), and one that is not Engine.IO packets is answered 400
      and ends the session.
    - A second GET while one waits ends the session: the waiting GET gets
      the close packet, the second one 400.
    - A request that arrives after the pong deadline finds the session
      closed (400), however late the deadline's timer fires on a busy loop.
    - A GET that was in flight when the client closed its session (``1``
      sent by POST) is answered with a noop, as is a GET waiting then.

Heartbeat (:meth:`EngineSocket.schedule_ping`)
    - ``pingInterval`` is sent in milliseconds as configured (it was
      truncated to whole seconds first, so 0.3 s was sent as 0).
    - Each cycle runs on a fixed schedule from its start (the handshake or
      the pong that ended the previous cycle): the ping is due
      ``ping_interval`` later, the pong ``ping_timeout`` after that, or
      ``ping_timeout`` after the ping was written to the websocket or a
      waiting poll if a busy loop ran the ping timer late. Two timers per
      socket, instead of a task per ping and a strict check made only when
      something was sent.

WebSocket (:meth:`EngineSocket._serve_websocket`)
    - A frame that is not an Engine.IO packet closes the websocket with 1002
      (protocol error), counted in ``protocol_errors`` and logged in one
      line. It used to escape python-engineio's loop, and the app's error
      middleware wrote an HTTP 500 into the open websocket.
    - A second websocket for a session that already has one is accepted and
      closed at once (a 400 makes clients raise an error instead of a close).
    - The noop that ends a poll during an upgrade goes to a waiting poll
      only; it is never written to the websocket (it reached the client
      before the first message after the upgrade).
    - A session the server ends gets the close packet and then its websocket
      closed (a client that ignores the packet no longer keeps it open).
"""

from __future__ import annotations

import asyncio
import logging
import math
import urllib.parse
from collections import Counter, deque
from collections.abc import Coroutine
from typing import Any

import engineio
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from aiohttp.web import WebSocketResponse
from engineio import exceptions, packet, payload
from engineio.async_socket import AsyncSocket

from realtime.transport import install_drivers, open_websocket, text_frame, write_directly

log = logging.getLogger(__name__)

# Packet types a client may send; anything else is not an Engine.IO packet.
VALID_TYPES = range(packet.OPEN, packet.NOOP + 1)
LOGGED_FRAME_CHARS = 40

# Tasks started from timer callbacks, kept referenced until they finish.
_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Any) -> None:
    """Run ``coro`` in a task that is kept referenced until it ends (from timer callbacks and the like)."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class InvalidPayload(exceptions.EngineIOError):  # type: ignore[misc]
    """A polling body or a websocket frame that is not Engine.IO packets."""


def decode_packet(raw: str | bytes) -> packet.Packet:
    """One Engine.IO packet, or :class:`InvalidPayload`."""
    try:
        pkt = packet.Packet(encoded_packet=raw)
    except (ValueError, TypeError, IndexError) as err:  # empty, a non-digit type, bad base64
        raise InvalidPayload(f"not an Engine.IO packet: {_shown(raw)}") from err
    if pkt.packet_type not in VALID_TYPES or (isinstance(raw, str) and not raw[0].isascii()):
        raise InvalidPayload(f"not an Engine.IO packet: {_shown(raw)}")
    return pkt


def decode_payload(body: bytes) -> list[packet.Packet]:
    """The packets of a polling POST body, or :class:`InvalidPayload`."""
    try:
        text = body.decode("utf-8")
        if text.startswith("d="):  # a JSONP body, as python-engineio accepts it
            text = urllib.parse.parse_qs(text)["d"][0]
    except (UnicodeDecodeError, KeyError) as err:
        raise InvalidPayload(f"not an Engine.IO payload: {_shown(body)}") from err
    parts = text.split("\x1e")
    if len(parts) > payload.Payload.max_decode_packets:
        raise InvalidPayload(f"more than {payload.Payload.max_decode_packets} packets in one payload")
    return [decode_packet(part) for part in parts]


def _shown(raw: str | bytes) -> str:
    text = repr(raw[:LOGGED_FRAME_CHARS])
    return text + ("..." if len(raw) > LOGGED_FRAME_CHARS else "")


async def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole request body, up to ``limit`` bytes (``ContentTooLongError`` beyond)."""
    content = environ["wsgi.input"]
    declared = environ.get("CONTENT_LENGTH")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise exceptions.EngineIOError("invalid Content-Length") from None
        if length > limit:
            raise exceptions.ContentTooLongError()
        try:
            return bytes(await content.readexactly(length))
        except asyncio.IncompleteReadError:
            raise exceptions.EngineIOError("the body ended early") from None
    body = bytearray()
    while chunk := await content.readany():  # chunked: bounded while it is read, not after
        body += chunk
        if len(body) > limit:
            raise exceptions.ContentTooLongError()
    return bytes(body)


class PacketQueue:
    """A socket's packets to send: the part of ``asyncio.Queue`` the socket uses, at a fraction of its memory.

    An idle connection's queue is empty nearly all the time, yet ``asyncio.Queue``
    keeps three deques and an ``Event`` (a fourth) from the start: 2.5 KB of
    every connection's 30 (tracemalloc, 2,000 idle websockets). This one holds
    a deque only while something is queued and a waiter only while one waits.
    """

    __slots__ = ("_getters", "_items", "_joiners", "_unfinished")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._getters: list[asyncio.Future[None]] = []
        self._unfinished = 0
        self._joiners: list[asyncio.Future[None]] = []

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._unfinished += 1
        self._wake_a_getter()

    async def put(self, item: Any) -> None:  # unbounded: never waits
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    async def get(self) -> Any:
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                if getter in self._getters:
                    self._getters.remove(getter)
                elif self._items:  # woken, then cancelled: the item goes to the next getter
                    self._wake_a_getter()
                raise
        return self.get_nowait()

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            joiners, self._joiners = self._joiners, []
            for joiner in joiners:
                if not joiner.done():
                    joiner.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            joiner = asyncio.get_running_loop().create_future()
            self._joiners.append(joiner)
            await joiner

    def _wake_a_getter(self) -> None:
        while self._getters:
            getter = self._getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return


class EngineSocket(AsyncSocket):  # type: ignore[misc]
    """One Engine.IO session (see the module docstring for the rules it adds)."""

    server: EngineServer
    connected: bool
    upgrading: bool
    upgraded: bool
    closing: bool
    closed: bool
    last_ping: float | None

    def __init__(self, server: EngineServer, sid: str) -> None:
        super().__init__(server, sid)
        self.poll_waiting = False
        self.has_websocket = False
        # A GET in flight when the client closed the session is owed a noop.
        self.noop_owed = False
        # After the sentinel (None) was taken from the queue: nothing more to send.
        self.ended = False
        # The websocket writer holds packets it took from the queue and has not written yet:
        # nothing may be written past them (realtime/transport.py write_directly).
        self.writing = False
        self.close_code = WSCloseCode.OK
        self.pong_deadline = math.inf  # loop time
        self._heartbeat: asyncio.TimerHandle | None = None
        # The websocket, from its handshake until the session ends (realtime/transport.py).
        self.lms_ws: WebSocketResponse | None = None
        # Writes what was queued while the websocket is up; runs only while something is queued.
        self._writer: asyncio.Future[None] | None = None

    # -- heartbeat ------------------------------------------------------------

    def schedule_ping(self) -> None:
        """Start a heartbeat cycle now: ping due after ``ping_interval``, pong ``ping_timeout`` after that."""
        loop = asyncio.get_running_loop()
        due = loop.time() + self.server.ping_interval
        self.pong_deadline = due + self.server.ping_timeout
        self.last_ping = None
        self._cancel_heartbeat()
        self._heartbeat = loop.call_at(due, self._ping_due)

    def _ping_due(self) -> None:
        if self.closing or self.closed:
            return
        loop = asyncio.get_running_loop()
        self.last_ping = loop.time()
        self._put(packet.Packet(packet.PING))
        if self.upgraded or self.poll_waiting:
            # The ping goes out now (a busy loop may run this timer late): the
            # client gets its whole ping_timeout from here. A ping that waits
            # for the next poll counts from when it was due.
            self.pong_deadline = max(self.pong_deadline, self.last_ping + self.server.ping_timeout)
        self._heartbeat = loop.call_at(self.pong_deadline, self._pong_overdue)

    def _pong_overdue(self) -> None:
        self._heartbeat = None
        if not self.closing and not self.closed:
            spawn(self.close(wait=False, reason=self.server.reason.PING_TIMEOUT))

    def _cancel_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    def pong_overdue(self) -> bool:
        return asyncio.get_running_loop().time() >= self.pong_deadline

    async def check_ping_timeout(self) -> bool:
        if self.closed:
            raise exceptions.SocketIsClosedError()
        if self.pong_overdue() and not self.closing:
            await self.close(wait=False, reason=self.server.reason.PING_TIMEOUT)
            return False
        return True

    # -- packets in and out -----------------------------------------------------

    async def receive(self, pkt: packet.Packet) -> None:
        kind = pkt.packet_type
        if kind == packet.PONG:
            if self.last_ping is not None:  # the pong of our ping: the next cycle starts
                self.schedule_ping()
        elif kind == packet.MESSAGE:
            await self.server._trigger_event("message", self.sid, pkt.data, run_async=self.server.async_handlers)
        elif kind == packet.CLOSE:
            await self.close(wait=False, abort=True, reason=self.server.reason.CLIENT_DISCONNECT)
        # open, ping, upgrade and noop mean nothing from a client here: ignored, as the reference server does.

    async def send(self, pkt: packet.Packet) -> None:
        if await self.check_ping_timeout():
            self._put(pkt)

    def _put(self, pkt: packet.Packet | None) -> None:
        """Send ``pkt`` (None: end the stream): written at once when nothing waits before it, else queued.

        A websocket writes a text packet straight away when it may
        (:func:`write_directly`'s rules): an ack or a ping then costs no
        task. Anything else is queued for the waiting poll, or for the
        websocket's writer, which runs while something is queued.
        """
        if (
            pkt is not None
            and self.lms_ws is not None
            and self.server.lms_direct_writes
            and isinstance(encoded := pkt.encode(), str)
            and write_directly(self, text_frame(encoded))
        ):
            return
        self.queue.put_nowait(pkt)
        if self.lms_ws is not None and self.upgraded and self._writer is None:
            self._writer = asyncio.ensure_future(self._write_queued(self.lms_ws))

    async def _take(self) -> packet.Packet | None:
        pkt = await self.queue.get()
        # Under wait_for this runs in a task of its own, which takes the packet off the queue a
        # loop turn before the poll resumes: from then on the packet is not in the queue, yet unsent.
        self.writing = True
        return pkt

    async def poll(self, wait_seconds: float | None = None) -> list[packet.Packet]:
        """What is queued, waiting up to ``wait_seconds`` (default: interval + timeout) for the first packet.

        ``[]`` once the session ended (the sentinel was taken).
        """
        if self.ended:
            return []
        if wait_seconds is None:
            wait_seconds = self.server.ping_interval + self.server.ping_timeout
        try:
            # The websocket writer waits without a timeout: no task, future and timer per idle connection.
            first = await (self._take() if wait_seconds == math.inf else asyncio.wait_for(self._take(), wait_seconds))
        except TimeoutError:
            raise exceptions.QueueEmpty() from None
        self.queue.task_done()
        packets: list[packet.Packet] = []
        pkt = first
        while pkt is not None:
            packets.append(pkt)
            try:
                pkt = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return packets
            self.queue.task_done()
        self.ended = True
        return packets

    # -- long-polling ---------------------------------------------------------

    async def handle_get_request(self, environ: dict[str, Any]) -> Any:
        connections = [s.strip() for s in environ.get("HTTP_CONNECTION", "").lower().split(",")]
        if "upgrade" in connections and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return self._upgrade_websocket(environ["aiohttp.request"])
        if self.upgrading or self.upgraded:
            return [packet.Packet(packet.NOOP)]
        if self.poll_waiting:
            # Two polls at once: the client is broken or someone else holds the sid.
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise exceptions.EngineIOError("duplicate poll")
        self.poll_waiting = True
        try:
            return await self.poll()
        except exceptions.QueueEmpty:
            await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise
        finally:
            self.poll_waiting = False

    async def handle_post_request(self, environ: dict[str, Any]) -> None:
        body = await read_body(environ, self.server.max_http_buffer_size)
        for pkt in decode_payload(body):
            await self.receive(pkt)
            if self.closed:
                return

    # -- closing ----------------------------------------------------------------

    async def close(self, wait: bool = True, abort: bool = False, reason: str | None = None) -> None:
        """End the session: the close packet (unless the client closed it), then the end of the stream.

        A waiting poll gets what is queued (the close packet, or a noop when
        the client closed the session); the websocket writer sends it and
        closes the websocket.
        """
        if self.closed or self.closing:
            return
        self.closing = True
        self._cancel_heartbeat()
        await self.server._trigger_event(
            "disconnect", self.sid, reason or self.server.reason.SERVER_DISCONNECT, run_async=False
        )
        if not abort:
            self._put(packet.Packet(packet.CLOSE))
        elif self.poll_waiting:
            self._put(packet.Packet(packet.NOOP))
        elif not self.has_websocket:
            self.noop_owed = True
        self._put(None)
        self.closed = True
        if wait:
            await self.queue.join()

    async def protocol_error(self, level: str, what: str) -> None:
        """The client sent something that is not the protocol: count, log one line, end the session (1002)."""
        self.server.protocol_errors[level] += 1
        log.warning("%s: %s protocol error (%s); closing the connection", self.sid, level, what)
        self.close_code = WSCloseCode.PROTOCOL_ERROR
        await self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)

    # -- websocket --------------------------------------------------------------

    def _upgrade_websocket(self, request: web.Request) -> Coroutine[Any, Any, WebSocketResponse]:
        """The websocket's life, to be awaited by the request's handler (:meth:`EngineServer.handle_request`)."""
        if self.has_websocket or self.closing or self.closed:
            return _accept_and_close(request, self.server)  # what clients expect rather than a 400
        self.has_websocket = True
        return self._serve_websocket(request)

    async def _serve_websocket(self, request: web.Request) -> WebSocketResponse:
        """The handshake, the upgrade from polling if there was one, then every frame until either side closes.

        One frame of Python for the connection's life besides aiohttp's
        (each suspended coroutine frame stays as long as the websocket: about
        300 bytes of every idle connection), and no writer task while
        nothing is queued (:meth:`_put`).
        """
        ws = await open_websocket(request, self.server)
        self.lms_ws = ws
        if not await self._upgraded(ws):
            self.lms_ws = None
            self.has_websocket = False
            await ws.close(code=self.close_code)
            return ws
        reason = self.server.reason.TRANSPORT_CLOSE
        try:
            if not self.queue.empty():  # queued before the upgrade: the writer sends it first
                self._writer = asyncio.ensure_future(self._write_queued(ws))
            while not self.closed:
                pkt = self._decoded(await ws.receive())
                if isinstance(pkt, InvalidPayload):
                    await self.protocol_error("engineio", str(pkt))
                    break
                if pkt is None:
                    break
                try:
                    await self.receive(pkt)
                except exceptions.SocketIsClosedError:
                    break
                except Exception:  # a bug behind the packet: log it, keep the connection
                    log.exception("%s: handling a packet failed", self.sid)
        finally:
            self._put(None)  # the writer sends what is queued, then closes the websocket
            writer = self._writer
            try:
                # aiohttp cancels this task when the connection drops, perhaps while it waits here
                # (a cancel would reach the writer through the await): the writer still ends on
                # its own, and the session still closes.
                if writer is not None:
                    await asyncio.shield(writer)
            finally:
                await self.close(wait=False, abort=True, reason=reason)
                self.lms_ws = None
                self.server.sockets.pop(self.sid, None)
        return ws

    async def _upgraded(self, ws: WebSocketResponse) -> bool:
        """Whether this websocket now carries the session: at once when it opened it, else after the probe."""
        if not self.connected:
            self.connected = self.upgraded = True
            return True
        self.upgrading = True
        probe = await self._handshake_packet(ws)
        if probe is None or probe.packet_type != packet.PING or probe.data != "probe":
            self.upgrading = False
            return False
        await ws.send_str(packet.Packet(packet.PONG, data="probe").encode())
        if self.poll_waiting:
            self.queue.put_nowait(packet.Packet(packet.NOOP))  # ends the waiting poll
        upgrade = await self._handshake_packet(ws)
        self.upgrading = False
        if upgrade is None or upgrade.packet_type != packet.UPGRADE:
            return False
        self.upgraded = True
        return True

    async def _handshake_packet(self, ws: WebSocketResponse) -> packet.Packet | None:
        pkt = self._decoded(await ws.receive())
        if isinstance(pkt, InvalidPayload):
            await self.protocol_error("engineio", str(pkt))
            return None
        return pkt

    @staticmethod
    def _decoded(message: WSMessage) -> packet.Packet | InvalidPayload | None:
        """The frame's packet; None when the websocket closed, the error when the frame is not a packet."""
        if message.type is not WSMsgType.TEXT and message.type is not WSMsgType.BINARY:
            return None
        try:
            return decode_packet(message.data)
        except InvalidPayload as err:
            return err

    async def _write_queued(self, ws: WebSocketResponse) -> None:
        """Write what is queued, in order, until the queue is empty; after the end of the stream, close."""
        try:
            while not self.queue.empty():
                self.writing = True  # taken from the queue, not yet written: no direct write may pass them
                packets = []
                while not self.queue.empty():
                    packets.append(self.queue.get_nowait())
                    self.queue.task_done()
                for pkt in packets:
                    if pkt is None:
                        self.ended = True
                        break
                    if pkt.packet_type != packet.NOOP:  # a noop only ends polls
                        encoded = pkt.encode()
                        await (ws.send_str(encoded) if isinstance(encoded, str) else ws.send_bytes(encoded))
                self.writing = False
                if self.ended:
                    break
        except Exception:  # the websocket went away under us
            log.debug("%s: websocket writer stopped", self.sid, exc_info=True)
            self.ended = True
        finally:
            self._writer = None
        if self.ended:
            await ws.close(code=self.close_code)


async def _accept_and_close(request: web.Request, eio: engineio.AsyncServer) -> WebSocketResponse:
    ws = await open_websocket(request, eio)
    await ws.close()
    return ws


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's asyncio server with the request rules of the module docstring.

    ``protocol_errors`` counts connections closed for protocol errors, by
    level (``engineio``, ``socketio``).
    """

    start_service_task: bool
    sockets: dict[str, EngineSocket]

    def __init__(self, *, websocket_compression: bool = False, direct_writes: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        install_drivers(self, compression=websocket_compression)
        # Packets written straight to an idle websocket (EngineSocket._put); off, every packet goes
        # through the socket's queue and writer task, as python-engineio delivers them.
        self.lms_direct_writes = direct_writes
        self.protocol_errors: Counter[str] = Counter()

    def create_queue(self, *args: Any, **kwargs: Any) -> PacketQueue:
        """Each socket's outgoing packets (python-engineio makes one per socket with this)."""
        return PacketQueue()

    def _ok(self, packets: Any = None, headers: Any = None, jsonp_index: Any = None) -> dict[str, Any]:
        if packets is not None:
            response: dict[str, Any] = super()._ok(packets, headers=headers, jsonp_index=jsonp_index)
            return response
        return {"status": "200 OK", "headers": [("Content-Type", "text/plain; charset=UTF-8")], "response": b"ok"}

    async def _handle_connect(self, environ: dict[str, Any], transport: str, jsonp_index: int | None = None) -> Any:
        if self.start_service_task:
            self.start_service_task = False
            self.service_task_handle = self.start_background_task(self._service_task)
        sid = self.generate_id()
        socket = EngineSocket(self, sid)
        self.sockets[sid] = socket
        await socket.send(
            packet.Packet(
                packet.OPEN,
                {
                    "sid": sid,
                    "upgrades": self._upgrades(sid, transport),
                    "pingTimeout": round(self.ping_timeout * 1000),
                    "pingInterval": round((self.ping_interval + self.ping_interval_grace_period) * 1000),
                    "maxPayload": self.max_http_buffer_size,
                },
            )
        )
        ret = await self._trigger_event("connect", sid, environ, run_async=False)
        if ret is not None and ret is not True:
            del self.sockets[sid]
            return self._unauthorized(ret or None)
        socket.schedule_ping()
        if transport == "websocket":
            return await socket.handle_get_request(environ)  # the websocket's life (see handle_request)
        socket.connected = True
        headers = None
        if self.cookie:
            cookie = self.cookie
            if not isinstance(cookie, dict):
                cookie = {"name": self.cookie, "path": "/", "SameSite": "Lax"}
            headers = [("Set-Cookie", self._generate_sid_cookie(sid, cookie))]
        try:
            return self._ok(await socket.poll(), headers=headers, jsonp_index=jsonp_index)
        except exceptions.QueueEmpty:
            return self._bad_request()

    async def _session(self, sid: str) -> EngineSocket | None:
        """The session ``sid``; one past its pong deadline is closed on the way (None for both)."""
        socket: EngineSocket | None = self.sockets.get(sid)
        if socket is None:
            return None
        if not socket.closed and socket.pong_overdue():
            await socket.close(wait=False, reason=self.reason.PING_TIMEOUT)
        if socket.closed:
            if not socket.noop_owed:
                self.sockets.pop(sid, None)
            return socket if socket.noop_owed else None
        return socket

    async def handle_request(self, *args: Any, **kwargs: Any) -> Any:
        """The route's handler. A websocket's life is returned by :meth:`_respond` to be awaited here, so that
        the coroutines that routed it have ended: each suspended one would stay for the connection's life.
        """
        response = await self._respond(self._async["translate_request"](*args, **kwargs))
        if asyncio.iscoroutine(response):
            return await response
        return response

    async def _respond(self, environ: dict[str, Any]) -> Any:
        if self.cors_allowed_origins != []:
            origin = environ.get("HTTP_ORIGIN")
            if origin:
                allowed = self._cors_allowed_origins(environ)
                if allowed is not None and origin not in allowed:
                    self._log_error_once(origin + " is not an accepted origin.", "bad-origin")
                    return await self._make_response(self._bad_request(origin + " is not an accepted origin."), environ)
        r = await self._route(environ)
        if not isinstance(r, dict):
            return r  # a websocket's life
        if self.http_compression and len(r["response"]) >= self.compression_threshold:
            encodings = [e.split(";")[0].strip() for e in environ.get("HTTP_ACCEPT_ENCODING", "").split(",")]
            for encoding in encodings:
                if encoding in self.compression_methods:
                    r["response"] = getattr(self, "_" + encoding)(r["response"])
                    r["headers"] += [("Content-Encoding", encoding)]
                    break
        return await self._make_response(r, environ)

    async def _route(self, environ: dict[str, Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        if method == "OPTIONS":
            return self._ok()
        if method not in ("GET", "POST"):
            return self._bad_request(f"Method {method[:16]} not supported")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        transport = query.get("transport", [None])[0]
        if transport not in self.transports:
            return self._bad_request("Invalid transport")
        sid = query.get("sid", [None])[0]
        if sid is None and query.get("EIO") != ["4"]:
            return self._bad_request("The client uses an unsupported version of the Socket.IO or Engine.IO protocols")
        jsonp_index = None
        if "j" in query:
            try:
                jsonp_index = int(query["j"][0])
            except ValueError:
                return self._bad_request("Invalid JSONP index number")
        upgrade = environ.get("HTTP_UPGRADE", "").lower()
        if sid is None:
            if method == "POST":
                return self._bad_request("Invalid session None")
            if transport == "polling" or transport == upgrade == "websocket":
                return await self._handle_connect(environ, transport, jsonp_index)
            return self._bad_request("Invalid websocket upgrade")
        socket = await self._session(sid)
        if socket is None:
            return self._bad_request(f"Invalid session {sid[:32]}")
        if socket.closed:  # owed a noop: the poll that was in flight when the client closed
            socket.noop_owed = False
            self.sockets.pop(sid, None)
            if method == "GET":
                return self._ok([packet.Packet(packet.NOOP)], jsonp_index=jsonp_index)
            return self._bad_request()
        if method == "GET" and transport == "websocket":
            if upgrade != "websocket":
                return self._bad_request("Invalid transport")
            return await socket.handle_get_request(environ)
        if transport != "polling":
            return self._bad_request("Invalid transport")
        if not socket.connected:
            return self._bad_request("Not connected")
        if method == "GET" and socket.upgrading:
            # Let the websocket read what it has already received first: an
            # upgrade the client completed before this poll is then seen.
            await asyncio.sleep(0)
        if socket.upgraded:
            return self._bad_request("Unexpected HTTP request")
        if method == "GET":
            try:
                packets = await socket.handle_get_request(environ)
            except exceptions.EngineIOError:
                await socket.close(wait=False, reason=self.reason.TRANSPORT_ERROR)
                return self._bad_request()
            finally:
                if socket.closed and not socket.noop_owed:
                    self.sockets.pop(sid, None)
            return self._ok(packets, jsonp_index=jsonp_index)
        try:
            await socket.handle_post_request(environ)
        except InvalidPayload as err:
            await socket.protocol_error("engineio", str(err))
            return self._bad_request("Invalid payload")
        except exceptions.EngineIOError:
            await socket.close(wait=False, reason=self.reason.TRANSPORT_ERROR)
            return self._bad_request()
        return self._ok(jsonp_index=jsonp_index)
