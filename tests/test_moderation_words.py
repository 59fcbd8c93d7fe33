"""The profanity check (lms/live/moderation.py) and the nickname generator, as pure functions."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lms.config import LiveSettings
from lms.live.moderation import allow_words, denied, deny_words
from lms.live.nicknames import random_nickname

pytestmark = pytest.mark.no_services

CONFIG = LiveSettings()
DENY = [w for w in deny_words(CONFIG) if w.isalpha()]

# Disguises of each letter a player might type: look-alikes from other scripts,
# leetspeak, fullwidth and mathematical forms (any letter), accents (any letter).
LOOKALIKES: dict[str, list[str]] = {
    "a": ["а", "α", "4", "@"], "b": ["8", "Ь"], "c": ["с", "ϲ", "("], "d": ["ԁ"], "e": ["е", "3", "€", "ε"],
    "g": ["9", "ɡ"], "h": ["һ"], "i": ["і", "1", "!", "|", "ι"], "j": ["ј"], "k": ["κ", "к"], "l": ["1", "|", "Ι"],
    "m": ["м"], "n": ["п"], "o": ["о", "ο", "0"], "p": ["р", "ρ"], "r": ["г"], "s": ["ѕ", "5", "$"],
    "t": ["т", "7", "+"], "u": ["υ", "ս"], "v": ["ν"], "w": ["ѡ"], "x": ["х", "χ"], "y": ["у"], "z": ["2"],
}  # fmt: skip
SEPARATORS = ["", "", "", " ", ".", "-", "_", "*", "\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad"]


def disguises(letter: str) -> st.SearchStrategy[str]:
    forms = [letter, letter.upper(), chr(0xFF41 + ord(letter) - 97), chr(0x1D41A + ord(letter) - 97)]
    forms += [letter + "\u0301", letter + "\u0308", *LOOKALIKES.get(letter, [])]
    return st.sampled_from(forms)


@st.composite
def disguised(draw: st.DrawFn, word: str) -> str:
    out = []
    for letter in word:
        out.append(draw(disguises(letter)) * draw(st.integers(1, 3)))
        out.append(draw(st.sampled_from(SEPARATORS)))
    # Text around it, of letters no allowed word ends or starts with next to a denied one.
    return draw(st.text("xzq ", max_size=4)) + "".join(out) + draw(st.text("xzq ", max_size=4))


@given(st.sampled_from(DENY).flatmap(lambda w: st.tuples(st.just(w), disguised(w))))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_a_denied_word_is_caught_however_disguised(case: tuple[str, str]) -> None:
    word, text = case
    assert denied(text, CONFIG), (word, text)


# Names and words people use that contain a denied word (the Scunthorpe problem), and plain names.
ORDINARY = [
    "Scunthorpe", "Cassandra", "Essex", "Middlesex", "Dickens", "Emily Dickinson", "Hancock", "Hitchcock", "Peacock",
    "Cockpit", "Shiitake", "Therapist", "Grapefruit", "Basement", "Document", "Cucumber", "Arsenal", "Pakistan",
    "Montenegro", "Raccoon", "Manuscript", "Torpedo", "Speedo", "Sniggering", "Analysis", "Annalise", "Canal",
    "Vacuum", "Circumstance", "Spicy", "Hispanic", "Ghost", "Sam", "Ali", "Mohammed", "Zoë", "José", "Ngozi",
    "Siobhán", "Björn", "Chen Wei", "Priya", "Aleksandr", "Olga", "Δημήτρης", "Анна", "Tanaka", "Kim", "Nguyen",
    "Fatima", "Lucas", "Charlotte", "Isabella", "Oliver", "Amelia", "Harry", "Sophie", "Jack", "Ella", "Noah",
    "Mia", "Leo", "Grace", "Theo", "Lily", "Oscar", "Ava", "Freddie", "Chloe", "Arthur", "Evie", "Alfie",
    "Maximilian", "Penelope", "Dominic", "Francesca", "Nicholas", "Cassius", "Bass", "Glasgow", "Sussex",
]  # fmt: skip


@given(st.sampled_from(ORDINARY), st.sampled_from(["plain", "upper", "lower", "fullwidth"]))
def test_ordinary_names_are_not_blocked(name: str, form: str) -> None:
    if form == "upper":
        name = name.upper()
    elif form == "lower":
        name = name.lower()
    elif form == "fullwidth":
        name = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    assert not denied(name, CONFIG), name


def test_examples_of_the_policy() -> None:
    assert denied("xXfuckXx", CONFIG)  # anywhere in the text
    assert denied("Scunthorpe fuck", CONFIG)  # an allowed word exempts only what lies inside it
    assert denied("f u c k", CONFIG) and denied("ｆｕｃｋ", CONFIG) and denied("sh1t", CONFIG)
    assert denied("Ad\u200bmin", CONFIG)  # the configured list (live.nickname_deny_list) too
    assert not denied("", CONFIG) and not denied("12345", CONFIG)


def test_the_lists_are_data_files_and_replaceable(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    deny, allow = tmp_path / "deny.txt", tmp_path / "allow.txt"
    deny.write_text("# a school's own list\nbanana\n", encoding="utf-8")
    allow.write_text("bananarama\n", encoding="utf-8")
    own = LiveSettings(deny_words_file=str(deny), allow_words_file=str(allow), nickname_deny_list=())
    assert denied("b4n4n4", own) and not denied("Bananarama", own)
    assert not denied("fuck", own)  # the shipped list replaced
    assert "fuck" in deny_words(CONFIG) and "scunthorpe" in allow_words(CONFIG)


@given(st.integers(0, 40))
def test_generated_nicknames_are_friendly_and_pass_the_check(attempt: int) -> None:
    name = random_nickname(CONFIG, attempt)
    assert re.fullmatch(r"[A-Z][a-z]+[A-Z][a-z]+[0-9]*", name), name
    assert len(name) <= 24 and not denied(name, CONFIG)
    assert (attempt >= 4) == any(c.isdigit() for c in name)
    assert len(random_nickname(CONFIG.model_copy(update={"nickname_max_length": 5}), attempt)) <= 5
