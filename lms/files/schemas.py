"""File bodies and responses. The upload's text fields are validated by :class:`UploadFields`."""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from lms.api.pagination import PageQuery

_FOLDER_SEGMENT = re.compile(r"[\w][\w .-]{0,63}")


# Controls, invisible formatting, unassigned, and the line/paragraph separators
# (U+2028/9) that some readers break a header on. Spaces of any width stay: macOS
# names its screenshots with a narrow no-break space before "PM".
_REFUSED_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _no_controls(value: str, what: str) -> str:
    if any(unicodedata.category(c) in _REFUSED_IN_NAMES for c in value):
        raise ValueError(f"{what} must not contain control or invisible characters (NUL included)")
    return value


def clean_folder(value: str) -> str:
    """``course-1/videos``: relative, segments of letters, digits, ``_ - .`` and spaces; no ``..``."""
    _no_controls(value, "folder")
    text = value.strip().strip("/")
    segments = text.split("/") if text else []
    if "\\" in text or not segments or len(text) > 100:
        raise ValueError("folder must be a relative path like 'course-1/videos' of at most 100 characters")
    for segment in segments:
        if segment in (".", "..") or not _FOLDER_SEGMENT.fullmatch(segment) or segment != segment.strip():
            raise ValueError(f"folder segment {segment!r} is not allowed (letters, digits, '_', '-', '.', spaces)")
    return "/".join(segments)


def clean_filename(value: str) -> str:
    """The last path component of a client's file name; what could split a header or a path is refused."""
    # Browsers escape only these three in a multipart file name (WHATWG HTML).
    value = value.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")
    _no_controls(value, "filename")
    name = value.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", ".."):
        raise ValueError("the file needs a name")
    if len(name) > 255:
        raise ValueError("the file name is longer than 255 characters")
    return name


class UploadFields(BaseModel):
    folder: str | None = Field(default=None, max_length=100, description="Where to file it, e.g. `course-1/videos`.")
    is_public: bool = Field(default=False, description="Anyone may download a public file.")

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        return clean_folder(value) if value not in (None, "") else None


class UploadForm(UploadFields):
    """multipart/form-data: the `file` part (with a file name) and the optional text fields."""

    file: bytes = Field(description="The file. Its extension must be allowed and its content must match it.")


class FileOut(BaseModel):
    id: uuid.UUID
    filename: str = Field(description="The name it was uploaded with.")
    content_type: str = Field(description="The type found in the content (not the client's claim).")
    size: int
    folder: str | None
    is_public: bool
    checksum_sha256: str | None
    created_at: datetime
    download_url: str


class MyFilesQuery(PageQuery):
    folder: str | None = Field(default=None, max_length=100, description="Only files in this folder.")

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str | None) -> str | None:
        return clean_folder(value) if value not in (None, "") else None
