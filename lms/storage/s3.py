"""Objects in an S3 bucket through aiobotocore (AWS, MinIO, Ceph: any S3-compatible endpoint).

Writes buffer at most one part: an object that fits in one part is one
PUT; a larger one is a multipart upload, aborted if the source fails so
that nothing is left (the bucket's lifecycle rule for incomplete uploads is
the safety net for a process killed mid-upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from lms.config import StorageSettings
from lms.storage import ObjectMissing, StorageError, StoredObject, check_key, content_disposition

log = logging.getLogger(__name__)

# S3 parts are at least 5 MiB (but the last); one part is what a write holds in memory.
PART_SIZE = 8 * 1024 * 1024
READ_CHUNK = 256 * 1024


class S3Storage:
    provider = "s3"

    def __init__(self, client: Any, bucket: str, stack: contextlib.AsyncExitStack) -> None:
        self.client = client
        self.bucket = bucket
        self._stack = stack

    @classmethod
    async def open(cls, settings: StorageSettings) -> S3Storage:
        session = get_session()
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
                aws_secret_access_key=(
                    settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
                ),
                # Path-style works with every S3-compatible store (MinIO, moto).
                config=AioConfig(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        )
        return cls(client, settings.s3_bucket, stack)

    async def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (development stores start empty).

        Never fatal: a store that is down at start-up fails the requests that
        need it (503), not the whole server.
        """
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                await self.client.create_bucket(Bucket=self.bucket)
            except (BotoCoreError, ClientError) as err:
                log.warning("bucket %s does not exist and could not be created: %s", self.bucket, err)
        except BotoCoreError as err:
            log.warning("S3 endpoint unreachable at start-up (%s); uploads fail until it is back", err)

    async def save(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str) -> StoredObject:
        check_key(key)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    await asyncio.to_thread(digest.update, buffer)  # megabytes: off the event loop
                    if upload_id is None:
                        created = await self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type
                        )
                        upload_id = created["UploadId"]
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            await asyncio.to_thread(digest.update, buffer)
            if upload_id is None:
                await self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
            else:
                if buffer:
                    parts.append(await self._upload_part(key, upload_id, len(parts) + 1, buffer))
                await self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except BaseException as err:
            if upload_id is not None:
                with contextlib.suppress(BotoCoreError, ClientError, OSError):
                    await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            if isinstance(err, (BotoCoreError, ClientError)):
                raise StorageError(f"S3 write of {key} failed: {err}") from err
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def _upload_part(self, key: str, upload_id: str, number: int, data: bytearray) -> dict[str, Any]:
        answer = await self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(data)
        )
        return {"ETag": answer["ETag"], "PartNumber": number}

    async def read(self, key: str) -> AsyncIterator[bytes]:
        check_key(key)
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(key) from err
            raise StorageError(f"S3 read of {key} failed: {err}") from err
        except BotoCoreError as err:
            raise StorageError(f"S3 read of {key} failed: {err}") from err
        async with answer["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as err:
            raise StorageError(f"S3 delete of {key} failed: {err}") from err

    def local_path(self, key: str) -> Path | None:
        return None

    async def download_url(self, key: str, *, filename: str, content_type: str, expires_seconds: int) -> str | None:
        check_key(key)
        url: str = await self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                # The store answers with the name and type we checked, not whatever it guesses.
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_seconds,
        )
        return url

    async def close(self) -> None:
        await self._stack.aclose()
