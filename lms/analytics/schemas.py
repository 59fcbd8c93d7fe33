"""Analytics as the API shows it. Percentages are decimal strings with two decimals, rounded half up."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lms.analytics.window import WindowQuery
from lms.api.pagination import PageQuery
from lms.enrollments.schemas import CourseSummary, EnrollmentStats
from lms.payments.schemas import RevenueByCurrency
from lms.tables import EnrollmentStatus


class WindowOut(BaseModel):
    """The zone and local days the series cover."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)
    timezone: str
    from_: date = Field(alias="from")
    to: date


class Bucket(BaseModel):
    lower: int = Field(description="Included.")
    upper: int = Field(description="Excluded, except 100 in the last bucket.")
    count: int


class DayCount(BaseModel):
    date: date
    count: int


class DaySeconds(BaseModel):
    date: date
    seconds: int


# --- a course ------------------------------------------------------------------


class CourseAnalyticsQuery(WindowQuery):
    format: Literal["json", "csv"] = Field(default="json", description="`csv`: one of the tables, for spreadsheets.")
    table: Literal["lessons", "students"] = Field(
        default="lessons", description="With `format=csv`: one row per lesson, or per enrollment."
    )


class LessonFigures(BaseModel):
    lesson_id: uuid.UUID
    title: str
    order: int
    started_count: int = Field(description="Studying enrollments that opened the lesson.")
    completed_count: int = Field(description="Studying enrollments that completed it.")
    completion_rate: Decimal = Field(description="completed_count over studying enrollments, percent.")
    average_time_spent_seconds: int = Field(description="Over the enrollments that opened it.")


class QuizFigures(BaseModel):
    quiz_id: uuid.UUID
    title: str
    attempts: int = Field(description="Graded attempts (every attempt counts, not only each student's best).")
    average_percentage: Decimal
    pass_rate: Decimal
    distribution: list[Bucket] = Field(description="Graded attempts per tenth of the score.")


class CourseAnalytics(EnrollmentStats, WindowOut):
    title: str
    progress_distribution: list[Bucket] = Field(description="Studying enrollments per tenth of progress.")
    lessons: list[LessonFigures]
    quiz_scores: list[QuizFigures]
    enrollments_per_day: list[DayCount] = Field(description="By local day of enrollment, every status.")
    revenue: list[RevenueByCurrency] = Field(description="All time, per currency (never converted).")
    as_of: datetime = Field(description="When these figures were read; they include every committed change.")


# --- a student -----------------------------------------------------------------


class MyProgressQuery(PageQuery):
    status: EnrollmentStatus | None = None


class EnrollmentProgress(BaseModel):
    enrollment_id: uuid.UUID
    course: CourseSummary
    status: EnrollmentStatus
    progress_percentage: Decimal
    completed_lessons_count: int
    total_lessons_count: int
    total_time_spent_seconds: int
    enrolled_at: datetime
    completed_at: datetime | None
    last_accessed_at: datetime | None = Field(description="Last activity.")
    quiz_attempts: int = Field(description="Graded attempts in this course.")
    quiz_average_percentage: Decimal | None = Field(description="Over those attempts; null without any.")


class QuizAttemptSummary(BaseModel):
    attempt_id: uuid.UUID
    quiz_id: uuid.UUID
    quiz_title: str
    course_id: uuid.UUID
    attempt_number: int
    percentage: Decimal
    is_passed: bool
    graded_at: datetime | None


class QuizHistory(BaseModel):
    attempts: int
    passed: int
    average_percentage: Decimal | None
    recent: list[QuizAttemptSummary] = Field(description="The last ten graded attempts, newest first.")


class CertificateSummary(BaseModel):
    id: uuid.UUID
    certificate_number: str
    course_id: uuid.UUID
    course_title: str
    status: str
    completion_date: datetime
    issued_at: datetime | None
    is_revoked: bool


class Streak(BaseModel):
    current_days: int = Field(description="Days in a row with progress, ending today or yesterday.")
    longest_days: int
    last_active_date: date | None


class MyTotals(BaseModel):
    enrollments: int
    by_status: dict[EnrollmentStatus, int]
    lessons_completed: int
    time_spent_seconds: int
    average_progress: Decimal = Field(description="Over active and completed enrollments.")


class MyDashboard(WindowOut):
    totals: MyTotals
    continue_learning: list[EnrollmentProgress] = Field(description="Active enrollments, most recent activity first.")
    quizzes: QuizHistory
    certificates: list[CertificateSummary]
    streak: Streak
    time_spent_per_day: list[DaySeconds]


# --- an instructor and the platform --------------------------------------------


class InstructorCourse(BaseModel):
    course_id: uuid.UUID
    title: str
    slug: str
    is_published: bool
    total_enrollments: int
    by_status: dict[EnrollmentStatus, int]
    completion_rate: Decimal
    average_progress: Decimal
    rating_average: Decimal | None
    rating_count: int
    revenue: list[RevenueByCurrency]


class InstructorTotals(BaseModel):
    courses: int
    published_courses: int
    enrollments: int
    completed: int
    completion_rate: Decimal = Field(description="Completed over active and completed enrollments of all courses.")
    rating_average: Decimal | None = Field(description="Over every rating of every course.")
    rating_count: int
    revenue: list[RevenueByCurrency]


class InstructorOverview(BaseModel):
    instructor_id: uuid.UUID
    full_name: str
    courses: list[InstructorCourse] = Field(description="Newest first.")
    distinct_students: int = Field(description="Students with an enrollment (any status) in any of the courses.")
    totals: InstructorTotals


class ActiveUsers(BaseModel):
    last_7_days: int
    last_30_days: int


class LiveSessionsRun(BaseModel):
    total: int = Field(description="Sessions that started, ever.")
    in_range: int = Field(description="Sessions that started within the window's days.")


class SystemOverview(WindowOut):
    as_of: datetime = Field(description="When this snapshot was computed; every figure is exact as of then.")
    max_age_seconds: float = Field(description="A snapshot older than this is recomputed (analytics settings).")
    users_by_role: dict[Literal["admin", "instructor", "student"], int]
    total_users: int
    new_users_per_day: list[DayCount]
    enrollments_by_status: dict[EnrollmentStatus, int]
    total_enrollments: int
    enrollments_per_day: list[DayCount]
    revenue_by_currency: list[RevenueByCurrency] = Field(description="Collected within the window's days.")
    active_users: ActiveUsers = Field(
        description="Users who signed in or recorded progress in the last 7 and 30 days (× 24 h) before `as_of`."
    )
    live_sessions_run: LiveSessionsRun
