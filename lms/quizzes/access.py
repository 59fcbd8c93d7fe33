"""Who may see and change what: the one place quiz routes load-and-check.

The rules are those of the course (:mod:`lms.courses.access`: drafts are the
owner's and admins') and of enrollment (:mod:`lms.enrollments.studying`):

- A course's owner and admins *manage* its quizzes (drafts included).
- A student who studies a course sees its published quizzes while the
  course itself is visible (published).
- Anyone else does not see a quiz at all: 404, never 403. 403 is for a caller
  who can see the thing but may not do this to it (a student asking for the
  authoring view, an owner trying to take their own quiz).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lms.api.problems import Forbidden, NotFound
from lms.auth.guards import Principal
from lms.courses.access import load_course, manages
from lms.db import Connection, Row
from lms.enrollments.studying import studying_enrollment
from lms.quizzes import queries


@dataclass(frozen=True)
class CourseAccess:
    course: Row
    manages: bool
    enrollment: Row | None


@dataclass(frozen=True)
class QuizAccess:
    quiz: Row
    manages: bool
    enrollment: Row | None


async def course_access(conn: Connection, principal: Principal, course_id: uuid.UUID) -> CourseAccess:
    """The course under its own rules (404 for a draft), whether the caller manages it, and their enrollment."""
    course = await load_course(conn, principal, course_id=course_id)
    owner = manages(principal, course)
    enrollment = None if owner else await studying_enrollment(conn, course_id=course_id, student_id=principal.id)
    return CourseAccess(course, owner, enrollment)


async def quiz_access(
    conn: Connection, principal: Principal, quiz_id: uuid.UUID, *, manage: bool = False, lock: queries.QuizLock = None
) -> QuizAccess:
    """The quiz if the caller may see it (404 otherwise); with ``manage``, only for owner/admin (403).

    ``lock``: see :func:`lms.quizzes.queries.get_quiz`.
    """
    quiz = await queries.get_quiz(conn, quiz_id, lock=lock)
    if quiz is None:
        raise NotFound("No such quiz.")
    try:
        course = await course_access(conn, principal, quiz["course_id"])
    except NotFound:
        raise NotFound("No such quiz.") from None
    if not (course.manages or (quiz["is_published"] and course.enrollment is not None)):
        raise NotFound("No such quiz.")
    if manage and not course.manages:
        raise Forbidden("Only the course's instructor or an admin may change its quizzes.")
    return QuizAccess(quiz, course.manages, course.enrollment)


async def question_access(conn: Connection, principal: Principal, question_id: uuid.UUID) -> tuple[Row, QuizAccess]:
    question = await queries.get_question(conn, question_id)
    if question is None:
        raise NotFound("No such question.")
    try:
        access = await quiz_access(conn, principal, question["quiz_id"], manage=True)
    except NotFound:
        raise NotFound("No such question.") from None
    return question, access


async def attempt_access(
    conn: Connection, principal: Principal, attempt_id: uuid.UUID, *, take: bool = False, lock: bool = False
) -> tuple[Row, Row]:
    """The attempt and its quiz, for the student who made it, the course's owner or an admin.

    With ``take`` (answering, submitting) only the student may go on: 403 for
    the others who can see it.
    """
    attempt = await queries.get_attempt(conn, attempt_id, for_update=lock)
    if attempt is None:
        raise NotFound("No such attempt.")
    quiz = await queries.get_quiz(conn, attempt["quiz_id"])
    assert quiz is not None  # the foreign key cascades
    is_student = attempt["student_id"] == principal.id
    if not (is_student or manages(principal, quiz)):
        raise NotFound("No such attempt.")
    if take and not is_student:
        raise Forbidden("Only the student who started this attempt may answer it.")
    return attempt, quiz
