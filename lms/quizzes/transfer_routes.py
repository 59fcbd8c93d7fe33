"""Quiz import (Kahoot template xlsx/CSV, or an export's JSON) and JSON export (``/api/v1/quizzes/{id}/...``).

See :mod:`lms.quizzes.transfer` for the columns and rules. The file is held
in memory (at most :data:`~lms.quizzes.transfer.MAX_IMPORT_BYTES`) and
parsed in a worker thread; the import saves every question in one
transaction or none.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field, JsonValue, ValidationError

from lms.api.endpoint import endpoint, path_uuid, validation_errors
from lms.api.problems import FieldError, PayloadTooLarge, ValidationFailed
from lms.appkeys import DB
from lms.auth.guards import current_user
from lms.files.upload import receive_small_file
from lms.quizzes import queries
from lms.quizzes.access import quiz_access
from lms.quizzes.authoring import QuestionInvalid, prepare
from lms.quizzes.routes import TAGS, check_image, manage_quizzes, prepared_question
from lms.quizzes.schemas import QuizOption, QuizQuestionCreate, QuizQuestionOut
from lms.quizzes.transfer import (
    MAX_IMPORT_BYTES,
    MAX_QUESTIONS,
    ImportInvalid,
    ImportTooLarge,
    Parsed,
    ParsedQuestion,
    QuizExport,
    QuizImportFile,
    RowError,
    export_quiz,
    parse_rows,
    read_sheet,
)
from lms.text import first_unstorable

routes = web.RouteTableDef()
EXTENSIONS = ("xlsx", "csv", "json")


class ImportQuery(BaseModel):
    dry_run: bool = Field(default=False, description="Only parse and check: nothing is saved (the preview).")


class ImportForm(BaseModel):
    """multipart/form-data with one `file` part."""

    file: bytes = Field(description="`.xlsx` or `.csv` (Kahoot template columns) or `.json` (an export).")


class RowProblem(BaseModel):
    row: int = Field(description="1-based row of the sheet (for JSON: 1-based position in `questions`).")
    column: str = Field(description="Spreadsheet column letter (for JSON: the field).")
    message: str


class PreviewQuestion(BaseModel):
    row: int
    text: str
    question_type: str
    options: list[QuizOption]
    correct_answer: JsonValue = Field(description="In stored form (option ids, true/false, accepted answers).")
    settings: dict[str, JsonValue] | None = Field(default=None, description="Per type (slider, ordering).")
    points: float
    explanation: str | None
    time_limit_seconds: int | None = Field(
        description="The question's own time limit in live sessions (the sheet's, checked: 5-600)."
    )


class ImportPreview(BaseModel):
    valid: bool = Field(description="Some questions and no row errors: importing this file would save them all.")
    questions: list[PreviewQuestion]
    errors: list[RowProblem]


class ImportResult(BaseModel):
    imported: int
    questions: list[QuizQuestionOut]


def _problem(err: ImportInvalid) -> ValidationFailed:
    where = ", ".join(
        p for p in (f"row {err.row}" if err.row else "", f"column {err.column}" if err.column else "") if p
    )
    errors: list[FieldError] = [{"field": where or "file", "message": err.message}]
    return ValidationFailed(
        err.message, errors=errors, rows=[{"row": err.row, "column": err.column, "message": err.message}]
    )


def _from_json(data: bytes) -> Parsed:
    try:
        document = QuizImportFile.model_validate_json(data)
    except ValidationError as err:
        raise ValidationFailed("The JSON file is not a quiz export.", errors=validation_errors(err)) from err
    parsed = Parsed()
    for number, question in enumerate(document.questions, start=1):
        bad = first_unstorable(question.model_dump(mode="json"))
        if bad is not None:
            raise ValidationFailed(errors=[{"field": f"questions.{number - 1}.{bad[0]}", "message": bad[1]}])
        try:
            prepare(
                question.question_type, [o.model_dump() for o in question.options], question.correct_answer,
                settings=question.settings,
            )  # fmt: skip
        except QuestionInvalid as err:
            parsed.errors.append(RowError(number, err.field, err.message))
            continue
        parsed.questions.append(ParsedQuestion(number, question, question.time_limit_seconds))
    return parsed


def _parse(extension: str, data: bytes) -> Parsed:
    """Blocking (openpyxl, a 2 MB CSV): run in a thread."""
    if extension == "json":
        return _from_json(data)
    return parse_rows(read_sheet(data, extension))


def _stored(question: QuizQuestionCreate) -> dict[str, Any]:
    options = [o.model_dump() for o in question.options]
    return prepared_question(question.question_type, options, question.correct_answer, settings=question.settings)


@routes.post("/api/v1/quizzes/{id}/import")
@endpoint(
    summary="Import questions from a spreadsheet (Kahoot template) or a JSON export",
    description=(
        "multipart/form-data with one `file` part: `.xlsx` (first sheet) or `.csv` with the Kahoot template's "
        "columns `Question`, `Answer 1`..`Answer 4`, `Time limit`, `Correct answer(s)` (answer numbers, e.g. `1,3`) "
        "and optionally `Type`; or `.json` as `GET /api/v1/quizzes/{id}/export` returns it. "
        f"At most {MAX_IMPORT_BYTES // (1024 * 1024)} MB (413) and {MAX_QUESTIONS} questions (422). "
        "`dry_run=true` returns the preview: the parsed questions and per-row errors, nothing saved. Otherwise "
        "every question is appended after the quiz's existing ones in one transaction, or, if any row has an error, "
        "none is and the answer is 422 with `rows` ({row, column, message}). Formula cells, NUL characters and "
        "unreadable files are refused naming row and column."
    ),
    body=ImportForm,
    body_format="multipart",
    query=ImportQuery,
    response=ImportResult,
    status=201,
    errors=[400, 404, 413, 415, 422],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def import_questions(request: web.Request, query: ImportQuery) -> web.Response | dict[str, Any]:
    quiz_id = path_uuid(request)
    me = current_user(request)
    async with request.app[DB].connection() as conn:
        await quiz_access(conn, me, quiz_id, manage=True)  # refuse before reading the body
    upload = await receive_small_file(request, max_bytes=MAX_IMPORT_BYTES, allowed_extensions=EXTENSIONS)
    try:
        parsed = await asyncio.to_thread(_parse, upload.extension, upload.data)
    except ImportTooLarge as err:
        raise PayloadTooLarge(str(err), max_bytes=MAX_IMPORT_BYTES) from err
    except ImportInvalid as err:
        raise _problem(err) from err
    if query.dry_run:
        return web.json_response(_preview(parsed).model_dump(mode="json"))
    if parsed.errors:
        raise ValidationFailed(
            f"{len({e.row for e in parsed.errors})} rows cannot be imported; nothing was saved.",
            errors=[{"field": f"row {e.row}, column {e.column}", "message": e.message} for e in parsed.errors],
            rows=[{"row": e.row, "column": e.column, "message": e.message} for e in parsed.errors],
        )
    if not parsed.questions:
        raise ValidationFailed("The file has no questions.", errors=[{"field": "file", "message": "no questions"}])
    prepared = [(q.question, _stored(q.question)) for q in parsed.questions]
    async with request.app[DB].transaction() as conn:
        # FOR UPDATE: concurrent imports into one quiz take turns, so each gets its own run of positions.
        await quiz_access(conn, me, quiz_id, manage=True, lock="update")
        for question, _ in prepared:
            await check_image(conn, me, question.image_file_id)
        start = await queries.next_position(conn, quiz_id)
        rows = [
            await queries.create_question(
                conn, quiz_id=quiz_id, question_text=question.text, question_type=question.question_type,
                points=question.points, double_points=question.double_points, explanation=question.explanation,
                position=start + offset,
                image_file_id=question.image_file_id, video=question.video.model_dump() if question.video else None,
                time_limit_seconds=question.time_limit_seconds, **stored,
            )
            for offset, (question, stored) in enumerate(prepared)
        ]  # fmt: skip
    return {"imported": len(rows), "questions": rows}


def _preview(parsed: Parsed) -> ImportPreview:
    questions = []
    for item in parsed.questions:
        stored = _stored(item.question)
        questions.append(
            PreviewQuestion(
                row=item.row, text=item.question.text, question_type=item.question.question_type,
                options=[QuizOption.model_validate(o) for o in stored["options"]],
                correct_answer=stored["correct_answer"], settings=stored["settings"],
                points=float(item.question.points),
                explanation=item.question.explanation, time_limit_seconds=item.time_limit_seconds,
            )
        )  # fmt: skip
    errors = [RowProblem(row=e.row, column=e.column, message=e.message) for e in parsed.errors]
    return ImportPreview(valid=not errors and bool(questions), questions=questions, errors=errors)


@routes.get("/api/v1/quizzes/{id}/export")
@endpoint(
    summary="Export a quiz as JSON: its settings and questions with options, correct answers and points",
    description="Import it into any quiz with `POST /api/v1/quizzes/{id}/import` (a `.json` file); `quiz` is a valid "
    "body for creating the quiz first. Option ids are kept, so the round trip is lossless.",
    response=QuizExport,
    errors=[404],
    guards=[manage_quizzes],
    tags=TAGS,
)
async def export_questions(request: web.Request) -> web.Response:
    quiz_id: uuid.UUID = path_uuid(request)
    async with request.app[DB].connection() as conn:
        access = await quiz_access(conn, current_user(request), quiz_id, manage=True)
        questions = await queries.all_questions(conn, quiz_id)
    document = export_quiz(access.quiz, questions)
    return web.json_response(
        document.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="quiz-{quiz_id}.json"'},
    )
