"""The storage interface on both backends: a temporary folder and moto's S3 server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lms.config import StorageSettings
from lms.storage import ObjectMissing, Storage, check_key, open_storage
from lms.storage.s3 import PART_SIZE

pytestmark = pytest.mark.no_services


@pytest.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        settings = StorageSettings(local_dir=str(tmp_path / "store"))
    else:
        settings = StorageSettings(**request.getfixturevalue("s3_storage_settings"))
    backend = await open_storage(settings)
    yield backend
    await backend.close()


async def chunks_of(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class SourceFailed(Exception):
    pass


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunks_of(data):
        yield chunk
    raise SourceFailed


async def leftovers(storage: Storage, tmp_path: Path) -> list[Any]:
    if storage.provider == "local":
        return [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    client: Any = storage.client  # type: ignore[attr-defined]
    bucket: str = storage.bucket  # type: ignore[attr-defined]
    objects = (await client.list_objects_v2(Bucket=bucket)).get("Contents", [])
    uploads = (await client.list_multipart_uploads(Bucket=bucket)).get("Uploads", [])
    return [*objects, *uploads]


@pytest.mark.parametrize("size", [0, 1000, PART_SIZE + 123_457])  # empty, one part, multipart
async def test_what_is_saved_reads_back_whole_and_delete_removes_it(
    storage: Storage, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    stored = await storage.save("files/abc.bin", chunks_of(data), content_type="application/octet-stream")
    assert stored.size == size and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join([c async for c in storage.read("files/abc.bin")]) == data
    await storage.delete("files/abc.bin")
    await storage.delete("files/abc.bin")  # twice is fine
    with pytest.raises(ObjectMissing):
        [c async for c in storage.read("files/abc.bin")]
    assert await leftovers(storage, tmp_path) == []


async def test_a_write_whose_source_fails_leaves_nothing(storage: Storage, tmp_path: Path) -> None:
    for size in (1000, PART_SIZE * 2 + 5):  # one PUT never sent; a multipart upload aborted
        with pytest.raises(SourceFailed):
            await storage.save("files/broken.bin", failing_after(os.urandom(size)), content_type="video/mp4")
    assert await leftovers(storage, tmp_path) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "files/../../x", "files//x", "", "a\x00b", "files/.."])
async def test_keys_that_could_climb_out_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        check_key(key)
    with pytest.raises(ValueError, match="key"):
        await storage.save(key, chunks_of(b"x"), content_type="text/plain")


async def test_only_s3_hands_out_urls(storage: Storage) -> None:
    url = await storage.download_url("files/a.pdf", filename="a.pdf", content_type="application/pdf",
                                     expires_seconds=60)  # fmt: skip
    assert (url is None) == (storage.provider == "local")
    assert (storage.local_path("files/a.pdf") is None) == (storage.provider == "s3")
