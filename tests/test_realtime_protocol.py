"""The Engine.IO and Socket.IO protocol rules of realtime/engine.py and realtime/sio.py, on raw HTTP and websockets.

Each test pins one rule the official suites check (``scripts/conformance``
runs those), independently of them, against the platform's own app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import WSMsgType
from hypothesis import given, settings
from hypothesis import strategies as st

from lms.app import create_app
from lms.config import RealtimeSettings
from realtime.context import REALTIME
from tests.builders import login, make_user
from tests.conftest import Instance, LiveClient, make_config
from tests.polling import eventually

FAST_PINGS = {"ping_interval_seconds": 0.3, "ping_timeout_seconds": 0.2}

Serve = Callable[..., Awaitable[Instance]]


@pytest.fixture
def serve(aiohttp_client: Any, servers: Any) -> Serve:
    async def start(**realtime: Any) -> Instance:
        app = create_app(make_config(servers, realtime=realtime))
        return Instance(app, await aiohttp_client(app))

    return start


def eio_path(**query: str) -> str:
    return "/socket.io/?" + "&".join(f"{k}={v}" for k, v in query.items())


async def open_polling(instance: Instance) -> str:
    response = await instance.http.get(eio_path(EIO="4", transport="polling"))
    assert response.status == 200
    return str(json.loads((await response.text())[1:])["sid"])


def ws_url(instance: Instance, **query: str) -> str:
    return instance.url + eio_path(EIO="4", transport="websocket", **query)


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> int:
    """The close code the server sent (anything else first fails the test)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type == WSMsgType.TEXT and msg.data in ("1", "2"):  # close and ping packets may come first
            continue
        assert msg.type == WSMsgType.CLOSE, msg
        return int(msg.data)


async def token_for(instance: Instance, db: Any) -> str:
    user = await make_user(db)
    return str((await login(instance.http, user["email"]))["access_token"])


# -- handshake and requests --------------------------------------------------------


async def test_sub_second_ping_interval_is_sent_in_milliseconds(serve: Serve) -> None:
    instance = await serve(**FAST_PINGS)
    response = await instance.http.get(eio_path(EIO="4", transport="polling"))
    opened = json.loads((await response.text())[1:])
    assert (opened["pingInterval"], opened["pingTimeout"]) == (300, 200)
    # The defaults real clients get are unchanged.
    assert (RealtimeSettings().ping_interval_seconds, RealtimeSettings().ping_timeout_seconds) == (25, 20)


async def test_requests_need_a_transport_and_a_protocol_method(serve: Serve) -> None:
    instance = await serve()
    http = instance.http
    assert (await http.get(eio_path(EIO="4"))).status == 400
    assert (await http.get(eio_path(EIO="4", transport="abc"))).status == 400
    for method in ("PUT", "DELETE", "PATCH"):
        assert (await http.request(method, eio_path(EIO="4", transport="polling"))).status == 400
    assert (await http.post(eio_path(EIO="4", transport="polling"), data="40")).status == 400  # no session


async def test_post_answers_ok_and_is_read_whole_when_it_arrives_in_pieces(serve: Serve) -> None:
    instance = await serve()
    sid = await open_polling(instance)
    body = b"40"  # CONNECT to "/" without a token: answered with CONNECT_ERROR on the next poll
    url = instance.http.make_url(eio_path(EIO="4", transport="polling", sid=sid))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = f"POST {url.path_qs} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + body[:1])
    await writer.drain()
    await asyncio.sleep(0.05)  # the second piece arrives later, as on a mobile network
    writer.write(body[1:])
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nok")
    poll = await instance.http.get(eio_path(EIO="4", transport="polling", sid=sid))
    assert (await poll.text()).startswith('44{"message":"Send an access token')


async def test_invalid_polling_payload_is_400_and_ends_the_session(serve: Serve) -> None:
    instance = await serve()
    sid = await open_polling(instance)
    path = eio_path(EIO="4", transport="polling", sid=sid)
    assert (await instance.http.post(path, data="abc")).status == 400
    assert (await instance.http.get(path)).status == 400
    assert instance.app[REALTIME].sio.eio.protocol_errors["engineio"] == 1


async def test_a_second_poll_while_one_waits_ends_the_session(serve: Serve) -> None:
    instance = await serve()
    sid = await open_polling(instance)
    path = eio_path(EIO="4", transport="polling", sid=sid)
    eio = instance.app[REALTIME].sio.eio
    first = asyncio.ensure_future(instance.http.get(path))
    await eventually(lambda: eio.sockets[sid].poll_waiting, what="first poll waiting", interval=0.01)
    second = await instance.http.get(path)
    assert second.status == 400
    response = await asyncio.wait_for(first, 5)
    assert response.status == 200 and await response.text() == "1"  # the close packet
    assert (await instance.http.get(path)).status == 400


async def test_a_request_after_the_pong_deadline_finds_the_session_closed(serve: Serve) -> None:
    instance = await serve(**FAST_PINGS)
    loop = asyncio.get_running_loop()
    sid = await open_polling(instance)
    # The deadline is interval + timeout after the handshake; reach it even
    # if the server's timer were late (it is stopped here: the check on
    # arrival alone must close the session).
    past_deadline = loop.time() + 0.5
    socket = instance.app[REALTIME].sio.eio.sockets[sid]
    socket._cancel_heartbeat()
    await asyncio.sleep(past_deadline - loop.time())
    assert (await instance.http.get(eio_path(EIO="4", transport="polling", sid=sid))).status == 400


async def test_the_pong_deadline_closes_a_silent_websocket(serve: Serve) -> None:
    instance = await serve(**FAST_PINGS)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        assert (await ws.receive_str()).startswith("0{")
        assert await ws.receive_str() == "2"  # never answered
        assert await ws.receive_str() == "1"  # the close packet, then the websocket closes
        assert await closed_with(ws) == 1000


async def test_pongs_keep_a_session_open_across_cycles(serve: Serve) -> None:
    instance = await serve(**FAST_PINGS)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        assert (await ws.receive_str()).startswith("0{")
        for _ in range(4):  # four cycles: longer than interval + timeout
            assert await ws.receive_str() == "2"
            await ws.send_str("3")


async def test_client_close_answers_the_poll_in_flight_with_a_noop(serve: Serve) -> None:
    instance = await serve()
    eio = instance.app[REALTIME].sio.eio
    for poll_first in (True, False):
        sid = await open_polling(instance)
        path = eio_path(EIO="4", transport="polling", sid=sid)
        if poll_first:
            poll = asyncio.ensure_future(instance.http.get(path))
            await eventually(lambda sid=sid: eio.sockets[sid].poll_waiting, what="poll waiting", interval=0.01)
            assert (await instance.http.post(path, data="1")).status == 200
        else:  # the close overtook the poll
            assert (await instance.http.post(path, data="1")).status == 200
            poll = asyncio.ensure_future(instance.http.get(path))
        response = await asyncio.wait_for(poll, 5)
        assert response.status == 200 and await response.text() == "6"
        assert (await instance.http.get(path)).status == 400


# -- upgrades -------------------------------------------------------------------------


async def test_upgrade_noop_ends_the_poll_and_never_reaches_the_websocket(serve: Serve) -> None:
    instance = await serve()
    sid = await open_polling(instance)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance, sid=sid)) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str() == "3probe"
        poll = await instance.http.get(eio_path(EIO="4", transport="polling", sid=sid))
        assert await poll.text() == "6"
        await ws.send_str("5")
        await ws.send_str("40")  # no token: refused, which proves the websocket carries the session
        assert (await ws.receive_str()).startswith('44{"message":')
        # Polling is over for this session.
        assert (await instance.http.get(eio_path(EIO="4", transport="polling", sid=sid))).status == 400


async def test_a_second_websocket_for_a_session_is_accepted_and_closed(serve: Serve) -> None:
    instance = await serve()
    sid = await open_polling(instance)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance, sid=sid)) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str() == "3probe"
        await ws.send_str("5")
        async with http.ws_connect(ws_url(instance, sid=sid)) as intruder:
            assert await closed_with(intruder) == 1000
        await ws.send_str("40")
        assert (await ws.receive_str()).startswith('44{"message":')


# -- frames that are not the protocol (issue 10, item 4) --------------------------------


async def test_websocket_frames_that_are_not_engineio_packets_close_with_1002(
    serve: Serve, live: Any, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    instance = await serve()
    bystander: LiveClient = await live().connect(instance.url, await token_for(instance, db))
    caplog.set_level(logging.WARNING)
    frames = ("", "abc", "7", "\u0663x")
    async with aiohttp.ClientSession() as http:
        for frame in frames:
            async with http.ws_connect(ws_url(instance)) as ws:
                assert (await ws.receive_str()).startswith("0{")
                await ws.send_str(frame)
                assert await closed_with(ws) == 1002
    # One line each, no traceback, no HTTP 500 anywhere.
    lines = [r for r in caplog.records if r.name == "realtime.engine"]
    assert len(lines) == len(frames) and all(r.exc_info is None and "protocol error" in r.message for r in lines)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    metrics = await (await instance.http.get("/metrics")).text()
    assert f'lms_socketio_protocol_errors{{level="engineio"}} {float(len(frames))}' in metrics
    # Everyone else is untouched.
    assert (await bystander.call("authenticate", {"token": "x"}))["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "frame",
    [
        *("4abc", "42{}", "42[]", '42abc["x",1]', "49zz", '42["connect"]', "44{}", '40"x"', '42["x"'),
        '42["x",' + "1" * 400 + "]",  # past engineio.json's bound on an integer's digits
        *('4511-["x"]', '45["x"]', '450-["x"]'),  # binary: more than 10 attachments, or none
        pytest.param('42["x",' + "[" * 5000 + "]" * 5000 + "]", id="nested-5000-deep"),
        pytest.param('42["x",' + "[" * 5000 + '"\\ud800"' + "]" * 5000 + "]", id="nested-with-a-lone-surrogate"),
    ],
)
async def test_messages_that_are_not_socketio_packets_close_the_connection(
    serve: Serve, db: Any, frame: str, caplog: pytest.LogCaptureFixture
) -> None:
    instance = await serve()
    token = await token_for(instance, db)
    caplog.set_level(logging.WARNING)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str('40{"token":"' + token + '"}')
        assert (await ws.receive_str()).startswith("40{")
        await ws.send_str(frame)
        assert await closed_with(ws) == 1002  # at once, not at a ping timeout (25 s here)
    assert instance.app[REALTIME].sio.eio.protocol_errors["socketio"] == 1
    # One line, no traceback (JSON nested 5,000 deep raised RecursionError past the decoder's handling).
    assert not [r for r in caplog.records if r.exc_info is not None or r.levelno >= logging.ERROR]


async def test_a_binary_packet_left_incomplete_is_forgotten_with_its_connection(serve: Serve, db: Any) -> None:
    instance = await serve()
    sio = instance.app[REALTIME].sio
    token = await token_for(instance, db)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        eio_sid = json.loads((await ws.receive_str())[1:])["sid"]
        await ws.send_str('40{"token":"' + token + '"}')
        assert (await ws.receive_str()).startswith("40{")
        await ws.send_str('452-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        await ws.send_bytes(b"one of two")
        await eventually(lambda: eio_sid in sio._binary_packet)
    await eventually(lambda: eio_sid not in sio.eio.sockets)
    assert eio_sid not in sio._binary_packet


async def test_json_that_the_reference_parser_reads_is_read_the_same(serve: Serve, db: Any) -> None:
    """What orjson refuses but the stdlib reads (a lone surrogate escape, an infinite number, NaN, as
    python-socketio clients send it), an integer past 64 bits and deep nesting reach the event's handler,
    which refuses the payload with an ack; the connection stays."""
    instance = await serve()
    token = await token_for(instance, db)
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str('40{"token":"' + token + '"}')
        assert (await ws.receive_str()).startswith("40{")
        for ack_id, token_value in enumerate(('"\\ud800"', "1e999", "NaN", str(2**70), "[" * 900 + "]" * 900), start=1):
            await ws.send_str(f'42{ack_id}["authenticate",{{"token":{token_value}}}]')
            ack = json.loads((await ws.receive_str())[2 + len(str(ack_id)) :])[0]
            assert ack["ok"] is False and ack["error"]["code"] in ("invalid_payload", "unauthorized"), ack
    assert instance.app[REALTIME].sio.eio.protocol_errors["socketio"] == 0


async def test_unknown_namespace_is_refused_with_a_message_object(serve: Serve, live: Any, db: Any) -> None:
    instance = await serve()
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(instance)) as ws:
        assert (await ws.receive_str()).startswith("0{")
        await ws.send_str("40/random,")
        assert await ws.receive_str() == '44/random,{"message":"Invalid namespace"}'
    client: LiveClient = live()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(instance.url, await token_for(instance, db), "/nope")
    assert client.refusals["/nope"] == {"message": "Invalid namespace"}


# -- connect timeout (issue 10, item 5) --------------------------------------------------


async def test_a_connection_that_never_connects_a_namespace_is_closed(serve: Serve, db: Any) -> None:
    assert RealtimeSettings().connect_timeout_seconds == 45
    instance = await serve(connect_timeout_seconds=0.5)
    sio = instance.app[REALTIME].sio
    token = await token_for(instance, db)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(instance)) as idle,
        http.ws_connect(ws_url(instance)) as member,
    ):
        member_sid = json.loads((await member.receive_str())[1:])["sid"]
        await member.send_str('40{"token":"' + token + '"}')
        assert (await member.receive_str()).startswith("40{")
        assert (await idle.receive_str()).startswith("0{")
        assert await closed_with(idle) == 1000  # pings are 25 s apart: this is the connect timeout
        # The one that connected has no deadline left.
        assert member_sid in sio.eio.sockets and member_sid not in sio._connect_deadlines
        await member.send_str('421["authenticate",{"token":"x"}]')
        assert (await member.receive_str()).startswith("431[")
    assert sio.connect_timeouts == 1
    metrics = await (await instance.http.get("/metrics")).text()
    assert "lms_socketio_connect_timeouts 1.0" in metrics


class _Captured(asyncio.Transport):
    """Collects what aiohttp's websocket writer writes (the library's own frame encoding)."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()

    def write(self, data: Any) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


@settings(max_examples=200, deadline=None)
@given(text=st.text() | st.sampled_from(["x" * 125, "x" * 126, "é" * 63, "x" * 65535, "x" * 65536]))
async def test_prebuilt_broadcast_frame_is_what_aiohttp_would_write(text: str) -> None:
    """The fan-out's one frame per broadcast (realtime.transport.text_frame) is byte for byte the
    frame aiohttp's writer builds for send_str, at every length class of the header."""
    from aiohttp._websocket.writer import WebSocketWriter
    from aiohttp.base_protocol import BaseProtocol

    from realtime.transport import text_frame

    transport = _Captured()
    writer = WebSocketWriter(BaseProtocol(asyncio.get_running_loop()), transport)
    await writer.send_frame(text.encode(), WSMsgType.TEXT)
    assert text_frame(text) == bytes(transport.written)


def _split_frames(data: bytes) -> list[str]:
    """The texts of consecutive unmasked websocket text frames (what a server writes)."""
    texts = []
    while data:
        assert data[0] == 0x81  # FIN + text
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        texts.append(data[start : start + size].decode())
        data = data[start + size :]
    return texts


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


_any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None), max_size=20),  # lone surrogates included
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec=None), max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


def _as_read(value: Any) -> Any:
    """What a reader of doubles (JSON.parse, orjson) makes of a value the stdlib read: big integers as floats."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else float(value)
    if isinstance(value, list):
        return [_as_read(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_read(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(value=_any_json, namespace=st.sampled_from(["/", "/live"]), ack_id=st.none() | st.integers(0, 10**6))
def test_packet_json_reads_and_writes_what_the_stdlib_does(value: Any, namespace: str, ack_id: int | None) -> None:
    """realtime.sio.PacketJson against python-socketio's stock (stdlib) packets: what ours writes, the stock
    decoder reads back as the value; what the stock encoder writes, ours reads as a double-reading parser."""
    from socketio import packet

    from realtime.sio import LmsPacket

    data = ["event", value]
    if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**100 for v in _leaves(value)):
        return  # past the stdlib's (engineio.json) bound on integer digits: refused either way
    ours = LmsPacket(packet.ACK, data=data, namespace=namespace, id=ack_id).encode()
    assert packet.Packet(encoded_packet=ours).data == json.loads(json.dumps(data))
    stock = packet.Packet(packet.ACK, data=data, namespace=namespace, id=ack_id).encode()
    read = LmsPacket(encoded_packet=stock)
    assert (read.packet_type, read.namespace, read.id) == (packet.ACK, None if namespace == "/" else namespace, ack_id)
    assert read.data == _as_read(json.loads(json.dumps(data)))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["question_ended", "answer_result", "leaderboard", "é"]), _json_values),
        min_size=1,
        max_size=6,
    ),
    namespace=st.sampled_from(["/", "/live"]),
)
def test_outbox_frames_of_a_socket_are_the_generic_encoders_packets_in_order(
    events: list[tuple[str, Any]], namespace: str
) -> None:
    """A live step's frames for one socket, collected in an Outbox and written in one go, are the
    packets python-socketio's encoder would send for those emits, each in its own websocket frame, in order."""
    from socketio import packet

    from realtime.fanout import Frame, Outbox

    outbox = Outbox()
    for event, data in events:
        outbox.add("eio-sid", Frame.of(namespace, event, data))
        outbox.add("other", Frame.of(namespace, "x", 1))
    written = b"".join(f.frame for f in outbox.packets["eio-sid"])
    texts = _split_frames(written)
    assert len(texts) == len(events)
    for text, frame, (event, data) in zip(texts, outbox.packets["eio-sid"], events, strict=True):
        assert text == "4" + frame.encoded
        stock = packet.Packet(packet.EVENT, data=[event, data], namespace=namespace).encode()
        ours = packet.Packet(encoded_packet=frame.encoded)
        theirs = packet.Packet(encoded_packet=stock)
        assert (ours.packet_type, ours.namespace, ours.data) == (theirs.packet_type, theirs.namespace, theirs.data)
    assert len(outbox.packets["other"]) == len(events)
