"""Bodies as awkward clients send them: in pieces, chunked, huge (issue 10, items 1 and 3).

These speak HTTP over a raw socket so that the pieces, pauses and chunk
boundaries are exactly the ones written here.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from dataclasses import dataclass
from typing import Any

from lms.app import create_app
from lms.db import Database
from tests.builders import PASSWORD, make_course, make_user, signed_in
from tests.conftest import Servers, make_config


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawResponse(int(status_line.split()[1]), headers, body)


def request_head(method: str, path: str, content_type: str, *, length: int | None, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}", "Connection: close"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def send_in_pieces(
    client: Any, head: bytes, pieces: list[bytes], *, pause: float, chunked: bool = False
) -> RawResponse:
    """Write the head, then each piece after a pause (each a chunk when ``chunked``); read the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        await writer.drain()
        for piece in pieces:
            await asyncio.sleep(pause)
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return await asyncio.wait_for(read_response(reader), 30)
    finally:
        writer.close()


def split(data: bytes, count: int) -> list[bytes]:
    size = -(-len(data) // count)
    return [data[i : i + size] for i in range(0, len(data), size)]


async def test_login_body_sent_in_two_writes_50_ms_apart_is_read_whole(client: Any, db: Database) -> None:
    user = await make_user(db)
    body = json.dumps({"email": user["email"], "password": PASSWORD}).encode()
    head = request_head("POST", "/api/v1/auth/login", "application/json", length=len(body))
    response = await send_in_pieces(client, head, [body[:20], body[20:]], pause=0.05)
    assert response.status == 200, response.body
    assert response.json()["user"]["id"] == str(user["id"])


async def test_150k_character_lesson_in_pieces_with_pauses_is_read_whole(
    aiohttp_client: Any, servers: Servers, db: Database
) -> None:
    client = await aiohttp_client(create_app(make_config(servers, http={"max_body_bytes": 1_048_576})))
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner)
    content = ("Lorem ipsum dolor sit amet. " * 5358)[:150_000]
    assert len(content) == 150_000
    path = f"/api/v1/courses/{course['id']}/lessons"
    body = json.dumps({"title": "Long read", "content_type": "text", "content": content}).encode()
    for chunked in (False, True):
        head = request_head(
            "POST",
            path,
            "application/json",
            length=None if chunked else len(body),
            Authorization=headers["Authorization"],
        )
        response = await send_in_pieces(client, head, split(body, 12), pause=0.02, chunked=chunked)
        assert response.status == 201, response.body
        lesson = await (await client.get(f"/api/v1/lessons/{response.json()['id']}", headers=headers)).json()
        assert lesson["content"] == content


async def test_a_huge_chunked_form_to_the_token_endpoint_is_refused_while_read(client: Any, config: Any) -> None:
    """413 as soon as the body passes http.max_body_bytes: neither read to its end nor held in memory."""
    limit = config.http.max_body_bytes
    total = 48 * 1024 * 1024
    chunk = b"x" * 65_536
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    answer = asyncio.ensure_future(read_response(reader))
    sent = 0
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        writer.write(request_head("POST", "/api/v1/auth/token", "application/x-www-form-urlencoded", length=None))
        writer.write(b"%x\r\nusername=a%%40b.example&password=\r\n" % len(b"username=a%40b.example&password="))
        try:
            while sent < total and not answer.done():
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0)
        except ConnectionError:
            pass  # the server closed the connection after answering
        response = await asyncio.wait_for(answer, 30)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
        writer.close()
    assert response.status == 413, response.body
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["max_bytes"] == limit
    # Answered long before the client was done (kernel socket buffers hold a few MB).
    assert sent < total / 4, f"the server answered only after {sent} bytes"
    assert peak < 8 * 1024 * 1024, f"the server held {peak} bytes while reading"
