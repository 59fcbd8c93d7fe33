"""Where uploaded files and certificate PDFs live: one small interface, two backends.

``storage.provider`` picks the backend: ``local`` (a folder, ``storage.local_dir``)
or ``s3`` (aiobotocore, any S3-compatible endpoint). Writes take an async
iterable of chunks and never hold a whole object in memory; a write that
fails or is abandoned half-way (the source raised) leaves nothing behind::

    stored = await storage.save("files/3f2a….pdf", chunks, content_type="application/pdf")
    async for chunk in storage.read(stored.key): ...
    await storage.delete(stored.key)

Keys are made by our code (``files/<uuid>.<ext>``, ``certificates/<uuid>.pdf``),
never from a client's file name; both backends still refuse a key that could
climb out of their root.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from aiohttp import web

from lms.config import StorageSettings

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class StorageError(Exception):
    """The backend failed (unreachable, refused); the caller answers 503."""


class ObjectMissing(StorageError):
    """No object under this key."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class Storage(Protocol):
    provider: str

    async def save(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str) -> StoredObject:
        """Write the chunks under ``key``; on any error nothing is left and the error propagates."""

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; :class:`ObjectMissing` if there is none."""

    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is not an error."""

    def local_path(self, key: str) -> Path | None:
        """The file on disk (local backend) so that it can be served with ranges; else None."""

    async def download_url(self, key: str, *, filename: str, content_type: str, expires_seconds: int) -> str | None:
        """A presigned URL a client fetches directly (S3); None when the server streams the object itself."""

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    if len(key) > 900 or not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a storage key: {key!r}")
    return key


def content_disposition(filename: str, *, inline: bool = False) -> str:
    """RFC 6266: an ASCII fallback name and the UTF-8 name, nothing a header could be split with."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename) or "file"
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def open_storage(settings: StorageSettings) -> Storage:
    """The configured backend, ready to use (the S3 client is opened here)."""
    if settings.provider == "s3":
        from lms.storage.s3 import S3Storage

        s3 = await S3Storage.open(settings)
        await s3.ensure_bucket()
        return s3
    from lms.storage.local import LocalStorage

    return LocalStorage(Path(settings.local_dir))


STORAGE = web.AppKey("storage", Storage)  # type: ignore[type-abstract]
