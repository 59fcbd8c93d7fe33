"""Enrollments, progress and reviews as the API takes and shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lms.api.pagination import PageQuery
from lms.tables import EnrollmentStatus, LessonStatus

# One progress report covers at most this much study time: a client that was
# offline sends several, a bogus "a week in one call" is refused.
MAX_TIME_DELTA_SECONDS = 4 * 3600
# The longest a lesson can last (LessonIn.duration_seconds).
MAX_LESSON_SECONDS = 7 * 24 * 3600


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    course_id: uuid.UUID


class EnrollmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    student_id: uuid.UUID
    course_id: uuid.UUID
    status: EnrollmentStatus
    progress_percentage: Decimal
    completed_lessons_count: int
    total_lessons_count: int
    total_time_spent_seconds: int
    enrolled_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    last_accessed_at: datetime | None
    certificate_issued_at: datetime | None
    rating: int | None
    review: str | None
    reviewed_at: datetime | None


class CourseSummary(BaseModel):
    id: uuid.UUID
    title: str
    slug: str
    thumbnail_url: str | None
    instructor_id: uuid.UUID


class StudentSummary(BaseModel):
    id: uuid.UUID
    full_name: str
    email: str


class MyEnrollmentOut(EnrollmentOut):
    course: CourseSummary


class CourseEnrollmentOut(EnrollmentOut):
    student: StudentSummary


class LessonProgressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    lesson_id: uuid.UUID
    status: LessonStatus
    started_at: datetime | None
    completed_at: datetime | None
    time_spent_seconds: int
    last_position_seconds: int
    completion_percentage: Decimal
    updated_at: datetime


class EnrollmentDetail(EnrollmentOut):
    course: CourseSummary
    lessons: list[LessonProgressOut] = Field(description="Progress per lesson the student has opened.")


class EnrollmentListQuery(PageQuery):
    status: EnrollmentStatus | None = None


class ProgressIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    time_spent_seconds: int = Field(
        default=0, ge=0, le=MAX_TIME_DELTA_SECONDS, description="Study time since the previous report (a delta)."
    )
    last_position_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_LESSON_SECONDS,
        description="Where playback or reading stands; at most the lesson's duration.",
    )
    completion_percentage: Decimal | None = Field(
        default=None,
        ge=0,
        le=100,
        max_digits=5,
        decimal_places=2,
        description="How much of the lesson is done; never goes down.",
    )


class ProgressOut(BaseModel):
    lesson: LessonProgressOut
    enrollment: EnrollmentOut


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: int = Field(ge=1, le=5)
    review: str | None = Field(default=None, max_length=5000)

    @field_validator("review")
    @classmethod
    def strip(cls, value: str | None) -> str | None:
        value = value.strip() if value is not None else None
        return value or None


class ReviewOut(BaseModel):
    enrollment_id: uuid.UUID
    course_id: uuid.UUID
    rating: int
    review: str | None
    reviewed_at: datetime
    course_rating_average: Decimal | None
    course_rating_count: int


class EnrollmentStats(BaseModel):
    course_id: uuid.UUID
    total_enrollments: int
    by_status: dict[EnrollmentStatus, int]
    completion_rate: Decimal = Field(description="Completed among active and completed enrollments, in percent.")
    average_progress: Decimal = Field(description="Over active and completed enrollments, in percent.")
    average_time_spent_seconds: int
    rating_average: Decimal | None
    rating_count: int
