"""Bodies and responses of the quiz routes.

Authors and students get different models: nothing a student receives
before grading has a field that could carry a correct answer, and after
grading ``correct_answer``/``explanation`` are present only when the quiz
shows them (absent, not null, otherwise).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StrictBool,
    field_validator,
    model_validator,
)

from lms.api.pagination import PageQuery
from lms.quizzes.grading import MAX_CHOICES, MAX_SHORT_ANSWER_LENGTH
from lms.tables import AttemptStatus, QuestionType, QuizType
from lms.text import display_text

# Scores and percentages are JSON numbers (they are not money).
Number = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)]
Points = Annotated[Decimal, Field(gt=0, le=1000, max_digits=6, decimal_places=2)]


def _is_none(value: Any) -> bool:
    return value is None


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value.strip() if value is not None else None


def _optional_display_text(value: str | None) -> str | None:
    return None if value is None else display_text(value)


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null")
    return value


# -- quizzes -----------------------------------------------------------------

LIVE_ONLY = (
    "Played only in live sessions: students cannot start self-paced attempts (409 `live-only-quiz`). "
    "Any quiz with an open live session also refuses new attempts and shows no correct answers in attempts "
    "until the session ends."
)


class QuizCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    lesson_id: uuid.UUID | None = None
    quiz_type: QuizType = "practice"
    passing_score: Percent = Decimal(70)
    time_limit_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    shuffle_questions: bool = False
    shuffle_options: bool = False
    show_correct_answers: bool = True
    live_only: bool = Field(default=False, description=LIVE_ONLY)

    _title = field_validator("title")(display_text)


class QuizUpdate(BaseModel):
    """Only the fields sent change; ``null`` clears the nullable ones."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    lesson_id: uuid.UUID | None = None
    quiz_type: QuizType | None = None
    passing_score: Percent | None = None
    time_limit_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    max_attempts: int | None = Field(default=None, ge=1, le=1000)
    shuffle_questions: bool | None = None
    shuffle_options: bool | None = None
    show_correct_answers: bool | None = None
    live_only: bool | None = Field(default=None, description=LIVE_ONLY)

    _title = field_validator("title")(_optional_display_text)
    _required = field_validator(
        "title", "quiz_type", "passing_score", "shuffle_questions", "shuffle_options", "show_correct_answers",
        "live_only",
    )(_not_null)  # fmt: skip


class QuizListQuery(PageQuery):
    lesson_id: uuid.UUID | None = None


class QuizOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    course_id: uuid.UUID
    lesson_id: uuid.UUID | None
    title: str
    description: str | None
    quiz_type: QuizType
    passing_score: Number
    time_limit_seconds: int | None
    max_attempts: int | None
    shuffle_questions: bool
    shuffle_options: bool
    show_correct_answers: bool
    live_only: bool
    is_published: bool
    question_count: int
    created_at: datetime
    updated_at: datetime


class QuizDeleteQuery(BaseModel):
    force: bool = Field(default=False, description="Admins only: delete even though students have attempts.")


# -- questions ---------------------------------------------------------------


class QuizOptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: str = Field(min_length=1, max_length=2000)

    _text = field_validator("text")(_not_blank)


class QuizOption(BaseModel):
    id: str
    text: str


class QuestionVideo(BaseModel):
    """A video shown with the question: an https link and the part to play."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, description="An https URL.")
    start_seconds: int = Field(default=0, ge=0, le=24 * 3600)
    end_seconds: int | None = Field(default=None, ge=1, le=24 * 3600, description="Default: the end of the video.")

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters")
        parsed = AnyUrl(value)
        if parsed.scheme != "https" or not parsed.host:
            raise ValueError("must be an https URL")
        return str(parsed)

    @model_validator(mode="after")
    def _in_order(self) -> QuestionVideo:
        if self.end_seconds is not None and self.end_seconds <= self.start_seconds:
            raise ValueError("end_seconds must be after start_seconds")
        return self


CORRECT_ANSWER = (
    "single_choice: an option id or 0-based index; multiple_choice: a list of them; "
    "true_false: true or false; short_answer: an accepted answer or a list of them; "
    "slider: a number from settings.min to settings.max; ordering: every item (option) id or index in the "
    "correct order (omitted: the options are in the correct order); poll, word_cloud: null (nothing to get right)."
)
SETTINGS = (
    "Per question type; other types take none. slider (required): "
    "`{min, max, step (default 1), tolerance (default 0), zero_at}`: full points within `tolerance` of the "
    "correct value, scaled down linearly to none at distance `zero_at` (default: `tolerance`). "
    "ordering: `{partial_credit: false}`: with `true`, each item in its correct position earns its share."
)
QUESTION_TYPES = (
    "Besides the choice types and short_answer: `slider` (a number on a range), `ordering` (3 to 6 items, the "
    "options, put in order), `poll` (2 to 50 options, no correct answer, no points) and `word_cloud` "
    "(free text up to 40 characters, no points; answers are counted by their text, case and accents ignored)."
)
IMAGE_FILE = (
    "An uploaded image (`POST /api/v1/files/upload` with `is_public=true`: live players are often guests) that "
    "you uploaded yourself."
)
TIME_LIMIT = "Live sessions give this question so long instead of the session's own time limit."


class QuizQuestionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=10_000)
    question_type: QuestionType = Field(description=QUESTION_TYPES)
    options: list[QuizOptionIn] = Field(default_factory=list, max_length=50)
    correct_answer: JsonValue = Field(default=None, description=CORRECT_ANSWER)
    settings: dict[str, JsonValue] | None = Field(default=None, description=SETTINGS)
    points: Points = Decimal(1)
    double_points: StrictBool = Field(
        default=False, description="Live sessions award this question twice its points (every scoring mode)."
    )
    explanation: str | None = Field(default=None, max_length=10_000)
    order: int | None = Field(default=None, ge=0, le=100_000, description="Position in the quiz; default: last.")
    image_file_id: uuid.UUID | None = Field(default=None, description=IMAGE_FILE)
    video: QuestionVideo | None = None
    time_limit_seconds: int | None = Field(default=None, ge=5, le=600, description=TIME_LIMIT)

    _text = field_validator("text")(_not_blank)


class QuizQuestionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, min_length=1, max_length=10_000)
    question_type: QuestionType | None = None
    options: list[QuizOptionIn] | None = Field(default=None, max_length=50)
    correct_answer: JsonValue = Field(default=None, description=CORRECT_ANSWER)
    settings: dict[str, JsonValue] | None = Field(default=None, description=SETTINGS)
    points: Points | None = None
    double_points: StrictBool | None = Field(default=None, description="Live sessions award it twice its points.")
    explanation: str | None = Field(default=None, max_length=10_000)
    order: int | None = Field(default=None, ge=0, le=100_000)
    image_file_id: uuid.UUID | None = Field(default=None, description=IMAGE_FILE)
    video: QuestionVideo | None = None
    time_limit_seconds: int | None = Field(default=None, ge=5, le=600, description=TIME_LIMIT)

    _text = field_validator("text")(_not_blank)
    _required = field_validator(
        "text", "question_type", "options", "correct_answer", "points", "double_points", "order"
    )(_not_null)


class QuizQuestionOut(BaseModel):
    """A question as its author sees it, correct answer included."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    quiz_id: uuid.UUID
    text: str = Field(validation_alias=AliasChoices("text", "question_text"))
    question_type: QuestionType
    options: list[QuizOption]
    correct_answer: JsonValue
    settings: dict[str, JsonValue] | None
    points: Number
    double_points: bool = Field(description="Live sessions award it twice its points.")
    explanation: str | None
    order: int = Field(validation_alias=AliasChoices("order", "position"))
    image_file_id: uuid.UUID | None
    video: QuestionVideo | None
    time_limit_seconds: int | None
    created_at: datetime
    updated_at: datetime


# -- attempts ----------------------------------------------------------------


class PublicSettings(BaseModel):
    """What a student sees of a slider: its range and step (never the tolerance)."""

    min: float
    max: float
    step: float


class AttemptQuestion(BaseModel):
    """A question as a student taking the quiz sees it: no correct answer, no explanation.

    Ordering questions list their items (``options``) shuffled; the answer lists every item id in order.
    """

    id: uuid.UUID
    text: str = Field(validation_alias=AliasChoices("text", "question_text"))
    question_type: QuestionType
    options: list[QuizOption]
    points: Number
    # Present only when the question has them.
    settings: PublicSettings | None = Field(default=None, exclude_if=_is_none, description="Sliders only.")
    image_url: str | None = Field(
        default=None, exclude_if=_is_none, description="The question's image (a public file's download)."
    )
    video: QuestionVideo | None = Field(default=None, exclude_if=_is_none)


# An answer as a live player or a challenge player sends it, within the one grader's limits
# (lms.quizzes.grading): an option id or text, option ids, or a finite number (sliders).
PlayedAnswer = (
    Annotated[str, Field(max_length=MAX_SHORT_ANSWER_LENGTH)]
    | Annotated[list[str], Field(max_length=MAX_CHOICES)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
)


class AttemptAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question_id: uuid.UUID
    answer: JsonValue = None


class AttemptAnswersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answers: list[AttemptAnswerIn] = Field(max_length=1000)


class AttemptAnswerOut(BaseModel):
    question_id: uuid.UUID
    answer: JsonValue


class AttemptQuestionResult(BaseModel):
    question_id: uuid.UUID
    answer: JsonValue
    is_correct: bool | None = Field(description="`null` for polls and word clouds: nothing to get right.")
    points_awarded: Number
    points: Number
    correct_answer: JsonValue = Field(default=None, exclude_if=_is_none, description="Only if the quiz shows them.")
    explanation: str | None = Field(default=None, exclude_if=_is_none, description="Only if the quiz shows them.")


class AttemptSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    quiz_id: uuid.UUID
    student_id: uuid.UUID
    attempt_number: int
    status: AttemptStatus
    started_at: datetime
    deadline: datetime | None = Field(description="Timed quizzes: submit before this instant.")
    submitted_at: datetime | None
    graded_at: datetime | None
    # Closed at its deadline without being submitted: graded as it stood.
    timed_out: bool
    time_taken_seconds: int | None
    score: Number | None
    max_score: Number | None
    percentage: Number | None
    is_passed: bool | None


class AttemptOut(AttemptSummary):
    server_now: datetime = Field(description="The server's clock, for a countdown to the deadline.")
    questions: list[AttemptQuestion]
    answers: list[AttemptAnswerOut]
    results: list[AttemptQuestionResult] | None
