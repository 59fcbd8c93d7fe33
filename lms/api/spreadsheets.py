"""CSV for spreadsheets: one cell rule for every CSV the API serves.

Text that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``,
tab, carriage return first: CSV injection) is prefixed with a quote; lists
become ``a;b``; booleans ``true``/``false``; None an empty cell. Numbers
the server computed go into rows as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

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
