"""Grading an attempt, and telling the world: the domain event and the result email.

Grading happens inside the caller's transaction; :func:`announce` runs after
it commits, with the caller's :class:`~lms.effects.Effects`: a submit (the
web app) and the closer of timed-out attempts (a job) announce the same way.
An attempt is graded once: every path locks its row and grades only while
it is ``in_progress``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from lms.db import Connection, Database, Row
from lms.effects import Effects
from lms.events import QuizAttemptSubmitted
from lms.quizzes import grading, queries
from lms.quizzes.presentation import arrange
from lms.users.queries import get_user

log = logging.getLogger(__name__)

CLOSE_BATCH_SIZE = 100


@dataclass(frozen=True)
class GradedAttempt:
    attempt_id: uuid.UUID
    quiz_id: uuid.UUID
    course_id: uuid.UUID
    quiz_title: str
    student_id: uuid.UUID
    student_email: str
    student_name: str
    percentage: Decimal
    is_passed: bool
    timed_out: bool


def past_deadline(attempt: Row, now: datetime, grace_seconds: int) -> bool:
    """Whether the attempt's time (plus the grace) ran out before ``now``."""
    deadline: datetime | None = attempt["deadline"]
    return deadline is not None and now > deadline + timedelta(seconds=grace_seconds)


async def attempt_questions(conn: Connection, attempt: Row) -> list[dict[str, Any]]:
    """The attempt's questions in the order it showed them (see :mod:`lms.quizzes.presentation`)."""
    return arrange(await queries.all_questions(conn, attempt["quiz_id"]), attempt["presentation"])


async def grade_attempt(
    conn: Connection,
    attempt: Row,
    quiz: Row,
    *,
    answers: Mapping[str, Any],
    now: datetime,
    submitted: bool,
    questions: Sequence[Mapping[str, Any]] | None = None,
) -> GradedAttempt:
    """Grade a locked, open attempt and store the outcome.

    ``submitted`` is false when the attempt is closed at its deadline: it is
    graded on the answers saved before then and has no ``submitted_at``.
    """
    if questions is None:
        questions = await attempt_questions(conn, attempt)
    outcome = grading.grade(
        [
            grading.GradableQuestion(
                id=str(q["id"]),
                question_type=q["question_type"],
                correct_answer=q["correct_answer"],
                points=Decimal(q["points"]),
                explanation=q["explanation"],
                settings=q.get("settings"),
            )
            for q in questions
        ],
        answers,
        Decimal(quiz["passing_score"]),
    )
    ended = now if submitted or attempt["deadline"] is None else min(now, attempt["deadline"])
    await queries.record_grade(
        conn,
        attempt["id"],
        answers=dict(answers),
        results=outcome.results,
        score=outcome.score,
        max_score=outcome.max_score,
        percentage=outcome.percentage,
        is_passed=outcome.is_passed,
        submitted_at=now if submitted else None,
        graded_at=now,
        time_taken_seconds=max(0, int((ended - attempt["started_at"]).total_seconds())),
    )
    student = await get_user(conn, attempt["student_id"])
    assert student is not None  # attempts cascade with their student
    return GradedAttempt(
        attempt_id=attempt["id"],
        quiz_id=quiz["id"],
        course_id=quiz["course_id"],
        quiz_title=quiz["title"],
        student_id=attempt["student_id"],
        student_email=student["email"],
        student_name=student["full_name"],
        percentage=outcome.percentage,
        is_passed=outcome.is_passed,
        timed_out=not submitted,
    )


def submitted_event(graded: GradedAttempt) -> QuizAttemptSubmitted:
    return QuizAttemptSubmitted(
        course_id=graded.course_id,
        quiz_id=graded.quiz_id,
        attempt_id=graded.attempt_id,
        student_id=graded.student_id,
        percentage=graded.percentage,
        is_passed=graded.is_passed,
    )


def _percent_text(value: Decimal) -> str:
    text = f"{value:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


async def email_result(effects: Effects, graded: GradedAttempt) -> None:
    """Queue the quiz-result email; the message id makes a repeat a no-op."""
    await effects.email(
        "quiz_result",
        to=graded.student_email,
        full_name=graded.student_name,
        user_id=graded.student_id,
        message_id=f"<quiz-result-{graded.attempt_id}@lms>",
        quiz_title=graded.quiz_title,
        percentage=_percent_text(graded.percentage),
        is_passed=graded.is_passed,
        attempt_url=effects.link(f"/attempts/{graded.attempt_id}"),
    )


async def announce(effects: Effects, graded: Sequence[GradedAttempt]) -> None:
    """After the commit: the domain event for each graded attempt, and its email.

    The grade is stored whatever happens here: a queue that is down costs
    the email (logged), not the student's answer.
    """
    for item in graded:
        await effects.publish(submitted_event(item))
        try:
            await email_result(effects, item)
        except Exception:
            log.exception("could not queue the result email of attempt %s", item.attempt_id)


async def close_abandoned_attempts(
    db: Database, now: datetime, *, grace_seconds: int = 0, batch_size: int = CLOSE_BATCH_SIZE
) -> list[GradedAttempt]:
    """Grade, as they stood, the open attempts whose deadline (plus grace) has passed.

    Safe to run on several schedulers at once: rows another run holds are
    skipped, and a graded attempt is never graded again.
    """
    cutoff = now - timedelta(seconds=grace_seconds)
    closed: list[GradedAttempt] = []
    while True:
        async with db.transaction() as conn:
            batch = await queries.lock_expired_attempts(conn, cutoff=cutoff, limit=batch_size)
            for attempt in batch:
                quiz = await queries.get_quiz(conn, attempt["quiz_id"])
                assert quiz is not None
                closed.append(
                    await grade_attempt(conn, attempt, quiz, answers=attempt["answers"] or {}, now=now, submitted=False)
                )
        if len(batch) < batch_size:
            break
    if closed:
        log.info("closed %d abandoned quiz attempts", len(closed))
    return closed
