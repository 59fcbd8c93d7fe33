"""Friendly random nicknames ("BraveOtter"): what a player is called when the host assigns names.

Words come from data files (lms/live/words/adjectives.txt, animals.txt).
Uniqueness per session is the join script's (a taken name is drawn again;
after a few draws a number is added), not this module's.
"""

from __future__ import annotations

import functools
import secrets
from importlib import resources

from lms.config import LiveSettings
from lms.live.moderation import denied

# Draws of a bare "AdjectiveAnimal" before a number is added (a full session has used most pairs).
BARE_DRAWS = 4


@functools.cache
def _words(name: str) -> tuple[str, ...]:
    text = resources.files("lms.live").joinpath("words", name).read_text(encoding="utf-8")
    return tuple(w for w in (line.split("#", 1)[0].strip() for line in text.splitlines()) if w)


def random_nickname(config: LiveSettings, attempt: int = 0) -> str:
    """A fresh name that passes the profanity check; from ``attempt`` :data:`BARE_DRAWS` on, with a number.

    Drawn again when the check refuses it: digits read as letters (leetspeak), so a
    harmless pair plus a number can spell a denied word.
    """
    while True:
        name = secrets.choice(_words("adjectives.txt")) + secrets.choice(_words("animals.txt"))
        if attempt >= BARE_DRAWS:
            digits = min(2 + (attempt - BARE_DRAWS) // 4, 6)
            name += str(secrets.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1))
        name = name[: config.nickname_max_length]
        if not denied(name, config):
            return name
