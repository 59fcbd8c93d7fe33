"""Taking a quiz: start an attempt, save answers, submit, and what a viewer sees.

Deadlines are judged by the app's clock (:mod:`lms.quizzes.clock`) in
Python. Past ``deadline + grace`` an answer is no longer accepted: the attempt
is closed and graded on the answers it had saved (``timed_out``), and the
caller gets 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lms.api.problems import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lms.auth.guards import Principal
from lms.db import Connection, Database, IntegrityViolation, Row, is_unique_violation
from lms.quizzes import queries
from lms.quizzes.access import QuizAccess, attempt_access, quiz_access
from lms.quizzes.grading import answer_shape_error
from lms.quizzes.presentation import draw, shown
from lms.quizzes.question_types import ORDERING
from lms.quizzes.schemas import AttemptAnswerIn
from lms.quizzes.service import GradedAttempt, attempt_questions, grade_attempt, past_deadline

ATTEMPT_UNIQUE = "uq_quiz_attempts_enrollment_id_quiz_id_attempt_number"


@dataclass(frozen=True)
class Outcome:
    attempt_id: uuid.UUID
    # Attempts graded on the way (the one submitted, or one that timed out).
    graded: list[GradedAttempt]
    # The answers came after the deadline: the attempt was closed instead.
    late: bool = False


def answers_shown(quiz: Row) -> bool:
    """Whether a student sees correct answers in their graded attempts.

    Only when the quiz shows them and is not played live: a live-only quiz
    never, any other quiz not while one of its live sessions is open (the
    lobby or the game), so that nobody reads the answers before the game.
    """
    return bool(quiz["show_correct_answers"] and not quiz["live_only"] and not quiz["live_now"])


def refuse_self_paced(quiz: Row) -> None:
    """409 for a new attempt at a quiz that is played live (only, or right now)."""
    if quiz["live_only"]:
        raise Conflict("This quiz is played only in live sessions; join one with its pin.", type_slug="live-only-quiz")
    if quiz["live_now"]:
        raise Conflict(
            "This quiz is being played live right now; start an attempt after the session ends.",
            type_slug="quiz-live-now",
        )


def late_conflict(attempt_id: uuid.UUID) -> Conflict:
    return Conflict(
        "The time for this attempt ran out; it was graded on the answers saved before the deadline.",
        type_slug="attempt-deadline-passed",
        attempt_id=str(attempt_id),
    )


async def close_timed_out(
    db: Database, principal: Principal, quiz_id: uuid.UUID, *, now: datetime, grace: int
) -> tuple[QuizAccess, list[GradedAttempt]]:
    """Before a start: the caller may take this quiz, and has no attempt still running.

    An open attempt whose time ran out is closed (graded as it stood) and
    committed, so it stays closed even if the start is then refused.
    """
    async with db.transaction() as conn:
        access = await quiz_access(conn, principal, quiz_id)
        if access.enrollment is None:
            raise Forbidden("Only students enrolled in the course take its quizzes.")
        refuse_self_paced(access.quiz)
        current = await queries.open_attempt(
            conn, enrollment_id=access.enrollment["id"], quiz_id=quiz_id, for_update=True
        )
        if current is None:
            return access, []
        if not past_deadline(current, now, grace):
            raise Conflict(
                "You have an attempt in progress; finish it first.",
                type_slug="attempt-in-progress",
                attempt_id=str(current["id"]),
            )
        answers = current["answers"] or {}
        return access, [await grade_attempt(conn, current, access.quiz, answers=answers, now=now, submitted=False)]


async def start_attempt(db: Database, principal: Principal, access: QuizAccess, *, now: datetime) -> uuid.UUID:
    """A new attempt, its question order drawn and stored, its deadline fixed.

    Refused (409) past ``max_attempts``. Two concurrent starts compute the
    same attempt number and the unique constraint lets only one in, so
    ``max_attempts`` holds, and one attempt is open, under any concurrency.
    """
    assert access.enrollment is not None
    enrollment_id = access.enrollment["id"]
    async with db.transaction() as conn:
        # Held until the attempt commits: a delete of the quiz waits, then counts it (409).
        quiz = await queries.get_quiz(conn, access.quiz["id"], lock="share")
        if quiz is None:
            raise NotFound("No such quiz.")
        number = await queries.next_attempt_number(conn, enrollment_id=enrollment_id, quiz_id=quiz["id"])
        if quiz["max_attempts"] is not None and number > quiz["max_attempts"]:
            raise Conflict(
                f"All {quiz['max_attempts']} attempts at this quiz are used.",
                type_slug="max-attempts-reached",
                max_attempts=quiz["max_attempts"],
            )
        questions = await queries.all_questions(conn, quiz["id"])
        if not questions:
            raise Conflict("This quiz has no questions yet.")
        limit = quiz["time_limit_seconds"]
        try:
            return await queries.insert_attempt(
                conn,
                enrollment_id=enrollment_id,
                quiz_id=quiz["id"],
                student_id=principal.id,
                attempt_number=number,
                status="in_progress",
                started_at=now,
                deadline=now + timedelta(seconds=limit) if limit else None,
                answers={},
                presentation=draw(
                    questions, shuffle_questions=quiz["shuffle_questions"], shuffle_options=quiz["shuffle_options"]
                ),
            )
        except IntegrityViolation as err:
            if is_unique_violation(err, ATTEMPT_UNIQUE):
                raise Conflict(
                    "Another attempt at this quiz was started at the same moment.", type_slug="attempt-in-progress"
                ) from err
            raise


def checked_answers(answers: Sequence[AttemptAnswerIn], questions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{question id: answer}``, or 422 naming each answer that cannot be one."""
    by_id = {str(q["id"]): q for q in questions}
    errors: list[FieldError] = []
    seen: set[str] = set()
    result: dict[str, Any] = {}
    for i, item in enumerate(answers):
        question_id = str(item.question_id)
        if question_id not in by_id:
            errors.append({"field": f"answers.{i}.question_id", "message": "not a question of this attempt"})
            continue
        if question_id in seen:
            errors.append({"field": f"answers.{i}.question_id", "message": "answered twice"})
            continue
        seen.add(question_id)
        question = by_id[question_id]
        items = [str(o["id"]) for o in question["options"]] if question["question_type"] == ORDERING else []
        problem = answer_shape_error(
            question["question_type"], item.answer, settings=question.get("settings"), options=items
        )
        if problem:
            errors.append({"field": f"answers.{i}.answer", "message": problem})
        result[question_id] = item.answer
    if errors:
        raise ValidationFailed("Some answers are not valid.", errors=errors)
    return result


def ensure_open(attempt: Row) -> None:
    if attempt["status"] != "in_progress":
        raise Conflict("This attempt is already graded.", type_slug="attempt-closed", attempt_id=str(attempt["id"]))


async def answer_attempt(
    db: Database,
    principal: Principal,
    attempt_id: uuid.UUID,
    answers: Sequence[AttemptAnswerIn],
    *,
    now: datetime,
    grace: int,
    submit: bool,
) -> Outcome:
    """Save answers (merged over those saved before) and, with ``submit``, grade.

    The attempt row is locked: a submit racing another submit, a save or the
    closer job finds it graded and gets 409.
    """
    async with db.transaction() as conn:
        attempt, quiz = await attempt_access(conn, principal, attempt_id, take=True, lock=True)
        ensure_open(attempt)
        saved: dict[str, Any] = dict(attempt["answers"] or {})
        questions = await attempt_questions(conn, attempt)
        if past_deadline(attempt, now, grace):
            graded = await grade_attempt(
                conn, attempt, quiz, answers=saved, now=now, submitted=False, questions=questions
            )
            return Outcome(attempt_id, [graded], late=True)
        merged = saved | checked_answers(answers, questions)
        if not submit:
            await queries.save_answers(conn, attempt_id, merged)
            return Outcome(attempt_id, [])
        graded = await grade_attempt(conn, attempt, quiz, answers=merged, now=now, submitted=True, questions=questions)
        return Outcome(attempt_id, [graded])


async def attempt_view(conn: Connection, attempt: Row, *, reveal: bool, now: datetime) -> dict[str, Any]:
    """What :class:`~lms.quizzes.schemas.AttemptOut` shows.

    Questions never carry their answers here; results (graded attempts only)
    carry the correct answer and explanation only when ``reveal``.
    """
    questions = await attempt_questions(conn, attempt)
    saved: Mapping[str, Any] = attempt["answers"] or {}
    results = None
    if attempt["status"] == "graded" and attempt["results"] is not None:
        hidden = {} if reveal else {"correct_answer": None, "explanation": None}
        results = [{**r, **hidden} for r in attempt["results"]]
    return {
        **attempt,
        "server_now": now,
        "questions": [shown(q) for q in questions],
        "answers": [
            {"question_id": q["id"], "answer": saved[str(q["id"])]} for q in questions if str(q["id"]) in saved
        ],
        "results": results,
    }
