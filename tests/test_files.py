"""Files: streaming uploads, sniffing, limits, ownership, downloads with ranges (local) and presigned URLs (S3)."""

from __future__ import annotations

import asyncio
import io
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from lms.app import create_app
from lms.config import Settings
from lms.db import Database
from lms.files.schemas import clean_filename, clean_folder
from lms.tables import uploaded_files
from tests import samples
from tests.builders import make_course, make_enrollment, make_lesson, signed_in
from tests.conftest import Servers, make_config
from tests.polling import eventually

UPLOAD = "/api/v1/files/upload"


def form(data: bytes, filename: str, **fields: str) -> aiohttp.FormData:
    body = aiohttp.FormData(quote_fields=False)  # names as browsers send them (raw UTF-8)
    for name, value in fields.items():
        body.add_field(name, value)
    # A stream, not bytes: aiohttp warns (an error here) about large bytes bodies.
    body.add_field("file", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
    return body


async def upload(client: Any, headers: dict[str, str], data: bytes, filename: str, **fields: str) -> Any:
    return await client.post(UPLOAD, data=form(data, filename, **fields), headers=headers)


async def stored_rows(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetch_val(select(func.count()).select_from(uploaded_files)))


def stored_objects(config: Settings) -> list[Path]:
    root = Path(config.storage.local_dir)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def small_config(servers: Servers, tmp_path: Path) -> Settings:
    return make_config(servers, uploads={"max_upload_mb": 1}, storage={"local_dir": str(tmp_path / "store")})


@pytest.fixture
async def small(aiohttp_client: Any, small_config: Settings) -> Any:
    return await aiohttp_client(create_app(small_config))


async def test_upload_answers_201_with_the_sniffed_type_and_lists_it(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    response = await upload(small, headers, samples.png(), "Photo of me.png", folder="course-1/images")
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["filename"] == "Photo of me.png" and body["content_type"] == "image/png"
    assert body["size"] == len(samples.png()) and body["folder"] == "course-1/images" and body["is_public"] is False
    assert set(body) >= {"id", "filename", "content_type", "size", "folder", "is_public", "created_at"}
    listed = await (await small.get("/api/v1/files/my-files?limit=1", headers=headers)).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"] and listed["limit"] == 1
    one = await small.get(f"/api/v1/files/{body['id']}", headers=headers)
    assert one.status == 200 and (await one.json())["checksum_sha256"]


@pytest.mark.parametrize(
    ("data", "filename", "found"),
    [
        (samples.windows_exe(), "cute-cat.png", "application/vnd.microsoft.portable-executable"),
        (samples.html(), "lecture-notes.pdf", "text/html"),
        (samples.plain_zip(), "essay.docx", "application/zip"),
    ],
)
async def test_content_that_is_not_what_its_name_says_is_415_and_nothing_is_kept(
    small: Any, small_config: Settings, db: Database, data: bytes, filename: str, found: str
) -> None:
    _, headers = await signed_in(small, db)
    response = await upload(small, headers, data, filename)
    assert response.status == 415
    problem = await response.json()
    assert problem["found"] == found and found in problem["detail"]
    assert response.content_type == "application/problem+json"
    assert await stored_rows(db) == 0 and stored_objects(small_config) == []


async def test_a_real_docx_passes_and_a_disallowed_extension_is_415(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    assert (await upload(small, headers, samples.docx(), "essay.docx")).status == 201
    refused = await upload(small, headers, samples.windows_exe(), "setup.exe")
    assert refused.status == 415 and "exe" not in (await refused.json())["allowed_extensions"]


async def test_not_multipart_is_415_and_no_token_is_401(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    assert (await small.post(UPLOAD, json={"file": "x"}, headers=headers)).status == 415
    assert (await small.post(UPLOAD, data=b"raw", headers={**headers, "Content-Type": "image/png"})).status == 415
    assert (await small.post(UPLOAD, data=form(samples.png(), "a.png"))).status == 401


async def test_oversize_upload_is_413_while_streaming_and_leaves_nothing(
    small: Any, small_config: Settings, db: Database
) -> None:
    _, headers = await signed_in(small, db)
    big = samples.mp4(3 * 1024 * 1024)

    async def chunked() -> Any:  # no Content-Length: the limit is found while reading
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(chunked(), {"Content-Type": "video/mp4"})
    part.set_content_disposition("form-data", name="file", filename="lecture.mp4")
    response = await small.post(UPLOAD, data=writer, headers=headers)
    assert response.status == 413
    assert (await response.json())["max_bytes"] == 1024 * 1024
    declared = await upload(small, headers, big, "lecture.mp4")  # a declared length over the limit
    assert declared.status == 413
    assert await stored_rows(db) == 0 and stored_objects(small_config) == []


@pytest.mark.parametrize(
    ("fields", "filename", "field"),
    [
        ({"folder": "../../etc"}, "a.png", "folder"),
        ({"folder": "/abs/path"}, "a.png", None),
        ({"folder": "a\x00b"}, "a.png", "folder"),
        ({"folder": "a\\b"}, "a.png", "folder"),
        ({"is_public": "maybe"}, "a.png", "is_public"),
        ({"colour": "blue"}, "a.png", "colour"),
    ],
)
async def test_bad_fields_and_names_are_422_and_nothing_is_kept(
    small: Any, small_config: Settings, db: Database, fields: dict[str, str], filename: str, field: str | None
) -> None:
    _, headers = await signed_in(small, db)
    response = await upload(small, headers, samples.png(), filename, **fields)
    if field is None:  # a leading slash is only stripped: the folder is a label, never a path on disk
        assert response.status == 201 and (await response.json())["folder"] == "abs/path"
        return
    assert response.status == 422, await response.text()
    assert field in [e["field"] for e in (await response.json())["errors"]]
    assert await stored_rows(db) == 0 and stored_objects(small_config) == []


@pytest.mark.parametrize("filename", ["evil\x00.png", "two\r\nlines.png", "zero\u200bwidth.png", "long" * 80 + ".png"])
async def test_control_characters_in_the_file_name_are_422(
    small: Any, small_config: Settings, db: Database, filename: str
) -> None:
    _, headers = await signed_in(small, db)
    boundary = "nul" + uuid.uuid4().hex
    body = multipart_body(boundary, samples.png(), filename)  # a client library would refuse to send this
    response = await small.post(
        UPLOAD, data=body, headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status in (400, 422), await response.text()
    assert await stored_rows(db) == 0 and stored_objects(small_config) == []


async def test_a_path_in_the_file_name_keeps_only_its_last_part(
    small: Any, small_config: Settings, db: Database
) -> None:
    _, headers = await signed_in(small, db)
    response = await upload(small, headers, samples.png(), "../../../../etc/passwd.png")
    body = await response.json()
    assert response.status == 201 and body["filename"] == "passwd.png"
    root = Path(small_config.storage.local_dir).resolve()
    assert all(p.resolve().is_relative_to(root) for p in stored_objects(small_config))
    windows = await upload(small, headers, samples.png(), "C:\\Users\\me\\photo.png")
    assert (await windows.json())["filename"] == "photo.png"


async def test_others_get_404_and_delete_removes_row_and_object(
    small: Any, small_config: Settings, db: Database
) -> None:
    _, owner = await signed_in(small, db)
    _, stranger = await signed_in(small, db)
    _, admin = await signed_in(small, db, role="admin")
    file_id = (await (await upload(small, owner, samples.pdf(), "notes.pdf")).json())["id"]
    for method in ("get", "delete"):
        assert (await small.request(method, f"/api/v1/files/{file_id}", headers=stranger)).status == 404
    assert (await small.get(f"/api/v1/files/{file_id}/download", headers=stranger)).status == 404
    assert (await small.get(f"/api/v1/files/{file_id}", headers=admin)).status == 200
    assert len(stored_objects(small_config)) == 1
    assert (await small.delete(f"/api/v1/files/{file_id}", headers=owner)).status == 204
    assert stored_objects(small_config) == [] and await stored_rows(db) == 0
    assert (await small.get(f"/api/v1/files/{file_id}", headers=owner)).status == 404
    assert (await small.get("/api/v1/files/not-a-uuid", headers=owner)).status == 404


async def test_local_download_has_disposition_etag_and_ranges(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    video = samples.mp4(200_000)
    file_id = (await (await upload(small, headers, video, 'Leçon 1 "intro".mp4')).json())["id"]
    url = f"/api/v1/files/{file_id}/download"
    whole = await small.get(url, headers=headers)
    assert whole.status == 200 and await whole.read() == video
    assert whole.headers["Content-Type"] == "video/mp4" and whole.headers["Accept-Ranges"] == "bytes"
    disposition = whole.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''Le%C3%A7on%201%20%22intro%22.mp4" in disposition
    assert '"intro"' not in disposition  # quotes in the name cannot break out of the header
    etag = whole.headers["ETag"]
    part = await small.get(url, headers={**headers, "Range": "bytes=1000-1999"})
    assert part.status == 206 and await part.read() == video[1000:2000]
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(video)}"
    tail = await small.get(url, headers={**headers, "Range": "bytes=-100"})
    assert tail.status == 206 and await tail.read() == video[-100:]
    assert (await small.get(url, headers={**headers, "If-None-Match": etag})).status == 304
    beyond = await small.get(url, headers={**headers, "Range": f"bytes={len(video) + 10}-"})
    assert beyond.status == 416


async def test_public_files_download_for_anyone_private_ones_for_nobody_else(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    public = (await (await upload(small, headers, samples.png(), "logo.png", is_public="true")).json())["id"]
    private = (await (await upload(small, headers, samples.png(), "me.png")).json())["id"]
    assert (await small.get(f"/api/v1/files/{public}/download")).status == 200
    assert (await small.get(f"/api/v1/files/{private}/download")).status == 404
    bad_token = {"Authorization": "Bearer nonsense"}
    assert (await small.get(f"/api/v1/files/{public}/download", headers=bad_token)).status == 401


async def test_a_lesson_file_downloads_for_whoever_sees_the_lesson_content(small: Any, db: Database) -> None:
    instructor, teacher = await signed_in(small, db, role="instructor")
    student, learner = await signed_in(small, db)
    _, outsider = await signed_in(small, db)
    other_instructor, other_teacher = await signed_in(small, db, role="instructor")
    course = await make_course(db, instructor, is_published=True)
    file_id = (await (await upload(small, teacher, samples.mp4(5000), "week1.mp4")).json())["id"]
    lesson_url = f"/api/v1/courses/{course['id']}/lessons"
    created = await small.post(
        lesson_url, json={"title": "Week 1", "content_type": "video", "file_id": file_id}, headers=teacher
    )
    assert created.status == 201 and (await created.json())["file_id"] == file_id
    download = f"/api/v1/files/{file_id}/download"
    assert (await small.get(download, headers=learner)).status == 404  # not enrolled yet
    await make_enrollment(db, student, course)
    assert (await small.get(download, headers=learner)).status == 200
    assert (await small.get(download, headers=outsider)).status == 404
    # The lesson hides the file id from those who may not see its content.
    locked = (await (await small.get(lesson_url, headers=outsider)).json())[0]
    assert locked["locked"] is True and locked["file_id"] is None
    # Someone else's private file cannot be attached to open it up.
    other_course = await make_course(db, other_instructor, is_published=True)
    stolen = await small.post(
        f"/api/v1/courses/{other_course['id']}/lessons",
        json={"title": "Mine now", "content_type": "video", "file_id": file_id, "is_free": True},
        headers=other_teacher,
    )
    assert stolen.status == 422
    # A free lesson opens its file to anyone; deleting a file in use is refused.
    await make_lesson(db, course, is_free=True, file_id=uuid.UUID(file_id))
    assert (await small.get(download)).status == 200
    refused = await small.delete(f"/api/v1/files/{file_id}", headers=teacher)
    assert refused.status == 409 and len((await refused.json())["lesson_ids"]) == 2


async def test_any_instance_serves_any_file(aiohttp_client: Any, small_config: Settings, db: Database) -> None:
    first = await aiohttp_client(create_app(small_config))
    second = await aiohttp_client(create_app(small_config))
    _, headers = await signed_in(first, db)
    file_id = (await (await upload(first, headers, samples.pdf(), "a.pdf")).json())["id"]
    response = await second.get(f"/api/v1/files/{file_id}/download", headers=headers)
    assert response.status == 200 and await response.read() == samples.pdf()


async def test_concurrent_uploads_each_get_their_own_object(small: Any, small_config: Settings, db: Database) -> None:
    _, headers = await signed_in(small, db)
    answers = await asyncio.gather(*(upload(small, headers, samples.pdf(i), f"n{i}.pdf") for i in range(8)))
    assert [a.status for a in answers] == [201] * 8
    assert len(stored_objects(small_config)) == 8 and await stored_rows(db) == 8


# --- raw sockets: a body split at awkward places, and one that stops half-way ---


async def raw_request(port: int, head: bytes, pieces: list[bytes], *, close_early: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)
    if close_early:
        writer.close()
        return b""
    answer = await asyncio.wait_for(reader.read(65536), timeout=20)
    writer.close()
    return answer


def multipart_body(boundary: str, data: bytes, filename: str) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="folder"\r\n\r\nraw\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )


async def test_a_body_split_into_tiny_writes_over_a_raw_socket_is_stored_whole(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    boundary = "xYz" + uuid.uuid4().hex
    body = multipart_body(boundary, samples.pdf(5000), "split.pdf")
    head = (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\n{'Authorization: ' + headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # Chunk boundaries fall inside the multipart boundary and the part headers.
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    chunked = [f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
    answer = await raw_request(small.port, head, chunked)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    listed = await (await small.get("/api/v1/files/my-files", headers=headers)).json()
    assert listed["items"][0]["size"] == len(samples.pdf(5000)) and listed["items"][0]["folder"] == "raw"


async def test_a_client_that_goes_away_mid_upload_leaves_nothing(
    small: Any, small_config: Settings, db: Database
) -> None:
    _, headers = await signed_in(small, db)
    boundary = "b" + uuid.uuid4().hex
    body = multipart_body(boundary, samples.mp4(600_000), "half.mp4")
    head = (
        f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    await raw_request(small.port, head, [body[: len(body) // 2]], close_early=True)
    # The server notices the closed connection; then the partial write is gone.
    async def cleaned_up() -> bool:
        return not any(p.name.endswith(".part") for p in stored_objects(small_config)) and await settled(small)

    await eventually(cleaned_up, timeout=20, what="the partial upload removed")
    assert stored_objects(small_config) == [] and await stored_rows(db) == 0


async def settled(client: Any) -> bool:
    """The server still answers (the aborted upload did not wedge it)."""
    return (await client.get("/api/v1/health")).status == 200


async def test_a_malformed_multipart_body_is_400(small: Any, db: Database) -> None:
    _, headers = await signed_in(small, db)
    response = await small.post(
        UPLOAD, data=b"not multipart at all", headers={**headers, "Content-Type": "multipart/form-data"}
    )
    assert response.status == 400
    nofile = await small.post(UPLOAD, data={"folder": "x"}, headers=headers)
    assert nofile.status in (415, 422)


# --- S3 (moto's server) ---


@pytest.fixture
async def s3_client(aiohttp_client: Any, servers: Servers, s3_storage_settings: dict[str, Any]) -> Any:
    config = make_config(servers, storage=s3_storage_settings, uploads={"max_upload_mb": 20})
    return await aiohttp_client(create_app(config))


async def test_s3_download_is_a_302_to_a_presigned_url_that_expires(s3_client: Any, db: Database) -> None:
    _, headers = await signed_in(s3_client, db)
    video = samples.mp4(12 * 1024 * 1024)  # more than one part: a multipart upload
    created = await upload(s3_client, headers, video, "big lecture.mp4")
    assert created.status == 201, await created.text()
    file_id = (await created.json())["id"]
    response = await s3_client.get(f"/api/v1/files/{file_id}/download", headers=headers, allow_redirects=False)
    assert response.status == 302
    location = response.headers["Location"]
    assert "X-Amz-Expires=900" in location and "X-Amz-Signature=" in location
    assert "response-content-disposition=attachment" in location
    async with aiohttp.ClientSession() as session, session.get(location) as fetched:
        assert fetched.status == 200 and await fetched.read() == video
    assert (await s3_client.delete(f"/api/v1/files/{file_id}", headers=headers)).status == 204
    async with aiohttp.ClientSession() as session, session.get(location) as gone:
        assert gone.status in (403, 404)  # S3 answers 403 (no listing right), moto too


async def test_s3_refusals_leave_no_object(s3_client: Any, db: Database) -> None:
    from lms.storage import STORAGE

    _, headers = await signed_in(s3_client, db)
    assert (await upload(s3_client, headers, samples.windows_exe(), "x.png")).status == 415
    assert (await upload(s3_client, headers, samples.mp4(21 * 1024 * 1024), "x.mp4")).status == 413
    storage: Any = s3_client.app[STORAGE]
    listed = await storage.client.list_objects_v2(Bucket=storage.bucket)
    uploads = await storage.client.list_multipart_uploads(Bucket=storage.bucket)
    assert listed.get("KeyCount", 0) == 0 and not uploads.get("Uploads")
    assert await stored_rows(db) == 0


# --- the validators, over arbitrary text ---


@pytest.mark.no_services
@given(st.text(max_size=300))
def test_folder_names_never_climb_or_carry_control_characters(text: str) -> None:
    try:
        folder = clean_folder(text)
    except ValueError:
        return
    assert ".." not in folder.split("/") and not folder.startswith("/") and "\x00" not in folder
    assert all(c.isprintable() for c in folder) and len(folder) <= 100


@pytest.mark.no_services
@given(st.text(max_size=400))
def test_file_names_are_one_printable_component(text: str) -> None:
    try:
        name = clean_filename(text)
    except ValueError:
        return
    assert "/" not in name and "\\" not in name and name not in (".", "..") and 0 < len(name) <= 255
    # Any letter, mark, number, symbol, punctuation or space (NBSP included); no control,
    # format, unassigned or line-breaking character.
    assert all(unicodedata.category(c)[0] in "LMNPSZ" and unicodedata.category(c) not in ("Zl", "Zp") for c in name)


@pytest.mark.no_services
def test_file_names_keep_wide_spaces_and_refuse_line_separators() -> None:
    screenshot = "Screenshot 2026-12-02 at 10.00\u202fPM.png"
    assert clean_filename(f"C:\\Users\\me\\{screenshot}") == screenshot
    assert clean_filename("0\xa00.txt") == "0\xa00.txt"
    for name in ("a\u2028b.txt", "a\u2029b.txt", "a\u202eb.txt", "a\rb.txt"):
        with pytest.raises(ValueError, match="control or invisible"):
            clean_filename(name)
