"""Live quiz scoring by time: points, ranks, what players see of options and answers, distributions.

Whether an answer is correct is decided by the one grader,
:func:`lms.quizzes.grading.is_correct`, exactly as for self-paced attempts.
What players send per question type is in LIVE_PROTOCOL.md: an option id
(``single_choice``; ``"true"``/``"false"`` for ``true_false``), a list of
option ids (``multiple_choice``), a string (``short_answer``).

Points for a correct answer: ``round(points × 1000 × (1 − elapsed / time_limit / 2))``
(halves rounded up), with ``elapsed`` clamped to the time limit, so a correct
answer inside the grace after the deadline still earns half. Wrong or missing: 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lms.quizzes.grading import (
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    SINGLE_CHOICE,
    TRUE_FALSE,
    accepted_answers,
    as_bool,
    correct_options,
    normalize_text,
)

CHOICE_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE)

TRUE_FALSE_OPTIONS = ({"id": "true", "text": "True"}, {"id": "false", "text": "False"})
# Distinct short answers reported in a question's distribution (most frequent first).
SHORT_ANSWER_DISTRIBUTION_SIZE = 20


def public_options(question_type: str, options: Any) -> list[dict[str, str]]:
    """The options players see: ``[{id, text}]``; true/false gets its two if the quiz stored none."""
    listed = [{"id": str(o["id"]), "text": str(o.get("text", ""))} for o in options or [] if isinstance(o, dict)]
    if question_type == TRUE_FALSE and not listed:
        return [dict(o) for o in TRUE_FALSE_OPTIONS]
    if question_type == SHORT_ANSWER:
        return []
    return listed


def revealed_answer(question_type: str, correct_answer: Any) -> Any:
    """The correct answer as ``question_ended`` shows it, in the shape players answer in."""
    if question_type == TRUE_FALSE:
        return "true" if as_bool(correct_answer) else "false"
    if question_type == MULTIPLE_CHOICE:
        return sorted(correct_options(correct_answer))
    if question_type == SHORT_ANSWER:
        return accepted_answers(correct_answer)
    return str(correct_answer)


def points_for(points: Decimal | int | float, *, correct: bool, elapsed_ms: int, time_limit_ms: int) -> int:
    if not correct:
        return 0
    elapsed = min(max(elapsed_ms, 0), time_limit_ms)
    milli = Decimal(str(points)) * 1000
    if milli == milli.to_integral_value():
        # Exact in integers, and what runs for every player of every question:
        # round(milli × (2·limit − elapsed) / (2·limit)), halves up.
        numerator, denominator = int(milli) * (2 * time_limit_ms - elapsed), 2 * time_limit_ms
        return (2 * numerator + denominator) // (2 * denominator)
    value = milli * (1 - Decimal(elapsed) / Decimal(time_limit_ms) / 2)
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
