"""CSV and xlsx for spreadsheets: one cell rule for every spreadsheet the API serves.

Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
tab, carriage return first: CSV injection) is prefixed with a quote; lists
become ``a;b``; booleans ``true``/``false``; None an empty cell. Numbers
the server computed go into rows as they are (in xlsx: number cells).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from openpyxl import Workbook

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text (CRLF line ends, RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


def xlsx_cell(value: Any) -> Any:
    """Numbers stay numbers, None an empty cell; the rest is text by :func:`cell` (openpyxl would run ``=...``)."""
    if value is None:
        return None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value) if isinstance(value, Decimal) else value
    return cell(value)


def xlsx_bytes(sheets: Iterable[tuple[str, Iterable[Sequence[Any]]]]) -> bytes:
    """A workbook of ``(title, rows)`` sheets (titles at most 31 characters); blocking, run it in a thread."""
    workbook = Workbook(write_only=True)
    for title, rows in sheets:
        sheet = workbook.create_sheet(title=title[:31])
        for row in rows:
            sheet.append([xlsx_cell(v) for v in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
