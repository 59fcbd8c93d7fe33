"""File routes (``/api/v1/files/...``).

Each route's contract is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page
from lms.api.problems import Conflict, NotFound, ServiceUnavailable
from lms.appkeys import CONFIG, DB
from lms.auth.guards import authenticated, current_user, optional_user
from lms.db import Row
from lms.files import queries
from lms.files.access import load_downloadable, load_own_file
from lms.files.schemas import FileOut, MyFilesQuery, UploadForm
from lms.files.upload import receive_upload
from lms.storage import STORAGE, ObjectMissing, StorageError
from lms.storage.http import serve_object

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
TAGS = ["files"]
MB = 1024 * 1024


def present(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "filename": row["original_filename"],
        "content_type": row["mime_type"],
        "size": row["file_size"],
        "folder": row["folder"],
        "is_public": row["is_public"],
        "checksum_sha256": row["checksum_sha256"],
        "created_at": row["created_at"],
        "download_url": f"/api/v1/files/{row['id']}/download",
    }


@routes.post("/api/v1/files/upload")
@endpoint(
    summary="Upload a file",
    description=(
        "multipart/form-data with a `file` part (and optionally `folder`, `is_public`). The body is streamed to "
        "storage: past `uploads.max_upload_mb` the upload stops with 413 and nothing is kept. The extension must be "
        "in `uploads.allowed_extensions` and the content must be what it says (sniffed, never taken from the "
        "client): otherwise 415 with `found`. Not multipart: 415."
    ),
    body=UploadForm,
    body_format="multipart",
    response=FileOut,
    status=201,
    errors=[400, 413, 415],
    guards=[authenticated],
    tags=TAGS,
)
async def upload(request: web.Request) -> dict[str, Any]:
    config = request.app[CONFIG]
    storage = request.app[STORAGE]
    file_id = uuid.uuid4()
    try:
        received = await receive_upload(
            request,
            storage,
            key_for=lambda ext: f"files/{file_id}.{ext}",
            max_bytes=config.uploads.max_upload_mb * MB,
            allowed_extensions=config.uploads.allowed_extensions,
        )
    except StorageError as err:
        log.warning("upload failed in storage: %s", err)
        raise ServiceUnavailable("The file store is unavailable; try again shortly.") from err
    stored = received.stored
    try:
        async with request.app[DB].transaction() as conn:
            row = await queries.create_file(
                conn, id=file_id, uploader_id=current_user(request).id, filename=stored.key.rsplit("/", 1)[-1],
                original_filename=received.filename, storage_provider=storage.provider, storage_path=stored.key,
                folder=received.fields.folder, file_type=received.extension, mime_type=received.content_type,
                file_size=stored.size, checksum_sha256=stored.sha256, is_public=received.fields.is_public,
            )  # fmt: skip
    except BaseException:
        await storage.delete(stored.key)  # no row, no object
        raise
    return present(row)


@routes.get("/api/v1/files/my-files")
@endpoint(summary="My uploads", query=MyFilesQuery, response=Page[FileOut], guards=[authenticated], tags=TAGS)
async def my_files(request: web.Request, query: MyFilesQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_files(
            conn, current_user(request).id, folder=query.folder, limit=query.limit, offset=query.offset
        )
    return page([present(r) for r in rows], total, query)


@routes.get("/api/v1/files/{id}")
@endpoint(summary="A file's metadata", description="Its uploader or an admin.", response=FileOut, errors=[404],
          guards=[authenticated], tags=TAGS)  # fmt: skip
async def get_file(request: web.Request) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        return present(await load_own_file(conn, current_user(request), path_uuid(request)))


@routes.delete("/api/v1/files/{id}")
@endpoint(
    summary="Delete a file",
    description="Its uploader or an admin: the record and the stored object. 409 while lessons use it.",
    status=204,
    errors=[404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def delete_file(request: web.Request) -> None:
    async with request.app[DB].transaction() as conn:
        row = await load_own_file(conn, current_user(request), path_uuid(request))
        used_by = await queries.lessons_using(conn, row["id"])
        if used_by:
            raise Conflict("Lessons use this file; change them first.", lesson_ids=[str(i) for i in used_by])
        await queries.delete_file(conn, row["id"])
    try:
        await request.app[STORAGE].delete(row["storage_path"])
    except StorageError as err:  # the record is gone; an orphaned object is only space
        log.warning("file %s deleted but its object %s was not: %s", row["id"], row["storage_path"], err)


@routes.get("/api/v1/files/{id}/download")
@endpoint(
    summary="Download a file",
    description=(
        "The uploader, an admin, anyone for a public file, and whoever may see the content of a lesson that uses "
        "it. Local storage: the bytes, with `Content-Disposition`, `ETag` and `Range` requests (206). S3: 302 to "
        "a presigned URL valid for `storage.download_url_expire_seconds`."
    ),
    response=bytes,
    response_content_type="application/octet-stream",
    errors=[404],
    tags=TAGS,
)
async def download(request: web.Request) -> web.StreamResponse:
    principal = await optional_user(request)
    async with request.app[DB].connection() as conn:
        row = await load_downloadable(conn, principal, path_uuid(request))
    storage = request.app[STORAGE]
    try:
        url = await storage.download_url(
            row["storage_path"], filename=row["original_filename"], content_type=row["mime_type"],
            expires_seconds=request.app[CONFIG].storage.download_url_expire_seconds,
        )  # fmt: skip
        if url is not None:
            raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})
        return await serve_object(
            request, storage, row["storage_path"], filename=row["original_filename"], content_type=row["mime_type"]
        )
    except ObjectMissing:
        log.error("file %s: object %s is missing from storage", row["id"], row["storage_path"])
        raise NotFound("The file's content is missing from storage.") from None
    except StorageError as err:
        raise ServiceUnavailable("The file store is unavailable; try again shortly.") from err
