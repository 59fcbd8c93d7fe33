"""Certificate numbers: ``LMS-XXXX-XXXX-XXXX-XXXC``.

Fifteen random symbols of Crockford's base32 (75 bits from ``secrets``: not
guessable from any other number) and a Luhn mod 32 check symbol, which
catches every single mistyped symbol and almost every swap of neighbours.
So verification tells "you mistyped it" (the check fails) apart from
"no such certificate" and "revoked". Reading is forgiving the way
Crockford's alphabet intends: case, spaces and dashes do not matter, and
O/I/L read as 0/1/1.
"""

from __future__ import annotations

import secrets

from stdnum import luhn

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "LMS"
RANDOM_SYMBOLS = 15
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


class MalformedNumber(ValueError):
    """Not a certificate number; ``mistyped`` when only the check symbol disagrees."""

    def __init__(self, message: str, *, mistyped: bool = False) -> None:
        super().__init__(message)
        self.mistyped = mistyped


def new_number() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_SYMBOLS))
    return _format(body + luhn.calc_check_digit(body, alphabet=ALPHABET))


def _format(symbols: str) -> str:
    return PREFIX + "-" + "-".join(symbols[i : i + 4] for i in range(0, len(symbols), 4))


def parse_number(text: str) -> str:
    """The canonical form of a typed number, or :class:`MalformedNumber` saying what is wrong."""
    compact = "".join(text.split()).replace("-", "").upper()
    if compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    compact = compact.translate(_READ_AS)
    if len(compact) != RANDOM_SYMBOLS + 1 or any(c not in ALPHABET for c in compact):
        raise MalformedNumber(
            f"A certificate number is {PREFIX}- followed by {RANDOM_SYMBOLS + 1} letters and digits "
            "(LMS-XXXX-XXXX-XXXX-XXXX)."
        )
    if luhn.checksum(compact, alphabet=ALPHABET) != 0:
        raise MalformedNumber("This number's check symbol does not match: it was probably mistyped.", mistyped=True)
    return _format(compact)
