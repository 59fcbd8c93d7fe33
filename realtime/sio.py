"""Socket.IO v5 as the reference (Node) server speaks it: our subclass of python-socketio's server.

On top of the Engine.IO rules of :mod:`realtime.engine` (whose server it
uses), python-socketio 5.18 differs from the protocol (the official suite in
``../shared/conformance``; ``scripts/conformance``) as follows; each rule is
implemented here and tested in ``tests/test_realtime_protocol.py``:

- A message that is not a Socket.IO packet (unknown type, undecodable JSON,
  a malformed ack id) or whose payload the packet type does not allow (an
  event that is not a non-empty array starting with a name, a CONNECT
  payload that is not an object, a CONNECT_ERROR from a client, binary data
  out of place, a binary packet announcing no attachment or more than 10)
  ends the connection, as the reference server's parser does:
  counted, logged in one line, websocket closed with 1002. python-socketio
  logged a traceback and kept the connection. Well-formed events with a bad
  payload still get an ``ok: false`` ack (realtime/namespace.py).
- An unknown namespace is refused with CONNECT_ERROR ``{"message": "Invalid
  namespace"}`` (an object; it was the string "Unable to connect", which the
  JavaScript client shows as an empty message).
- A connection that has not connected any namespace ``connect_timeout``
  seconds after the Engine.IO handshake is closed (``connectTimeout`` of the
  reference server, 45 s by default): a client that answers pings but never
  sends CONNECT, and so never shows a token, does not stay forever.
- Packets' JSON is read and written by orjson (:class:`PacketJson`), with
  python-socketio's stdlib ``json`` for what orjson refuses, so whatever
  the stdlib read is still read. JSON nested too deep for the stdlib decoder is not
  a packet: its ``RecursionError`` had left the connection open with a
  traceback.

python-socketio keeps each connection's WSGI environ for the connection's
life, to hand to namespace ``connect`` handlers. Ours keep only
``environ["aiohttp.request"]`` (headers, peer address), so only that is
kept: the translated header copies were about 1.3 KB per idle connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import engineio.json
import orjson
import socketio
from socketio import packet

from realtime.engine import EngineServer, EngineSocket, spawn
from realtime.transport import text_frame, write_directly

log = logging.getLogger(__name__)

# Event names a client may not send (socket.io-parser's RESERVED_EVENTS).
RESERVED_EVENTS = frozenset(
    ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener")
)
INVALID_NAMESPACE = {"message": "Invalid namespace"}
# Binary attachments one packet may announce (socket.io-parser's maxAttachments default).
MAX_ATTACHMENTS = 10


class ProtocolError(ValueError):
    """A message that is not a valid Socket.IO packet."""


def check_packet(pkt: packet.Packet) -> None:
    """Raise :class:`ProtocolError` unless the payload is one the packet type allows (socket.io-parser's rules)."""
    kind, data = pkt.packet_type, pkt.data
    if kind == packet.CONNECT:
        ok = data is None or isinstance(data, dict)
    elif kind == packet.DISCONNECT:
        ok = data is None
    elif kind in (packet.EVENT, packet.BINARY_EVENT):
        name = data[0] if isinstance(data, list) and data else None
        ok = (isinstance(name, str) and name not in RESERVED_EVENTS) or (
            isinstance(name, int | float) and not isinstance(name, bool)
        )
    elif kind in (packet.ACK, packet.BINARY_ACK):
        ok = isinstance(data, list)
    else:  # CONNECT_ERROR is for servers to send; anything else is no type at all
        ok = False
    if not ok:
        raise ProtocolError(f"a {packet.packet_names[kind] if kind in range(7) else kind!r} packet with that payload")
    if kind in (packet.BINARY_EVENT, packet.BINARY_ACK) and not 1 <= pkt.attachment_count <= MAX_ATTACHMENTS:
        # Every attachment is kept until the last arrives: a count with no bound let one client
        # pile up binary messages without end.
        raise ProtocolError(f"a binary packet announcing {pkt.attachment_count} attachments")


class PacketJson:
    """The JSON of Socket.IO packets, as python-socketio's ``json`` hook (``loads``, ``dumps``): orjson.

    orjson reads and writes a packet 2-4 times faster than the stdlib (an
    answer's decode 7.2 → 3.3 µs, its ack's encode 3.7 → 1.0 µs). What it
    refuses takes python-socketio's own way (``engineio.json``): coming in, a
    lone surrogate escape or an infinite number (which ``JSON.parse`` reads),
    ``NaN`` (which python-socketio clients send); going out, a non-string key
    or an integer past 64 bits. Integers past 64 bits come in as doubles,
    as ``JSON.parse`` reads them.
    """

    @staticmethod
    def loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return engineio.json.loads(text)  # with its bound on an integer's digits

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            return json.dumps(value, separators=(",", ":"))


class LmsPacket(packet.Packet):  # type: ignore[misc]
    """python-socketio's packet with :class:`PacketJson` (its own ``json`` hook would replace every packet's JSON
    in the process, the test suite's clients' too)."""

    json = PacketJson


class SocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's asyncio server with the rules of the module docstring."""

    def __init__(self, *, connect_timeout: float = 45.0, **kwargs: Any) -> None:
        super().__init__(serializer=LmsPacket, **kwargs)
        self.connect_timeout = connect_timeout
        self.connect_timeouts = 0
        self._connect_deadlines: dict[str, asyncio.TimerHandle] = {}

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    # -- connect timeout --------------------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, {"aiohttp.request": environ["aiohttp.request"]})
        loop = asyncio.get_running_loop()
        self._connect_deadlines[eio_sid] = loop.call_later(self.connect_timeout, self._connect_overdue, eio_sid)

    def _connect_overdue(self, eio_sid: str) -> None:
        self._connect_deadlines.pop(eio_sid, None)
        socket = self.eio.sockets.get(eio_sid)
        if socket is None or socket.closing or socket.closed or self._has_namespace(eio_sid):
            return
        self.connect_timeouts += 1
        log.info("%s: no namespace connected within %g s; closing", eio_sid, self.connect_timeout)
        spawn(socket.close(wait=False, reason=self.reason.SERVER_DISCONNECT))

    def _has_namespace(self, eio_sid: str) -> bool:
        manager = self.manager
        for namespace in list(manager.get_namespaces()):
            sid = manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is not None and manager.is_connected(sid, namespace):
                return True
        return False

    async def _handle_eio_disconnect(self, eio_sid: str, reason: str) -> None:
        deadline = self._connect_deadlines.pop(eio_sid, None)
        if deadline is not None:
            deadline.cancel()
        await super()._handle_eio_disconnect(eio_sid, reason)

    # -- connect ----------------------------------------------------------------

    def _serves(self, namespace: str) -> bool:
        return (
            namespace in self.handlers
            or namespace in self.namespace_handlers
            or self.namespaces == "*"
            or namespace in self.namespaces
        )

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if not self._serves(namespace):
            await self._send_packet(
                eio_sid, self.packet_class(packet.CONNECT_ERROR, data=INVALID_NAMESPACE, namespace=namespace)
            )
            return
        await super()._handle_connect(eio_sid, namespace, data)
        deadline = self._connect_deadlines.get(eio_sid)
        if deadline is not None and self._has_namespace(eio_sid):
            deadline.cancel()
            del self._connect_deadlines[eio_sid]

    # -- sending ----------------------------------------------------------------

    async def _send_packet(self, eio_sid: str, pkt: packet.Packet) -> None:
        """One packet to one client (acks, ``session_state``, emits to a sid).

        Written straight to the websocket when nothing is queued or buffered
        for it (the rule of realtime/fanout.py, so nothing sent earlier is
        overtaken); through Engine.IO's queue and writer task otherwise.
        """
        encoded = pkt.encode()
        if isinstance(encoded, str) and getattr(self.manager, "direct", False):
            socket = self.eio.sockets.get(eio_sid)
            if socket is not None and write_directly(socket, text_frame("4" + encoded)):
                return
        await super()._send_packet(eio_sid, pkt)

    # -- messages ---------------------------------------------------------------

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        try:
            pkt = self._decode(eio_sid, data)
        except ProtocolError as err:
            socket = self.eio.sockets.get(eio_sid)
            if isinstance(socket, EngineSocket):
                await socket.protocol_error("socketio", str(err))
            return
        if pkt is None:  # an attachment of a binary packet still incomplete
            return
        kind = pkt.packet_type
        if kind == packet.CONNECT:
            await self._handle_connect(eio_sid, pkt.namespace, pkt.data)
        elif kind == packet.DISCONNECT:
            await self._handle_disconnect(eio_sid, pkt.namespace, self.reason.CLIENT_DISCONNECT)
        elif kind in (packet.EVENT, packet.BINARY_EVENT):
            await self._handle_event(eio_sid, pkt.namespace, pkt.id, pkt.data)
        else:
            await self._handle_ack(eio_sid, pkt.namespace, pkt.id, pkt.data)

    def _decode(self, eio_sid: str, data: str | bytes) -> packet.Packet | None:
        """The complete packet this message makes, None while attachments are due, or :class:`ProtocolError`."""
        pending = self._binary_packet.get(eio_sid)
        if pending is not None:
            if not isinstance(data, bytes):
                raise ProtocolError("text where a binary attachment was due")
            if not pending.add_attachment(data):
                return None
            del self._binary_packet[eio_sid]
            return pending  # type: ignore[no-any-return]
        if not isinstance(data, str):
            raise ProtocolError("binary data with no packet announcing it")
        try:
            pkt = self.packet_class(encoded_packet=data)
        except (ValueError, TypeError, IndexError, RecursionError) as err:  # JSONDecodeError is a ValueError
            raise ProtocolError(f"not a Socket.IO packet: {data[:40]!r}") from err
        check_packet(pkt)
        if pkt.packet_type in (packet.BINARY_EVENT, packet.BINARY_ACK) and pkt.attachment_count > 0:
            if not self.manager.sid_from_eio_sid(eio_sid, pkt.namespace or "/"):
                raise ProtocolError("a binary packet for a namespace that is not connected")
            self._binary_packet[eio_sid] = pkt
            return None
        return pkt  # type: ignore[no-any-return]
