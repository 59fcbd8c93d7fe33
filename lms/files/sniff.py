"""What an upload really is: its content, sniffed by libmagic, against what its extension promises.

Neither the client's Content-Type nor the file name is believed: a Windows
executable named ``.png``, HTML named ``.pdf`` or a plain zip named ``.docx``
is refused, and the problem says what was found. libmagic (the library
behind file(1)) looks into containers: a zip is only a .docx when it holds
a Word document.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping

import magic

# How much of the start of a file libmagic sees: enough for the zip
# directory entries that tell an Office document from a plain zip.
SNIFF_BYTES = 64 * 1024

# What each extension may contain (libmagic's names). Extensions an operator
# allows beyond these must sniff as the type their name maps to.
EXPECTED_TYPES: Mapping[str, frozenset[str]] = {
    "mp4": frozenset({"video/mp4", "video/x-m4v", "audio/mp4"}),
    "m4v": frozenset({"video/mp4", "video/x-m4v"}),
    "mov": frozenset({"video/quicktime"}),
    "avi": frozenset({"video/x-msvideo", "video/avi"}),
    "webm": frozenset({"video/webm", "audio/webm"}),
    "mkv": frozenset({"video/x-matroska"}),
    "pdf": frozenset({"application/pdf"}),
    "doc": frozenset({"application/msword", "application/x-ole-storage", "application/CDFV2"}),
    "docx": frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}),
    "pptx": frozenset({"application/vnd.openxmlformats-officedocument.presentationml.presentation"}),
    "xlsx": frozenset({"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}),
    "jpg": frozenset({"image/jpeg"}),
    "jpeg": frozenset({"image/jpeg"}),
    "png": frozenset({"image/png"}),
    "gif": frozenset({"image/gif"}),
    "webp": frozenset({"image/webp"}),
    "mp3": frozenset({"audio/mpeg"}),
    "txt": frozenset({"text/plain"}),
    "csv": frozenset({"text/csv", "text/plain"}),
    "zip": frozenset({"application/zip"}),
}

# What a type is served as when the sniffed name differs from the usual one.
SERVED_AS: Mapping[str, str] = {
    "application/x-ole-storage": "application/msword",
    "application/CDFV2": "application/msword",
}


class Rejected(ValueError):
    """The content is not what the extension says; ``found`` is what libmagic saw."""

    def __init__(self, message: str, *, found: str) -> None:
        super().__init__(message)
        self.found = found


def extension_of(filename: str) -> str:
    stem, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and stem else ""


def sniff(head: bytes) -> str:
    """libmagic's MIME type for the first bytes of a file."""
    found: str = magic.from_buffer(head[:SNIFF_BYTES], mime=True)
    return found


def expected_types(ext: str) -> frozenset[str]:
    known = EXPECTED_TYPES.get(ext)
    if known is not None:
        return known
    guessed = mimetypes.types_map.get(f".{ext}")
    return frozenset({guessed}) if guessed else frozenset()


def check_content(ext: str, head: bytes) -> str:
    """The content type to record and serve, or :class:`Rejected`."""
    found = sniff(head)
    if found not in expected_types(ext):
        described = describe(head, found)
        raise Rejected(f"The content is {described}, not a .{ext} file.", found=found)
    return SERVED_AS.get(found, found)


def describe(head: bytes, mime: str) -> str:
    try:
        text = str(magic.from_buffer(head[:SNIFF_BYTES]))
    except magic.MagicException:
        text = ""
    return f"{mime} ({text})" if text else mime
