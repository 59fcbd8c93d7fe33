"""The text rules every input shares: what can be stored, and what a shown name may hold.

Two rules, used everywhere text comes in:

- :func:`first_unstorable` finds text no column can hold. PostgreSQL refuses
  NUL (U+0000) in ``text`` and ``jsonb``, and a lone surrogate cannot be
  encoded as UTF-8; both would otherwise surface as a driver error (a 500).
  :mod:`lms.api.endpoint` runs it over every decoded body, form and query
  string before validation, so each such input is a 422 naming its field.
- :func:`display_text` cleans one line that other people see (titles, names,
  live-quiz nicknames): invisible formatting characters that can disguise
  it (bidi overrides and isolates, zero-width spaces, BOM, soft hyphens) are
  removed, runs of whitespace become one space, and control characters are
  refused. Zero-width (non-)joiners stay: Persian, Indic scripts and emoji
  sequences need them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any

# Invisible characters removed from shown text (str.translate deletes keys mapped to None).
INVISIBLE = dict.fromkeys(
    [
        0x00AD,  # soft hyphen
        0x061C,  # Arabic letter mark
        0x180E,  # Mongolian vowel separator
        0x200B,  # zero-width space
        0x200E,  # left-to-right mark
        0x200F,  # right-to-left mark
        *range(0x202A, 0x202F),  # bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
        *range(0x2060, 0x2065),  # word joiner, invisible operators
        *range(0x2066, 0x206A),  # bidi isolates (LRI, RLI, FSI, PDI)
        0xFEFF,  # zero-width no-break space (BOM)
    ]
)

# Refused in shown text once whitespace is collapsed: C0/C1 controls, surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs"})

NUL_MESSAGE = "must not contain NUL (\\u0000) characters"
SURROGATE_MESSAGE = "must not contain unpaired surrogates (not valid Unicode)"


def unstorable(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None."""
    if "\x00" in value:
        return NUL_MESSAGE
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def _strings(data: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    # Iterative: decoded JSON may be deep enough to exhaust the stack.
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield (*where, str(key)), str(key)
                stack.append((item, (*where, str(key))))
        elif isinstance(value, list | tuple):
            stack.extend((item, (*where, str(i))) for i, item in enumerate(value))


def first_unstorable(data: Any, path: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """The first ``(field path, reason)`` of a string (or key) in ``data`` that cannot be stored."""
    for where, text in _strings(data, path):
        reason = unstorable(text)
        if reason is not None:
            return ".".join(where), reason
    return None


def depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            stack.extend((item, level + 1) for item in value.values())
            deepest = max(deepest, level + 1)
        elif isinstance(value, list | tuple):
            stack.extend((item, level + 1) for item in value)
            deepest = max(deepest, level + 1)
    return deepest


def display_text(value: str) -> str:
    """One line people see: NFC, invisible formatting removed, whitespace collapsed.

    Raises ValueError (a pydantic validator's way to refuse) for control
    characters and for text that is blank once cleaned.
    """
    text = " ".join(unicodedata.normalize("NFC", value).translate(INVISIBLE).split())
    if any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in text):
        raise ValueError("must not contain control characters")
    if not text:
        raise ValueError("must not be blank")
    return text
