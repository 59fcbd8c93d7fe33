"""Receiving a multipart upload as a stream: limits checked while it arrives, nothing stored on refusal.

The body is read part by part with aiohttp's streaming ``MultipartReader``
(never ``request.post()``, which would hold the file in memory). The file
part's first bytes are held until its content is sniffed; then the part
flows to storage chunk by chunk. Passing the size limit stops the upload
with 413 at that chunk, and the storage backend removes what it wrote.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from lms.api.endpoint import validation_errors
from lms.api.problems import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from lms.files.schemas import UploadFields, clean_filename
from lms.files.sniff import SNIFF_BYTES, Rejected, check_content, extension_of
from lms.storage import Storage, StoredObject

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
FIELD_MAX_BYTES = 1024
MAX_PARTS = 8
# Room for the part headers, boundaries and text fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReceivedUpload:
    filename: str
    extension: str
    content_type: str
    stored: StoredObject
    fields: UploadFields


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB.", max_bytes=limit)


async def receive_upload(
    request: web.Request,
    storage: Storage,
    *,
    key_for: Callable[[str], str],
    max_bytes: int,
    allowed_extensions: Collection[str],
) -> ReceivedUpload:
    reader = _multipart_reader(request, max_bytes)
    fields: dict[str, str] = {}
    stored: ReceivedUpload | None = None
    try:
        for _ in range(MAX_PARTS + 1):
            part = await _next_part(reader)
            if part is None:
                break
            if part.name == "file":
                if stored is not None:
                    raise ValidationFailed("Send one file per upload.", errors=[{"field": "file", "message": "twice"}])
                stored = await _store_file(part, storage, key_for, max_bytes, allowed_extensions)
            elif part.name in UploadFields.model_fields:
                fields[part.name] = await _read_field(part)
            else:
                raise ValidationFailed(
                    f"Unknown form field {part.name!r}.", errors=[{"field": str(part.name), "message": "unknown"}]
                )
        else:
            raise ValidationFailed(f"At most {MAX_PARTS} form parts.", errors=[{"field": "body", "message": "parts"}])
        if stored is None:
            raise ValidationFailed(
                "The form has no file.", errors=[{"field": "file", "message": "a file part is required"}]
            )
        try:
            parsed = UploadFields.model_validate(fields)
        except ValidationError as err:
            raise ValidationFailed(errors=validation_errors(err)) from err
        return ReceivedUpload(stored.filename, stored.extension, stored.content_type, stored.stored, parsed)
    except BaseException:
        if stored is not None:
            await storage.delete(stored.stored.key)
        raise


async def _next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as err:
        raise BadRequest(f"The multipart body is malformed ({err}).") from err
    if part is None:
        return None
    if not isinstance(part, BodyPartReader):
        raise BadRequest("Nested multipart bodies are not accepted.")
    return part


async def _read_chunk(part: BodyPartReader, size: int) -> bytes:
    try:
        chunk: bytes = await part.read_chunk(size)
    except (ValueError, AssertionError, HttpProcessingError) as err:
        raise BadRequest(f"The multipart body is malformed ({err}).") from err
    return chunk


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await _read_chunk(part, FIELD_MAX_BYTES):
        data += chunk
        if len(data) > FIELD_MAX_BYTES:
            raise ValidationFailed(
                f"The field {part.name!r} is too long.", errors=[{"field": str(part.name), "message": "too long"}]
            )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValidationFailed(errors=[{"field": str(part.name), "message": "not UTF-8 text"}]) from err


def _accepted_name(given: str, allowed_extensions: Collection[str]) -> tuple[str, str]:
    """The file name to keep and its extension; 422 for a name that cannot be kept, 415 for another extension."""
    try:
        filename = clean_filename(given)
    except ValueError as err:
        raise ValidationFailed(str(err), errors=[{"field": "file", "message": str(err)}]) from err
    extension = extension_of(filename)
    allowed = {e.lower().lstrip(".") for e in allowed_extensions}
    if extension not in allowed:
        raise UnsupportedMediaType(
            f"Files ending in {'.' + extension if extension else 'no extension'} are not accepted.",
            allowed_extensions=sorted(allowed),
        )
    return filename, extension


async def _store_file(
    part: BodyPartReader,
    storage: Storage,
    key_for: Callable[[str], str],
    max_bytes: int,
    allowed_extensions: Collection[str],
) -> ReceivedUpload:
    if not part.filename:
        raise ValidationFailed(errors=[{"field": "file", "message": "the file part needs a filename"}])
    filename, extension = _accepted_name(part.filename, allowed_extensions)
    size = 0

    async def read() -> bytes:
        nonlocal size
        chunk = await _read_chunk(part, CHUNK)
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        return chunk

    head = bytearray()
    while len(head) < SNIFF_BYTES and (chunk := await read()):
        head += chunk
    if not head:
        raise ValidationFailed("The file is empty.", errors=[{"field": "file", "message": "empty"}])
    try:
        content_type = check_content(extension, bytes(head))
    except Rejected as err:
        raise UnsupportedMediaType(str(err), found=err.found, extension=extension) from err

    async def chunks() -> AsyncIterator[bytes]:
        yield bytes(head)
        while chunk := await read():
            yield chunk

    stored = await storage.save(key_for(extension), chunks(), content_type=content_type)
    log.info("stored %s (%d bytes, %s)", stored.key, stored.size, content_type)
    return ReceivedUpload(filename, extension, content_type, stored, UploadFields())


@dataclass(frozen=True)
class SmallFile:
    filename: str
    extension: str
    data: bytes


def _multipart_reader(request: web.Request, max_bytes: int) -> MultipartReader:
    """The body's multipart reader: 415 unless multipart, 413 when its declared length is already too much."""
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Send the file as multipart/form-data (got {request.content_type or 'nothing'}).",
            supported=["multipart/form-data"],
        )
    if request.content_length is not None and request.content_length > max_bytes + FORM_OVERHEAD_BYTES:
        raise too_large(max_bytes)
    try:
        reader = MultipartReader(request.headers, request.content)
    except (ValueError, AssertionError, KeyError) as err:
        raise BadRequest(f"The multipart body cannot be read ({err}).") from err
    return reader


async def receive_small_file(request: web.Request, *, max_bytes: int, allowed_extensions: Collection[str]) -> SmallFile:
    """The one ``file`` part of a multipart body, held in memory (for files read, not stored: imports).

    The same refusals as :func:`receive_upload`: 415 for a body that is not
    multipart or a file of another extension, 413 past ``max_bytes`` (at
    the chunk that passes it), 422 for other parts or no file. The content
    is not sniffed: the caller parses it and refuses what does not parse.
    """
    reader = _multipart_reader(request, max_bytes)
    part = await _next_part(reader)
    if part is None or part.name != "file" or not part.filename:
        raise ValidationFailed(
            "Send one `file` part with a file name.", errors=[{"field": "file", "message": "a file part is required"}]
        )
    filename, extension = _accepted_name(part.filename, allowed_extensions)
    data = bytearray()
    while chunk := await _read_chunk(part, CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise too_large(max_bytes)
    if not data:
        raise ValidationFailed("The file is empty.", errors=[{"field": "file", "message": "empty"}])
    if await _next_part(reader) is not None:
        raise ValidationFailed("Send only the file.", errors=[{"field": "body", "message": "one part only"}])
    return SmallFile(filename, extension, bytes(data))
