"""The one check that shown text (nicknames, word-cloud answers) is not offensive: :func:`denied`.

Disguises are undone before the deny-list is searched, so that a banned word
does not get through as look-alike letters (Cyrillic ``а``, Greek ``ο``,
from Unicode's confusables data, via ``confusable-homoglyphs``), fullwidth or
mathematical forms and ligatures (NFKD), accents (combining marks dropped,
other letters transliterated by ``anyascii``), leetspeak digits and symbols
(``0``→o, ``1``→i/l, ``3``→e, ``4``/``@``→a, ``5``/``$``→s, ``7``/``+``→t …),
zero-width characters and separators (removed), or repeated letters
(``fuuuck``).

Each character becomes the *set* of letters it may stand for (``1`` is i or
l), and a denied word matches a run of positions whose sets contain its
letters in order, each letter over one or more positions.

Policy on ordinary words that contain a denied one (the Scunthorpe problem):
the deny-list is matched anywhere in the text (``xXfuckXx`` is refused), and
an allow-list of ordinary words and names (``scunthorpe``, ``cassandra``,
``essex``, ``document`` …) exempts a match that lies entirely inside one of
them. Separators are removed, so two harmless words can spell a denied one
across the gap ("Ann Alice"); that is the price of catching ``f.u.c.k``.
Both lists are data files (``lms/live/words/``), replaceable by settings.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import confusable_homoglyphs
from anyascii import anyascii

from lms.config import LiveSettings

# What an ASCII digit or symbol may stand for (letters stand for themselves).
LEET: dict[str, str] = {
    "0": "o", "1": "il", "!": "i", "|": "il", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s",
    "7": "t", "+": "t", "8": "b", "9": "g", "6": "gb", "2": "z", "(": "c", "<": "c", "€": "e",
}  # fmt: skip
# Letters that look like each other in common fonts (I and l).
LOOKALIKE_LETTERS: dict[str, str] = {"i": "il", "l": "li"}
# Lower-case Cyrillic letters that look like a Latin one in common fonts but that Unicode's
# confusables data does not pair with it (it pairs only glyphs that are nearly identical).
SCRIPT_LOOKALIKES: dict[str, str] = {"п": "n", "г": "r", "ь": "b", "ш": "w", "и": "u", "я": "r", "ч": "y"}

Positions = list[frozenset[str]]


def _word_lines(text: str) -> tuple[str, ...]:
    words = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return tuple(dict.fromkeys(fold_word(w) for w in words if w))


@functools.lru_cache(maxsize=8)
def _word_file(path: str, shipped: str) -> tuple[str, ...]:
    if path:
        return _word_lines(Path(path).read_text(encoding="utf-8"))
    return _word_lines(resources.files("lms.live").joinpath("words", shipped).read_text(encoding="utf-8"))


@functools.cache
def _confusable_ascii() -> dict[str, str]:
    """Non-ASCII character -> the ASCII characters Unicode's confusables data says it looks like."""
    data = json.loads(resources.files(confusable_homoglyphs).joinpath("confusables.json").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for char, entry in data.items():
        if char.isascii():
            continue
        looks = [g["c"] for g in entry if len(g["c"]) == 1 and g["c"].isascii()]
        looks = [c for c in looks if c.isalnum() or c in LEET]
        if looks:
            table[char] = "".join(dict.fromkeys(looks))
    return table


def _ascii_letters(char: str) -> frozenset[str]:
    """The lower-case letters (and digits) one ASCII character may stand for; empty for separators."""
    out = set(LEET.get(char, ""))
    if char.isalnum():
        lower = char.lower()
        out.add(lower)
        out.update(LOOKALIKE_LETTERS.get(lower, ""))
    return frozenset(out)


def positions(text: str) -> Positions:
    """The text as sets of letters, disguises undone (see the module's docstring)."""
    return [letters for _, letters in _read(text)]


def _read(text: str) -> list[tuple[str, frozenset[str]]]:
    """Per position: the letter it plainly is, and every letter it may stand for.

    An allowed word exempts only what the text spells plainly, so a disguise
    cannot turn a denied word into an allowed one ("ггape": Cyrillic г may
    stand for r, but plainly it is g, so this is not "grape").
    """
    out: list[tuple[str, frozenset[str]]] = []
    for raw in text:
        looks = _looks_like(raw)  # before NFKD, which turns some look-alikes (Greek ϲ) into other letters
        if looks:
            out.append((_first(raw, looks), looks))
            continue
        for char in unicodedata.normalize("NFKD", raw):
            if unicodedata.category(char).startswith(("M", "C", "Z")):  # marks, invisible formatting, spaces
                continue
            looks = _looks_like(char)
            if looks:
                out.append((_first(char, looks), looks))
                continue
            for c in anyascii(char):  # transliterated: ß is ss, æ is ae
                letters = _ascii_letters(c)
                if letters:
                    out.append((_first(c, letters), letters))
    return out


def _first(char: str, letters: frozenset[str]) -> str:
    """What a character plainly is: itself if an ASCII letter or digit, its transliteration, else a look."""
    spelled = char if char.isascii() else anyascii(char)
    if len(spelled) == 1 and spelled.isalpha():
        return spelled.lower()
    return LEET.get(char, min(letters))[0] if char in LEET else min(letters)


def _looks_like(char: str) -> frozenset[str]:
    """The letters one character may stand for, when it is ASCII or a known look-alike; else empty."""
    if char.isascii() or char in LEET:
        return _ascii_letters(char)
    table = _confusable_ascii()
    looks = table.get(char, "") + table.get(char.upper(), "") + table.get(char.lower(), "")
    looks += SCRIPT_LOOKALIKES.get(char.lower(), "")
    if not looks:
        return frozenset()
    spelled = anyascii(char)
    merged: set[str] = set()
    for c in looks + (spelled if len(spelled) == 1 else ""):
        merged |= _ascii_letters(c)
    return frozenset(merged)


def fold_word(word: str) -> str:
    """A list entry as the plain lower-case letters it is matched by."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.category(c).startswith("M"))
    return "".join(c for c in anyascii(plain).lower() if c.isalnum())


def spans(word: str, seq: Positions) -> list[tuple[int, int]]:
    """Where ``word`` matches (start, end) in ``seq``: its letters in order, each over one or more positions."""
    found = []
    last = len(word) - 1
    for start in range(len(seq)):
        if word[0] not in seq[start]:
            continue
        active = {0}
        end = start
        while True:
            if last in active:
                found.append((start, end + 1))
                break
            end += 1
            if end >= len(seq):
                break
            here = seq[end]
            active = {k for j in active for k in (j, j + 1) if word[k] in here}
            if not active:
                break
    return found


def _longest_spans(word: str, seq: Positions) -> list[tuple[int, int]]:
    """Like :func:`spans`, but each start's longest match (an allowed word covers as much as it can)."""
    found = []
    last = len(word) - 1
    for start in range(len(seq)):
        if word[0] not in seq[start]:
            continue
        active, end, best = {0}, start, None
        while active:
            if last in active:
                best = end + 1
            end += 1
            if end >= len(seq):
                break
            here = seq[end]
            active = {k for j in active for k in (j, j + 1) if k <= last and word[k] in here}
        if best is not None:
            found.append((start, best))
    return found


def deny_words(config: LiveSettings) -> tuple[str, ...]:
    extra = tuple(fold_word(w) for w in config.nickname_deny_list if fold_word(w))
    return _word_file(config.deny_words_file, "deny.txt") + extra


def allow_words(config: LiveSettings) -> tuple[str, ...]:
    return _word_file(config.allow_words_file, "allow.txt")


def find_denied(text: str, deny: Sequence[str], allow: Sequence[str]) -> str | None:
    """The first denied word the text contains outside an allowed word, or None."""
    read = _read(text)
    seq = [letters for _, letters in read]
    if not seq:
        return None
    allowed: list[tuple[int, int]] | None = None
    for word in deny:
        matches = spans(word, seq)
        if not matches:
            continue
        if allowed is None:
            plainly = [frozenset(first) for first, _ in read]
            allowed = [span for a in allow for span in _longest_spans(a, plainly)]
        for start, end in matches:
            if not any(a <= start and end <= b for a, b in allowed):
                return word
    return None


def denied(text: str, config: LiveSettings) -> bool:
    """True when the text must not be shown: it contains a denied word, however disguised.

    The one check for nicknames and for free-text answers others see
    (``live.deny_words_file`` / ``live.allow_words_file`` /
    ``live.nickname_deny_list``).
    """
    return find_denied(text, deny_words(config), allow_words(config)) is not None
