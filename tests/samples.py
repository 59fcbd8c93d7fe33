"""Small files of real formats, built in memory, for upload tests."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pdf(padding: int = 0) -> bytes:
    body = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    body += b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    body += b"% " + b"x" * padding + b"\n" if padding else b""
    return body + b"trailer << /Root 1 0 R >>\n%%EOF\n"


def _zip(names: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, "<?xml version='1.0'?><x/>")
    return out.getvalue()


def docx() -> bytes:
    return _zip(["[Content_Types].xml", "_rels/.rels", "word/document.xml", "word/_rels/document.xml.rels"])


def plain_zip() -> bytes:
    return _zip(["notes.txt", "more.txt"])


def windows_exe() -> bytes:
    header = bytearray(b"MZ" + b"\x90\x00" + b"\x00" * 56)
    header[0x3C:0x40] = struct.pack("<I", 64)
    return bytes(header) + b"PE\x00\x00" + b"\x4c\x01" + b"\x00" * 200


def html() -> bytes:
    return b"<!DOCTYPE html><html><head><script>alert(1)</script></head><body>hi</body></html>"


def mp4(size: int) -> bytes:
    """An MP4 header followed by ``size`` bytes of media data."""
    ftyp = struct.pack(">I", 24) + b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2"
    mdat_header = struct.pack(">I", 8 + size) + b"mdat"
    return ftyp + mdat_header + bytes(range(256)) * (size // 256) + b"\x00" * (size % 256)
