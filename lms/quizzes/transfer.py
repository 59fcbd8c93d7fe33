"""Quiz import and export: the Kahoot spreadsheet template (xlsx or CSV) in, JSON out and back in.

A spreadsheet is read into ``(row number, cells)`` pairs (:func:`read_sheet`,
blocking: call it in a thread), then :func:`parse_rows` finds the header row
(the Kahoot template has instructions above it), maps columns by their
header text and turns each data row into a :class:`QuizQuestionCreate`,
checked by the same rules as the question routes (the body model and
:func:`lms.quizzes.authoring.prepare`). A row that does not make a valid
question becomes a :class:`RowError` naming its row and column; nothing is
raised for it. Only a file that cannot be read at all raises
:class:`ImportInvalid` (or :class:`ImportTooLarge`).

Columns (header text, case-insensitive, Kahoot's own wording accepted):
``question``, ``answer 1`` .. ``answer 4``, ``time limit`` (seconds),
``correct answer(s)`` (answer numbers, e.g. ``1,3``) and optionally
``type`` (``single_choice``, ``multiple_choice``, ``true_false``,
``short_answer``; otherwise inferred: two answers True/False are true/false,
several correct numbers multiple choice, else single choice). For
``short_answer`` the answer columns hold the accepted answers.
"""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import openpyxl
from openpyxl.utils import get_column_letter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lms.quizzes.authoring import QuestionInvalid, prepare
from lms.quizzes.grading import MULTIPLE_CHOICE, SHORT_ANSWER, SINGLE_CHOICE, TRUE_FALSE
from lms.quizzes.schemas import Number, Percent, QuestionVideo, QuizOption, QuizQuestionCreate
from lms.tables import QuestionType, QuizType
from lms.text import unstorable

MAX_IMPORT_BYTES = 2 * 1024 * 1024
MAX_UNZIPPED_BYTES = 32 * 1024 * 1024  # an xlsx is a zip: refuse a decompression bomb before parsing
MAX_QUESTIONS = 500
MAX_SCAN_ROWS = 2_000  # rows read at all, empty ones included (templates carry formatted empty rows)
MAX_COLUMNS = 16
HEADER_SEARCH_ROWS = 20
MAX_ANSWERS = 4
TIME_LIMIT_RANGE = (5, 600)  # the bounds of a live session's question time limit
QUESTION_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, TRUE_FALSE, SHORT_ANSWER)


class ImportInvalid(ValueError):
    """The file cannot be read as a quiz at all (422); ``row``/``column`` say where, when known."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.message, self.row, self.column = message, row, column


class ImportTooLarge(ValueError):
    """Beyond the size limits (413 for bytes)."""


class Formula(str):
    """The text of an xlsx formula cell: refused, the author types the value instead."""


@dataclass(frozen=True)
class RowError:
    row: int
    column: str
    message: str


@dataclass(frozen=True)
class ParsedQuestion:
    row: int
    question: QuizQuestionCreate
    time_limit_seconds: int | None


@dataclass
class Parsed:
    questions: list[ParsedQuestion] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


# -- reading files -------------------------------------------------------------

Rows = list[tuple[int, list[Any]]]


def read_sheet(data: bytes, extension: str) -> Rows:
    """The first sheet's rows (1-based numbers, cells of the first columns); blocking."""
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(f"The file is larger than {MAX_IMPORT_BYTES // 1024} KiB.")
    if extension == "csv":
        return _read_csv(data)
    if extension == "xlsx":
        return _read_xlsx(data)
    raise ImportInvalid(f"Cannot import .{extension} files; send .xlsx, .csv or .json.")


def _read_csv(data: bytes) -> Rows:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ImportInvalid("The CSV file is not UTF-8 text.") from err
    rows: Rows = []
    # Spreadsheets in locales with a decimal comma save CSV with semicolons.
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for number, cells in enumerate(reader, start=1):
            if number > MAX_SCAN_ROWS:
                raise ImportInvalid(f"More than {MAX_SCAN_ROWS} rows.", row=number)
            rows.append((number, list(cells[:MAX_COLUMNS])))
    except csv.Error as err:
        raise ImportInvalid(f"The CSV file cannot be read ({err}).", row=reader.line_num) from err
    return rows


def _read_xlsx(data: bytes) -> Rows:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ImportInvalid("The file is not an xlsx workbook.") from err
    if unzipped > MAX_UNZIPPED_BYTES:
        raise ImportTooLarge(f"The workbook unpacks to more than {MAX_UNZIPPED_BYTES // (1024 * 1024)} MiB.")
    rows: Rows = []
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as err:  # openpyxl raises many kinds for a malformed workbook: all are the sender's file
        raise ImportInvalid("The file is not a readable xlsx workbook.") from err
    try:
        if not workbook.worksheets:
            raise ImportInvalid("The workbook has no sheet.")
        sheet = workbook.worksheets[0]
        for number, cells in enumerate(sheet.iter_rows(max_col=MAX_COLUMNS), start=1):
            if number > MAX_SCAN_ROWS:
                raise ImportInvalid(f"More than {MAX_SCAN_ROWS} rows.", row=number)
            rows.append((number, [_cell_value(c) for c in cells]))
    except ImportInvalid:
        raise
    except Exception as err:  # same: a sheet whose XML is broken
        raise ImportInvalid("The workbook's first sheet cannot be read.") from err
    finally:
        workbook.close()
    return rows


def _cell_value(cell: Any) -> Any:
    value = getattr(cell, "value", None)
    if getattr(cell, "data_type", None) == "f" and isinstance(value, str):
        return Formula(value)
    return value


# -- parsing rows --------------------------------------------------------------

Role = Literal["question", "answer", "time_limit", "correct", "type"]


@dataclass(frozen=True)
class Columns:
    question: int
    answers: tuple[int, ...]
    correct: int
    time_limit: int | None
    type: int | None


def _header_role(text: str) -> tuple[Role, int] | None:
    text = " ".join(text.lower().split())
    if text.startswith("question"):
        return "question", 0
    if match := re.match(r"answer\s*([1-4])\b", text):
        return "answer", int(match.group(1))
    if text.startswith("time"):  # "Time limit (sec) ..." in Kahoot's template, "Time" in some generators
        return "time_limit", 0
    if text.startswith("correct"):
        return "correct", 0
    if text == "type" or text.startswith("question type"):
        return "type", 0
    return None


def _columns(cells: Sequence[Any]) -> Columns | None:
    found: dict[tuple[Role, int], int] = {}
    for index, value in enumerate(cells):
        if isinstance(value, str) and (role := _header_role(value)) is not None:
            found.setdefault(role, index)
    if ("question", 0) not in found or ("correct", 0) not in found or ("answer", 1) not in found:
        return None
    answers = tuple(found[("answer", n)] for n in range(1, MAX_ANSWERS + 1) if ("answer", n) in found)
    return Columns(
        question=found[("question", 0)], answers=answers, correct=found[("correct", 0)],
        time_limit=found.get(("time_limit", 0)), type=found.get(("type", 0)),
    )  # fmt: skip


def letter(index: int) -> str:
    return str(get_column_letter(index + 1))


def parse_rows(rows: Iterable[tuple[int, Sequence[Any]]]) -> Parsed:
    """Questions and per-row errors; :class:`ImportInvalid` only when there is no usable header row."""
    iterator: Iterator[tuple[int, Sequence[Any]]] = iter(rows)
    columns: Columns | None = None
    for number, cells in iterator:
        columns = _columns(cells)
        if columns is not None or number >= HEADER_SEARCH_ROWS:
            break
    if columns is None:
        raise ImportInvalid(
            "No header row: expected columns 'Question', 'Answer 1' .. 'Answer 4', 'Time limit' and "
            "'Correct answer(s)' in one of the first rows.",
            row=1, column="A",
        )  # fmt: skip
    parsed = Parsed()
    for number, cells in iterator:
        if all(_blank(c) for c in cells):
            continue
        if len(parsed.questions) + len(parsed.errors) >= MAX_QUESTIONS:
            raise ImportInvalid(f"More than {MAX_QUESTIONS} questions in one import.", row=number)
        result = _parse_row(number, cells, columns)
        if isinstance(result, ParsedQuestion):
            parsed.questions.append(result)
        else:
            parsed.errors.append(result)
    return parsed


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _at(cells: Sequence[Any], index: int | None) -> Any:
    return cells[index] if index is not None and index < len(cells) else None


def _text(value: Any) -> str | None:
    """A cell as text (numbers as a person wrote them), or None when empty."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.isoformat()
    text = str(value).strip()
    return text or None


class _RowProblem(Exception):
    def __init__(self, column: int | None, message: str) -> None:
        super().__init__(message)
        self.column, self.message = column, message


def _parse_row(number: int, cells: Sequence[Any], columns: Columns) -> ParsedQuestion | RowError:
    try:
        return _question(number, cells, columns)
    except _RowProblem as problem:
        column = letter(problem.column) if problem.column is not None else letter(columns.question)
        return RowError(number, column, problem.message)


def _checked(cells: Sequence[Any], index: int | None) -> str | None:
    value = _at(cells, index)
    if isinstance(value, Formula):
        raise _RowProblem(index, "a formula; type its value instead")
    text = _text(value)
    if text is not None and (reason := unstorable(text)) is not None:
        raise _RowProblem(index, reason)
    return text


def _question(number: int, cells: Sequence[Any], columns: Columns) -> ParsedQuestion:
    text = _checked(cells, columns.question)
    answers = [(i, t) for i in columns.answers if (t := _checked(cells, i)) is not None]
    correct_text = _checked(cells, columns.correct)
    time_text = _checked(cells, columns.time_limit)
    type_text = _checked(cells, columns.type)
    if text is None:
        raise _RowProblem(columns.question, "the question is empty")
    question_type = _question_type(type_text, answers, correct_text, columns)
    if question_type == SHORT_ANSWER:
        options: list[dict[str, str]] = []
        correct: Any = [t for _, t in answers]
        if not correct:
            raise _RowProblem(columns.answers[0], "a short-answer question needs an accepted answer")
    elif question_type == TRUE_FALSE:
        numbers = _correct_numbers(correct_text, answers, columns)
        if len(numbers) != 1:
            raise _RowProblem(columns.correct, "a true/false question has one correct answer")
        chosen = dict((columns.answers.index(i) + 1, t) for i, t in answers)[numbers[0]]
        options, correct = [], chosen.strip().lower() == "true"
    else:
        numbers = _correct_numbers(correct_text, answers, columns)
        positions = [columns.answers.index(i) + 1 for i, _ in answers]
        options = [{"text": t} for _, t in answers]
        indexes = [positions.index(n) for n in numbers]
        if question_type == SINGLE_CHOICE:
            if len(indexes) != 1:
                raise _RowProblem(columns.correct, "a single-choice question has one correct answer")
            correct = indexes[0]
        else:
            correct = indexes
    time_limit = _time_limit(time_text, columns)
    try:
        question = QuizQuestionCreate.model_validate(
            {
                "text": text, "question_type": question_type, "options": options, "correct_answer": correct,
                "time_limit_seconds": time_limit,
            }
        )  # fmt: skip
        prepare(question.question_type, [o.model_dump() for o in question.options], question.correct_answer)
    except ValidationError as err:
        first = err.errors()[0]
        raise _RowProblem(_column_of(first["loc"], columns), str(first["msg"])) from None
    except QuestionInvalid as err:
        raise _RowProblem(_column_of((err.field,), columns), err.message) from None
    return ParsedQuestion(number, question, time_limit)


def _question_type(
    type_text: str | None, answers: list[tuple[int, str]], correct_text: str | None, columns: Columns
) -> str:
    if type_text is not None:
        chosen = type_text.strip().lower().replace(" ", "_").replace("-", "_")
        if chosen not in QUESTION_TYPES:
            raise _RowProblem(columns.type, f"unknown question type; one of {', '.join(QUESTION_TYPES)}")
        return chosen
    if len(answers) == 2 and sorted(t.strip().lower() for _, t in answers) == ["false", "true"]:
        return TRUE_FALSE
    return MULTIPLE_CHOICE if len(_split(correct_text)) > 1 else SINGLE_CHOICE


def _split(text: str | None) -> list[str]:
    return [p for p in re.split(r"[\s,;]+", text or "") if p]


def _correct_numbers(text: str | None, answers: list[tuple[int, str]], columns: Columns) -> list[int]:
    filled = {columns.answers.index(i) + 1 for i, _ in answers}
    parts = _split(text)
    if not parts:
        raise _RowProblem(columns.correct, "name the correct answer numbers, e.g. 1 or 1,3")
    numbers: list[int] = []
    for part in parts:
        if not _small_number(part) or int(part) not in filled:
            raise _RowProblem(columns.correct, f"{part[:20]!r} is not the number of a filled-in answer")
        if int(part) not in numbers:
            numbers.append(int(part))
    return sorted(numbers)


def _small_number(text: str) -> bool:
    # ASCII only: str.isdigit() accepts "²", which int() refuses.
    return text.isascii() and text.isdigit() and len(text) <= 6


def _time_limit(text: str | None, columns: Columns) -> int | None:
    if text is None:
        return None
    low, high = TIME_LIMIT_RANGE
    if not _small_number(text) or not low <= int(text) <= high:
        raise _RowProblem(columns.time_limit, f"a whole number of seconds from {low} to {high}")
    return int(text)


def _column_of(loc: Sequence[Any], columns: Columns) -> int:
    head = loc[0] if loc else None
    if head == "options":
        if len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(columns.answers):
            return columns.answers[loc[1]]
        return columns.answers[0]
    if head == "correct_answer":
        return columns.correct
    if head == "question_type" and columns.type is not None:
        return columns.type
    return columns.question


# -- JSON export -------------------------------------------------------------


class ExportedQuizSettings(BaseModel):
    """The quiz's settings; a valid body for creating a quiz (``POST /api/v1/courses/{id}/quizzes``)."""

    title: str
    description: str | None
    quiz_type: QuizType
    passing_score: Percent
    time_limit_seconds: int | None
    max_attempts: int | None
    shuffle_questions: bool
    shuffle_options: bool
    show_correct_answers: bool
    live_only: bool


class ExportedQuestion(BaseModel):
    """A question as ``POST /api/v1/quizzes/{id}/questions`` takes it (options keep their ids)."""

    text: str
    question_type: QuestionType
    options: list[QuizOption]
    correct_answer: Any = Field(
        description="In stored form: option ids (in order, for ordering), true/false, accepted answers, a number "
        "(slider) or null (poll, word cloud)."
    )
    settings: dict[str, Any] | None = None
    points: Number
    double_points: bool = Field(default=False, description="Live sessions award it twice its points.")
    explanation: str | None
    image_file_id: uuid.UUID | None = Field(
        default=None, description="An uploaded file of this platform: importing it needs the file to be yours."
    )
    video: QuestionVideo | None = None
    time_limit_seconds: int | None = None


class QuizExport(BaseModel):
    format: Literal["lms-quiz"] = "lms-quiz"
    version: Literal[1] = 1
    quiz: ExportedQuizSettings
    questions: list[ExportedQuestion]


class QuizImportFile(BaseModel):
    """What a ``.json`` import must hold: an export; its ``quiz`` settings are not applied."""

    model_config = ConfigDict(extra="ignore")
    format: Literal["lms-quiz"]
    version: Literal[1]
    questions: list[QuizQuestionCreate] = Field(max_length=MAX_QUESTIONS)


def export_quiz(quiz: Any, questions: Iterable[Any]) -> QuizExport:
    return QuizExport(
        quiz=ExportedQuizSettings.model_validate({k: quiz[k] for k in ExportedQuizSettings.model_fields}),
        questions=[
            ExportedQuestion(
                text=q["question_text"], question_type=q["question_type"],
                options=[QuizOption.model_validate(o) for o in q["options"]], correct_answer=q["correct_answer"],
                settings=q["settings"], points=Decimal(q["points"]), double_points=bool(q.get("double_points")),
                explanation=q["explanation"],
                image_file_id=q["image_file_id"], video=q["video"], time_limit_seconds=q["time_limit_seconds"],
            )
            for q in questions
        ],
    )  # fmt: skip
