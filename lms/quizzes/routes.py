"""Self-paced quiz routes: quizzes, questions and attempts (``/api/v1/quizzes/...``).

Authoring responses use the author models (correct answers included);
everything a student gets goes through the attempt models, which have no
field for a correct answer before grading.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, PageQuery, page
from lms.api.problems import Conflict, Forbidden, ValidationFailed
from lms.appkeys import CONFIG, DB
from lms.auth.guards import Principal, authenticated, current_user, require
from lms.auth.permissions import Permission, owner_or_admin
from lms.courses.queries import get_lesson
from lms.db import Connection, Row
from lms.effects import EFFECTS
from lms.files.queries import get_file
from lms.quizzes import queries
from lms.quizzes.access import attempt_access, course_access, question_access, quiz_access
from lms.quizzes.attempts import (
    Outcome,
    answer_attempt,
    answers_shown,
    attempt_view,
    close_timed_out,
    late_conflict,
    start_attempt,
)
from lms.quizzes.authoring import QuestionInvalid, prepare
from lms.quizzes.clock import now
from lms.quizzes.question_types import ORDERING, UNGRADED
from lms.quizzes.schemas import (
    AttemptAnswersIn,
    AttemptOut,
    AttemptSummary,
    QuizCreate,
    QuizDeleteQuery,
    QuizListQuery,
    QuizOut,
    QuizQuestionCreate,
    QuizQuestionOut,
    QuizQuestionUpdate,
    QuizUpdate,
)
from lms.quizzes.service import announce

routes = web.RouteTableDef()
TAGS = ["quizzes"]
manage_quizzes = require(Permission.MANAGE_QUIZZES)


async def _check_lesson(conn: Connection, lesson_id: uuid.UUID | None, course_id: uuid.UUID) -> None:
    if lesson_id is None:
        return
    lesson = await get_lesson(conn, lesson_id)
    if lesson is None or lesson["course_id"] != course_id:
        raise ValidationFailed(errors=[{"field": "lesson_id", "message": "not a lesson of this quiz's course"}])


async def _quiz(conn: Connection, quiz_id: uuid.UUID) -> Row:
    quiz = await queries.get_quiz(conn, quiz_id)
    assert quiz is not None
    return quiz


# -- quizzes -----------------------------------------------------------------


@routes.get("/api/v1/courses/{course_id}/quizzes")
@endpoint(
    summary="A course's quizzes",
    description="Owners and admins see drafts too; enrolled students see the published ones.",
    query=QuizListQuery,
    response=Page[QuizOut],
    errors=[403, 404],
    guards=[authenticated],
    tags=TAGS,
)
async def list_quizzes(request: web.Request, query: QuizListQuery) -> dict[str, Any]:
    course_id = path_uuid(request, "course_id")
    async with request.app[DB].connection() as conn:
        access = await course_access(conn, current_user(request), course_id)
        if not access.manages and access.enrollment is None:
            raise Forbidden("Enroll in the course to see its quizzes.")
        rows, total = await queries.list_quizzes(
            conn,
            course_id=course_id,
            published_only=not access.manages,
            lesson_id=query.lesson_id,
            limit=query.limit,
            offset=query.offset,
        )
    return page(rows, total, query)


@routes.post("/api/v1/courses/{course_id}/quizzes")
@endpoint(
    summary="Create a quiz (unpublished)",
    body=QuizCreate,
    response=QuizOut,
    status=201,
    errors=[404, 422],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def create_quiz(request: web.Request, body: QuizCreate) -> Row:
    course_id = path_uuid(request, "course_id")
    async with request.app[DB].transaction() as conn:
        access = await course_access(conn, current_user(request), course_id)
        if not access.manages:
            raise Forbidden("Only the course's instructor or an admin may add quizzes.")
        await _check_lesson(conn, body.lesson_id, course_id)
        quiz_id = await queries.create_quiz(conn, course_id=course_id, **body.model_dump())
        return await _quiz(conn, quiz_id)


@routes.get("/api/v1/quizzes/{id}")
@endpoint(summary="A quiz", response=QuizOut, errors=[404], guards=[authenticated], tags=TAGS)
async def get_quiz(request: web.Request) -> Row:
    async with request.app[DB].connection() as conn:
        access = await quiz_access(conn, current_user(request), path_uuid(request))
    return access.quiz


@routes.patch("/api/v1/quizzes/{id}")
@endpoint(
    summary="Change a quiz's settings",
    description="Attempts already started keep their deadline and question order.",
    body=QuizUpdate,
    response=QuizOut,
    errors=[404, 422],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def update_quiz(request: web.Request, body: QuizUpdate) -> Row:
    quiz_id = path_uuid(request)
    async with request.app[DB].transaction() as conn:
        access = await quiz_access(conn, current_user(request), quiz_id, manage=True)
        values = body.model_dump(exclude_unset=True)
        if "lesson_id" in values:
            await _check_lesson(conn, values["lesson_id"], access.quiz["course_id"])
        await queries.update_quiz(conn, quiz_id, **values)
        return await _quiz(conn, quiz_id)


@routes.delete("/api/v1/quizzes/{id}")
@endpoint(
    summary="Delete a quiz",
    description="Refused (409) once students have attempts, unless an admin forces it: their results go with it.",
    query=QuizDeleteQuery,
    status=204,
    errors=[404, 409],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def delete_quiz(request: web.Request, query: QuizDeleteQuery) -> None:
    quiz_id = path_uuid(request)
    me = current_user(request)
    async with request.app[DB].transaction() as conn:
        # FOR UPDATE keeps new attempts out (their start holds the quiz FOR KEY
        # SHARE, their foreign-key check waits) between the count and the delete.
        await quiz_access(conn, me, quiz_id, manage=True, lock="update")
        attempts = await queries.count_attempts(conn, quiz_id)
        if attempts and not (query.force and me.is_admin):
            raise Conflict(f"Students have {attempts} attempts at this quiz; it cannot be deleted.", attempts=attempts)
        await queries.delete_quiz(conn, quiz_id)


@routes.post("/api/v1/quizzes/{id}/publish")
@endpoint(
    summary="Publish a quiz",
    description="Needs at least one question. Publishing twice changes nothing.",
    response=QuizOut,
    errors=[404, 409],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def publish_quiz(request: web.Request) -> Row:
    quiz_id = path_uuid(request)
    async with request.app[DB].transaction() as conn:
        access = await quiz_access(conn, current_user(request), quiz_id, manage=True)
        if access.quiz["question_count"] == 0:
            raise Conflict("A quiz needs at least one question to be published.")
        if not access.quiz["is_published"]:
            await queries.update_quiz(conn, quiz_id, is_published=True)
        return await _quiz(conn, quiz_id)


# -- questions ---------------------------------------------------------------


def prepared_question(
    question_type: str, options: Any, correct_answer: Any, existing: Any = (), settings: Any = None
) -> dict[str, Any]:
    """A question's options, answer and settings as stored, or the 422 naming what is wrong (authoring, imports)."""
    try:
        authored = prepare(question_type, options, correct_answer, existing, settings)
    except QuestionInvalid as err:
        raise ValidationFailed("The question cannot be graded as written.", errors=[
            {"field": err.field, "message": err.message}
        ]) from err  # fmt: skip
    return {"options": authored.options, "correct_answer": authored.correct_answer, "settings": authored.settings}


async def check_image(conn: Connection, principal: Principal, file_id: uuid.UUID | None) -> None:
    """A question's image: an image file the author uploaded (admins: any), public so that guests can see it."""
    if file_id is None:
        return
    row = await get_file(conn, file_id)
    problem = None
    if row is None or not owner_or_admin(principal, row["uploader_id"]):
        problem = "no such file of yours"
    elif not str(row["mime_type"] or "").startswith("image/"):
        problem = "not an image"
    elif not row["is_public"]:
        problem = "the file is private: players (often guests) could not see it; upload it with is_public=true"
    if problem:
        raise ValidationFailed("The question's image cannot be used.", errors=[
            {"field": "image_file_id", "message": problem}
        ])  # fmt: skip


def _kept_answer(question: Row, question_type: str, options_sent: bool) -> Any:
    """The stored correct answer an edit keeps when it does not send one."""
    if question_type in UNGRADED or (question_type == ORDERING and options_sent):
        return None  # nothing to get right; re-sent items are in the correct order
    return question["correct_answer"]


@routes.get("/api/v1/quizzes/{id}/questions")
@endpoint(
    summary="A quiz's questions, with their answers (authors)",
    query=PageQuery,
    response=Page[QuizQuestionOut],
    errors=[403, 404],
    guards=[authenticated],
    tags=TAGS,
)
async def list_questions(request: web.Request, query: PageQuery) -> dict[str, Any]:
    quiz_id = path_uuid(request)
    async with request.app[DB].connection() as conn:
        await quiz_access(conn, current_user(request), quiz_id, manage=True)
        rows, total = await queries.list_questions(conn, quiz_id=quiz_id, limit=query.limit, offset=query.offset)
    return page(rows, total, query)


@routes.post("/api/v1/quizzes/{id}/questions")
@endpoint(
    summary="Add a question",
    description="Options without an id get a generated one; `correct_answer` may name options by id or index.",
    body=QuizQuestionCreate,
    response=QuizQuestionOut,
    status=201,
    errors=[404, 422],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def create_question(request: web.Request, body: QuizQuestionCreate) -> Row:
    quiz_id = path_uuid(request)
    prepared = prepared_question(
        body.question_type, [o.model_dump() for o in body.options], body.correct_answer, settings=body.settings
    )
    me = current_user(request)
    async with request.app[DB].transaction() as conn:
        await quiz_access(conn, me, quiz_id, manage=True)
        await check_image(conn, me, body.image_file_id)
        position = body.order if body.order is not None else await queries.next_position(conn, quiz_id)
        return await queries.create_question(
            conn,
            quiz_id=quiz_id,
            question_text=body.text,
            question_type=body.question_type,
            points=body.points,
            double_points=body.double_points,
            explanation=body.explanation,
            position=position,
            image_file_id=body.image_file_id,
            video=body.video.model_dump() if body.video else None,
            time_limit_seconds=body.time_limit_seconds,
            **prepared,
        )


@routes.patch("/api/v1/questions/{id}")
@endpoint(
    summary="Change a question",
    description="Graded attempts keep the results they were graded with.",
    body=QuizQuestionUpdate,
    response=QuizQuestionOut,
    errors=[404, 422],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def update_question(request: web.Request, body: QuizQuestionUpdate) -> Row | None:
    question_id = path_uuid(request)
    sent = body.model_dump(exclude_unset=True)
    me = current_user(request)
    async with request.app[DB].transaction() as conn:
        question, _ = await question_access(conn, me, question_id)
        values: dict[str, Any] = {}
        if {"question_type", "options", "correct_answer", "settings"} & sent.keys():
            question_type = str(sent.get("question_type", question["question_type"]))
            same_type = question_type == question["question_type"]
            # A question that changes type does not keep what only the old type had.
            values |= prepared_question(
                question_type,
                sent.get("options", question["options"]),
                sent.get("correct_answer", _kept_answer(question, question_type, "options" in sent)),
                existing=question["options"],
                settings=sent.get("settings", question["settings"] if same_type else None),
            )
        if "image_file_id" in sent:
            await check_image(conn, me, body.image_file_id)
        renamed = {"text": "question_text", "order": "position"}
        values |= {renamed.get(k, k): v for k, v in sent.items() if k not in ("options", "correct_answer", "settings")}
        return await queries.update_question(conn, question_id, **values)


@routes.delete("/api/v1/questions/{id}")
@endpoint(summary="Delete a question", status=204, errors=[404], guards=[manage_quizzes], tags=TAGS)
async def delete_question(request: web.Request) -> None:
    question_id = path_uuid(request)
    async with request.app[DB].transaction() as conn:
        await question_access(conn, current_user(request), question_id)
        await queries.delete_question(conn, question_id)


# -- attempts ----------------------------------------------------------------


async def _attempt_response(request: web.Request, outcome: Outcome) -> dict[str, Any]:
    me = current_user(request)
    async with request.app[DB].connection() as conn:
        attempt, quiz = await attempt_access(conn, me, outcome.attempt_id)
        reveal = attempt["student_id"] != me.id or answers_shown(quiz)
        return await attempt_view(conn, attempt, reveal=reveal, now=now(request.app))


async def _after_commit(request: web.Request, outcome: Outcome) -> None:
    await announce(request.app[EFFECTS], outcome.graded)
    if outcome.late:
        raise late_conflict(outcome.attempt_id)


def _grace(request: web.Request) -> int:
    return request.app[CONFIG].quizzes.submit_grace_seconds


@routes.post("/api/v1/quizzes/{id}/attempts")
@endpoint(
    summary="Start an attempt",
    description="The questions come without their answers, in this attempt's order; timed quizzes set `deadline`. "
    "409 while another attempt is in progress or when no attempts are left.",
    response=AttemptOut,
    status=201,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def create_attempt(request: web.Request) -> dict[str, Any]:
    db, me, started = request.app[DB], current_user(request), now(request.app)
    access, closed = await close_timed_out(db, me, path_uuid(request), now=started, grace=_grace(request))
    await announce(request.app[EFFECTS], closed)
    attempt_id = await start_attempt(db, me, access, now=started)
    return await _attempt_response(request, Outcome(attempt_id, []))


@routes.get("/api/v1/attempts/{id}")
@endpoint(
    summary="An attempt (its student, the course's owner, admins)",
    description="Correct answers appear in `results` only after grading and only if the quiz shows them.",
    response=AttemptOut,
    errors=[404],
    guards=[authenticated],
    tags=TAGS,
)
async def get_attempt(request: web.Request) -> dict[str, Any]:
    return await _attempt_response(request, Outcome(path_uuid(request), []))


@routes.put("/api/v1/attempts/{id}/answers")
@endpoint(
    summary="Save answers without submitting",
    description="Merged over the answers saved before. After the deadline (plus grace): 409, and the attempt is "
    "graded on what was saved.",
    body=AttemptAnswersIn,
    response=AttemptOut,
    errors=[403, 404, 409, 422],
    guards=[authenticated],
    tags=TAGS,
)
async def save_answers(request: web.Request, body: AttemptAnswersIn) -> dict[str, Any]:
    return await _answer(request, body, submit=False)


@routes.post("/api/v1/attempts/{id}/submit")
@endpoint(
    summary="Submit an attempt and get it graded",
    description="`answers` are merged over any saved before. After the deadline (plus a small grace): 409, and the "
    "attempt is graded on what was saved before the deadline.",
    body=AttemptAnswersIn,
    response=AttemptOut,
    errors=[403, 404, 409, 422],
    guards=[authenticated],
    tags=TAGS,
)
async def submit_attempt(request: web.Request, body: AttemptAnswersIn) -> dict[str, Any]:
    return await _answer(request, body, submit=True)


async def _answer(request: web.Request, body: AttemptAnswersIn, *, submit: bool) -> dict[str, Any]:
    outcome = await answer_attempt(
        request.app[DB], current_user(request), path_uuid(request), body.answers,
        now=now(request.app), grace=_grace(request), submit=submit,
    )  # fmt: skip
    await _after_commit(request, outcome)
    return await _attempt_response(request, outcome)


@routes.get("/api/v1/quizzes/{id}/attempts/mine")
@endpoint(
    summary="My attempts at a quiz, newest first",
    query=PageQuery,
    response=Page[AttemptSummary],
    errors=[404],
    guards=[authenticated],
    tags=TAGS,
)
async def my_attempts(request: web.Request, query: PageQuery) -> dict[str, Any]:
    quiz_id = path_uuid(request)
    me = current_user(request)
    async with request.app[DB].connection() as conn:
        await quiz_access(conn, me, quiz_id)
        rows, total = await queries.list_student_attempts(
            conn, quiz_id=quiz_id, student_id=me.id, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)
