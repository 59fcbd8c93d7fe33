"""Files in a folder. Several instances share it when it is on a shared volume."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from lms.storage import ObjectMissing, StoredObject, check_key

# Disk writes happen in a thread (the event loop never blocks on a disk);
# gathering chunks to this size first keeps the thread hand-offs few.
WRITE_BUFFER = 1024 * 1024
READ_CHUNK = 256 * 1024


class LocalStorage:
    provider = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    async def save(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str) -> StoredObject:
        path = self._path(key)
        # Written beside the target and renamed at the end: a reader never
        # sees half a file, and an abandoned write leaves only the temporary.
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        handle = await asyncio.to_thread(partial.open, "wb")
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()

        def flush(data: bytes) -> None:  # in a thread: hashing and writing a megabyte
            digest.update(data)
            handle.write(data)

        try:
            async for chunk in chunks:
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= WRITE_BUFFER:
                    await asyncio.to_thread(flush, bytes(buffer))
                    buffer.clear()
            if buffer:
                await asyncio.to_thread(flush, bytes(buffer))
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, partial, path)
        except BaseException:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as err:
            raise ObjectMissing(key) from err
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def download_url(self, key: str, *, filename: str, content_type: str, expires_seconds: int) -> str | None:
        return None

    async def close(self) -> None:
        return None
