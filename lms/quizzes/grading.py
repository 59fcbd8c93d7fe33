"""Grading: pure functions from questions and a student's answers to points.

What a correct answer is stored as, and what a student sends, per type:

================  ===============================  ==============================
question type     correct answer (stored)          student's answer
================  ===============================  ==============================
single_choice     one option id: ``"b"``           one option id
multiple_choice   option ids: ``["a", "c"]``       option ids (order irrelevant)
true_false        ``true`` or ``false``            ``true``/``false`` (or the
                                                   option ids ``"true"``/``"false"``)
short_answer      accepted answers: ``["Paris"]``  free text
slider, ordering, poll, word_cloud: see :mod:`lms.quizzes.question_types`
================  ===============================  ==============================

A multiple-choice question scores only when the chosen set equals the correct
set: there is no partial credit (choosing every option must not pay). Unknown
option ids and empty answers are simply wrong. Short answers are compared
case-insensitively after Unicode normalisation and whitespace folding.

Partial credit: :func:`fraction` is the share of a question's points an
answer earns, from 0 to 1. Only sliders (within the tolerance: 1, then
linearly down to 0 at ``zero_at``) and ordering questions with
``partial_credit`` (the share of items in their correct position) give
anything between; an answer is *correct* when it earns all of them. Polls
and word clouds have nothing to get right: no verdict (``is_correct`` is
``None`` in results) and no points at stake.

This is the one grader: self-paced attempts (``grade``) and live questions
(``realtime.live.machine`` through :func:`fraction`) give the same verdict
on the same answer. Live play adds only its scoring by time
(``lms.live.scoring``), applied to the fraction of the points.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from lms.quizzes.question_types import (
    MAX_ITEMS,
    ORDERING,
    POLL,
    SLIDER,
    UNGRADED,
    WORD_CLOUD,
    WORD_CLOUD_MAX_LENGTH,
    partial_credit,
    slider,
)

SINGLE_CHOICE = "single_choice"
MULTIPLE_CHOICE = "multiple_choice"
TRUE_FALSE = "true_false"
SHORT_ANSWER = "short_answer"

MAX_SHORT_ANSWER_LENGTH = 2000
MAX_CHOICES = 100
CENT = Decimal("0.01")
FRACTION_PLACES = Decimal("0.0001")
NOTHING, ALL = Decimal(0), Decimal(1)


@dataclass(frozen=True)
class GradableQuestion:
    id: str
    question_type: str
    correct_answer: Any
    points: Decimal
    explanation: str | None = None
    settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Grade:
    score: Decimal
    max_score: Decimal
    percentage: Decimal
    is_passed: bool
    # One per question, in the order graded: question_id, answer, is_correct,
    # points_awarded, points, correct_answer, explanation (JSON-ready).
    results: list[dict[str, Any]] = field(default_factory=list)


def normalize_text(text: str) -> str:
    """Casefolded, NFKC-normalised, with runs of whitespace folded to one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def fold_text(text: str) -> str:
    """:func:`normalize_text` without accents: how word-cloud answers are counted ("Café" and "cafe" are one)."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", normalize_text(bare))


def as_bool(answer: Any) -> bool | None:
    """A true/false answer (or stored correct answer) as a boolean; ``None`` when it is neither.

    The strings are the option ids players see, exactly: ``"true"`` and ``"false"``.
    """
    if isinstance(answer, bool):
        return answer
    if isinstance(answer, str) and answer in ("true", "false"):
        return answer == "true"
    return None


def accepted_answers(correct_answer: Any) -> list[str]:
    """A short answer question's accepted answers (stored as a list; a lone string is one answer)."""
    if isinstance(correct_answer, str):
        return [correct_answer]
    return [str(a) for a in correct_answer or []]


def correct_options(correct_answer: Any) -> set[str]:
    """A multiple-choice question's correct option ids."""
    if isinstance(correct_answer, str):
        return {correct_answer}
    return {str(a) for a in correct_answer or []}


def answer_shape_error(
    question_type: str, answer: Any, *, settings: Mapping[str, Any] | None = None, options: Sequence[str] = ()
) -> str | None:
    """Why an answer cannot be an answer to this type of question (``None``: it can).

    Only the JSON shape is checked: an unknown option id is a wrong answer,
    not a malformed one. ``null`` means unanswered and is always allowed.
    With the question's ``settings`` a slider answer must lie on the slider,
    and with its option ids an ordering answer must list each item once.
    """
    if answer is None:
        return None
    if question_type in (SINGLE_CHOICE, POLL):
        return None if isinstance(answer, str) else "expected an option id (a string)"
    if question_type == MULTIPLE_CHOICE:
        if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer):
            return "expected a list of option ids"
        return None if len(answer) <= MAX_CHOICES else f"at most {MAX_CHOICES} option ids"
    if question_type == TRUE_FALSE:
        return None if as_bool(answer) is not None else "expected true or false"
    if question_type == SHORT_ANSWER:
        if not isinstance(answer, str):
            return "expected text"
        return None if len(answer) <= MAX_SHORT_ANSWER_LENGTH else f"at most {MAX_SHORT_ANSWER_LENGTH} characters"
    if question_type == WORD_CLOUD:
        if not isinstance(answer, str) or not normalize_text(answer):
            return "expected text"
        return None if len(answer) <= WORD_CLOUD_MAX_LENGTH else f"at most {WORD_CLOUD_MAX_LENGTH} characters"
    if question_type == SLIDER:
        model = slider(settings)
        if model is None:
            return _number_error(answer)
        return model.answer_error(answer)
    if question_type == ORDERING:
        if not isinstance(answer, list) or not all(isinstance(a, str) for a in answer) or len(answer) > MAX_ITEMS:
            return f"expected a list of at most {MAX_ITEMS} item ids"
        if len(set(answer)) != len(answer):
            return "an item is listed twice"
        if options and sorted(answer) != sorted(options):
            return "expected every item exactly once"
        return None
    return "unknown question type"


def _number_error(answer: Any) -> str | None:
    ok = isinstance(answer, int | float) and not isinstance(answer, bool) and math.isfinite(answer)
    return None if ok else "expected a number"


def fraction(
    question_type: str, correct_answer: Any, answer: Any, settings: Mapping[str, Any] | None = None
) -> Decimal:
    """The share of the question's points this answer earns (0 to 1, four decimals); malformed or none: 0."""
    if answer is None or question_type in UNGRADED:
        return NOTHING
    if question_type == SLIDER:
        return _slider_fraction(correct_answer, answer, settings)
    if question_type == ORDERING:
        return _ordering_fraction(correct_answer, answer, settings)
    return ALL if is_correct(question_type, correct_answer, answer) else NOTHING


def _decimal(value: Any) -> Decimal | None:
    if _number_error(value) is not None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _slider_fraction(correct_answer: Any, answer: Any, settings: Mapping[str, Any] | None) -> Decimal:
    model = slider(settings)
    chosen, expected = _decimal(answer), _decimal(correct_answer)
    if model is None or chosen is None or expected is None or model.answer_error(answer) is not None:
        return NOTHING
    distance = abs(chosen - expected)
    tolerance = Decimal(str(model.tolerance))
    zero_at = Decimal(str(model.zero_at)) if model.zero_at is not None else tolerance
    if distance <= tolerance:
        return ALL
    if distance >= zero_at:
        return NOTHING
    share = (zero_at - distance) / (zero_at - tolerance)
    return share.quantize(FRACTION_PLACES, rounding=ROUND_HALF_UP)


def _ordering_fraction(correct_answer: Any, answer: Any, settings: Mapping[str, Any] | None) -> Decimal:
    expected = [str(i) for i in correct_answer or []]
    if not isinstance(answer, list) or sorted(map(str, answer)) != sorted(expected) or not expected:
        return NOTHING
    in_place = sum(1 for chosen, right in zip(answer, expected, strict=True) if chosen == right)
    if in_place == len(expected):
        return ALL
    if not partial_credit(settings):
        return NOTHING
    return (Decimal(in_place) / len(expected)).quantize(FRACTION_PLACES, rounding=ROUND_HALF_UP)


def is_correct(question_type: str, correct_answer: Any, answer: Any, settings: Mapping[str, Any] | None = None) -> bool:
    """The verdict on one answer (all of its points); anything malformed or unanswered is simply wrong."""
    if answer is None:
        return False
    if question_type in (SLIDER, ORDERING):
        return fraction(question_type, correct_answer, answer, settings) == ALL
    if question_type == SINGLE_CHOICE:
        return isinstance(answer, str) and answer == str(correct_answer)
    if question_type == MULTIPLE_CHOICE:
        if not isinstance(answer, list) or not answer or not all(isinstance(a, str) for a in answer):
            return False
        return set(answer) == correct_options(correct_answer)
    if question_type == TRUE_FALSE:
        chosen, expected = as_bool(answer), as_bool(correct_answer)
        return chosen is not None and chosen is expected
    if question_type == SHORT_ANSWER:
        if not isinstance(answer, str) or len(answer) > MAX_SHORT_ANSWER_LENGTH or not normalize_text(answer):
            return False
        return normalize_text(answer) in {normalize_text(a) for a in accepted_answers(correct_answer)}
    return False


def percentage_of(score: Decimal, max_score: Decimal) -> Decimal:
    if max_score <= 0:
        return Decimal("0.00")
    return (score * 100 / max_score).quantize(CENT, rounding=ROUND_HALF_UP)


def _share_of(points: Decimal, share: Decimal) -> Decimal:
    if share == ALL:
        return points
    if share == NOTHING:
        return Decimal(0)
    return (points * share).quantize(CENT, rounding=ROUND_HALF_UP)


def grade(questions: Sequence[GradableQuestion], answers: Mapping[str, Any], passing_score: Decimal) -> Grade:
    """Points per question (its :func:`fraction`), the total, and pass/fail against ``passing_score``.

    Polls and word clouds put no points at stake: ``points`` 0, ``is_correct`` ``None``.
    """
    score = Decimal(0)
    max_score = Decimal(0)
    results: list[dict[str, Any]] = []
    for question in questions:
        answer = answers.get(question.id)
        graded = question.question_type not in UNGRADED
        share = fraction(question.question_type, question.correct_answer, answer, question.settings)
        at_stake = question.points if graded else Decimal(0)
        awarded = _share_of(at_stake, share)
        score += awarded
        max_score += at_stake
        results.append(
            {
                "question_id": question.id,
                "answer": answer,
                "is_correct": share == ALL if graded else None,
                "points_awarded": str(awarded),
                "points": str(at_stake),
                "correct_answer": question.correct_answer,
                "explanation": question.explanation,
            }
        )
    percentage = percentage_of(score, max_score)
    return Grade(
        score=score,
        max_score=max_score,
        percentage=percentage,
        is_passed=max_score > 0 and percentage >= passing_score,
        results=results,
    )
