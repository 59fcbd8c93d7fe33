"""Live quiz scoring: pure functions from questions and recorded answers to points, ranks and counts.

What players send per question type (realtime/README.md) and what counts as correct:

================  ================================  ===============================
question type     player's answer                   correct when
================  ================================  ===============================
single_choice     an option id                      it is the correct option id
true_false        the option id ``"true"``/``"false"``  it matches the stored boolean
multiple_choice   a list of option ids              the set equals the correct set
short_answer      a string                          it matches an accepted answer,
                                                    case- and whitespace-insensitively
================  ================================  ===============================

Points for a correct answer: ``round(points × 1000 × (1 − elapsed / time_limit / 2))``
(halves rounded up), with ``elapsed`` clamped to the time limit, so a correct
answer inside the grace after the deadline still earns half. Wrong or missing: 0.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SINGLE_CHOICE = "single_choice"
MULTIPLE_CHOICE = "multiple_choice"
TRUE_FALSE = "true_false"
SHORT_ANSWER = "short_answer"
CHOICE_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE)

TRUE_FALSE_OPTIONS = ({"id": "true", "text": "True"}, {"id": "false", "text": "False"})
MAX_SHORT_ANSWER_LENGTH = 200
# Distinct short answers reported in a question's distribution (most frequent first).
SHORT_ANSWER_DISTRIBUTION_SIZE = 20


def normalize_text(text: str) -> str:
    """Casefolded, NFKC-normalised, runs of whitespace folded to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def public_options(question_type: str, options: Any) -> list[dict[str, str]]:
    """The options players see: ``[{id, text}]``; true/false gets its two if the quiz stored none."""
    listed = [{"id": str(o["id"]), "text": str(o.get("text", ""))} for o in options or [] if isinstance(o, dict)]
    if question_type == TRUE_FALSE and not listed:
        return [dict(o) for o in TRUE_FALSE_OPTIONS]
    if question_type == SHORT_ANSWER:
        return []
    return listed


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def revealed_answer(question_type: str, correct_answer: Any) -> Any:
    """The correct answer as ``question_ended`` shows it, in the shape players answer in."""
    if question_type == TRUE_FALSE:
        value = _as_bool(correct_answer)
        return "true" if value else "false"
    if question_type == MULTIPLE_CHOICE:
        return sorted(str(a) for a in (correct_answer or []))
    if question_type == SHORT_ANSWER:
        return accepted_answers(correct_answer)
    return str(correct_answer)


def accepted_answers(correct_answer: Any) -> list[str]:
    if isinstance(correct_answer, str):
        return [correct_answer]
    return [str(a) for a in correct_answer or []]


def is_correct(question_type: str, correct_answer: Any, answer: Any) -> bool:
    if answer is None:
        return False
    if question_type == SINGLE_CHOICE:
        return isinstance(answer, str) and answer == str(correct_answer)
    if question_type == TRUE_FALSE:
        chosen, expected = _as_bool(answer), _as_bool(correct_answer)
        return chosen is not None and chosen == expected
    if question_type == MULTIPLE_CHOICE:
        return (
            isinstance(answer, list)
            and bool(answer)
            and {str(a) for a in answer} == set(revealed_answer(MULTIPLE_CHOICE, correct_answer))
        )
    if question_type == SHORT_ANSWER:
        if not isinstance(answer, str) or not normalize_text(answer):
            return False
        return normalize_text(answer) in {normalize_text(a) for a in accepted_answers(correct_answer)}
    return False


def points_for(points: Decimal | int | float, *, correct: bool, elapsed_ms: int, time_limit_ms: int) -> int:
    if not correct:
        return 0
    elapsed = min(max(elapsed_ms, 0), time_limit_ms)
    value = Decimal(str(points)) * 1000 * (1 - Decimal(elapsed) / Decimal(time_limit_ms) / 2)
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ranks(scores: Mapping[str, int]) -> dict[str, int]:
    """Competition ranking (1, 2, 2, 4): equal scores share a rank."""
    ordered = sorted(scores.values(), reverse=True)
    first_at: dict[int, int] = {}
    for position, score in enumerate(ordered, start=1):
        first_at.setdefault(score, position)
    return {player: first_at[score] for player, score in scores.items()}


def distribution(question_type: str, options: list[dict[str, str]], answers: Iterable[Any]) -> dict[str, int]:
    """How many players chose each option (every option listed, zeros included).

    For short answers: how many gave each (normalised) answer, the most frequent first.
    """
    if question_type == SHORT_ANSWER:
        counts = Counter(normalize_text(a) for a in answers if isinstance(a, str) and normalize_text(a))
        return dict(counts.most_common(SHORT_ANSWER_DISTRIBUTION_SIZE))
    result = {o["id"]: 0 for o in options}
    for answer in answers:
        chosen = answer if isinstance(answer, list) else [answer]
        for option in chosen:
            if isinstance(option, str) and option in result:
                result[option] += 1
    return result
