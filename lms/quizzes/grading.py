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
================  ===============================  ==============================

A multiple-choice question scores only when the chosen set equals the correct
set: there is no partial credit (choosing every option must not pay). Unknown
option ids and empty answers are simply wrong. Short answers are compared
case-insensitively after Unicode normalisation and whitespace folding.

This is the one grader: self-paced attempts (``grade``) and live questions
(``realtime.live.machine`` through :func:`is_correct`) give the same verdict
on the same answer. Live play adds only its scoring by time
(``lms.live.scoring``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SINGLE_CHOICE = "single_choice"
MULTIPLE_CHOICE = "multiple_choice"
TRUE_FALSE = "true_false"
SHORT_ANSWER = "short_answer"

MAX_SHORT_ANSWER_LENGTH = 2000
MAX_CHOICES = 100
CENT = Decimal("0.01")


@dataclass(frozen=True)
class GradableQuestion:
    id: str
    question_type: str
    correct_answer: Any
    points: Decimal
    explanation: str | None = None


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


def answer_shape_error(question_type: str, answer: Any) -> str | None:
    """Why an answer cannot be an answer to this type of question (``None``: it can).

    Only the JSON shape is checked: an unknown option id is a wrong answer,
    not a malformed one. ``null`` means unanswered and is always allowed.
    """
    if answer is None:
        return None
    if question_type == SINGLE_CHOICE:
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
    return "unknown question type"


def is_correct(question_type: str, correct_answer: Any, answer: Any) -> bool:
    """The verdict on one answer; anything malformed or unanswered is simply wrong."""
    if answer is None:
        return False
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


def grade(questions: Sequence[GradableQuestion], answers: Mapping[str, Any], passing_score: Decimal) -> Grade:
    """Points per question (all or nothing), the total, and pass/fail against ``passing_score``."""
    score = Decimal(0)
    max_score = Decimal(0)
    results: list[dict[str, Any]] = []
    for question in questions:
        answer = answers.get(question.id)
        correct = is_correct(question.question_type, question.correct_answer, answer)
        awarded = question.points if correct else Decimal(0)
        score += awarded
        max_score += question.points
        results.append(
            {
                "question_id": question.id,
                "answer": answer,
                "is_correct": correct,
                "points_awarded": str(awarded),
                "points": str(question.points),
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
