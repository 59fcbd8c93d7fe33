"""Answering a download from storage: one helper for files and certificates."""

from __future__ import annotations

from aiohttp import web

from lms.storage import ObjectMissing, Storage, content_disposition


async def serve_object(
    request: web.Request, storage: Storage, key: str, *, filename: str, content_type: str, inline: bool = False
) -> web.StreamResponse:
    """Local files go out with ``sendfile``, ``ETag``, conditional requests and ``Range``
    (aiohttp's FileResponse); other backends are streamed chunk by chunk."""
    headers = {"Content-Disposition": content_disposition(filename, inline=inline), "Cache-Control": "private"}
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise ObjectMissing(key)
        response = web.FileResponse(path, headers=headers)
        response.content_type = content_type
        return response
    chunks = storage.read(key)
    first = await anext(chunks, b"")  # a missing object fails here, before any header is sent
    stream = web.StreamResponse(headers=headers)
    stream.content_type = content_type
    await stream.prepare(request)
    await stream.write(first)
    async for chunk in chunks:
        await stream.write(chunk)
    await stream.write_eof()
    return stream
