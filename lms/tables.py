"""Every table of the platform, on one MetaData with a naming convention.

Alembic autogenerates migrations from this module. Enumerations are text
columns with CHECK constraints (adding a value is a one-line migration, and
raw rows stay readable); money is NUMERIC(19,4) beside its ISO 4217 currency
code (four decimals hold every currency's minor unit: JPY 0, USD 2, KWD 3,
CLF 4; see lms/money.py).
"""

from __future__ import annotations

import uuid
from typing import Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Each enumeration once: the Literal type the API models use, and its values for the CHECK constraints.
RoleName = Literal["admin", "instructor", "student"]
Difficulty = Literal["beginner", "intermediate", "advanced"]
ContentType = Literal["video", "text", "document", "quiz"]
EnrollmentStatus = Literal["active", "completed", "dropped", "expired", "pending_payment"]
LessonStatus = Literal["not_started", "in_progress", "completed"]
QuizType = Literal["practice", "graded"]
QuestionType = Literal[
    "single_choice", "multiple_choice", "true_false", "short_answer", "slider", "ordering", "poll", "word_cloud"
]
AttemptStatus = Literal["in_progress", "submitted", "graded"]
LiveSessionStatus = Literal["lobby", "running", "ended"]
ScoringMode = Literal["speed", "kahoot_like", "accuracy"]
GatewayName = Literal["stripe", "paymob", "myfatoorah"]
PaymentStatus = Literal["pending", "completed", "failed", "refunded", "expired"]
SubscriptionStatus = Literal["pending", "active", "cancelled", "expired"]
CertificateStatus = Literal["pending", "issued", "failed"]
StorageProvider = Literal["local", "s3"]
EmailStatus = Literal["queued", "sent", "failed"]

ROLES: tuple[str, ...] = get_args(RoleName)
DIFFICULTY_LEVELS: tuple[str, ...] = get_args(Difficulty)
CONTENT_TYPES: tuple[str, ...] = get_args(ContentType)
ENROLLMENT_STATUSES: tuple[str, ...] = get_args(EnrollmentStatus)
LESSON_PROGRESS_STATUSES: tuple[str, ...] = get_args(LessonStatus)
QUIZ_TYPES: tuple[str, ...] = get_args(QuizType)
QUESTION_TYPES: tuple[str, ...] = get_args(QuestionType)
ATTEMPT_STATUSES: tuple[str, ...] = get_args(AttemptStatus)
LIVE_SESSION_STATUSES: tuple[str, ...] = get_args(LiveSessionStatus)
SCORING_MODES: tuple[str, ...] = get_args(ScoringMode)
GATEWAYS: tuple[str, ...] = get_args(GatewayName)
PAYMENT_STATUSES: tuple[str, ...] = get_args(PaymentStatus)
SUBSCRIPTION_STATUSES: tuple[str, ...] = get_args(SubscriptionStatus)
CERTIFICATE_STATUSES: tuple[str, ...] = get_args(CertificateStatus)
STORAGE_PROVIDERS: tuple[str, ...] = get_args(StorageProvider)
EMAIL_STATUSES: tuple[str, ...] = get_args(EmailStatus)
MONEY_DIGITS, MONEY_SCALE = 19, 4


def one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    condition = f"{column} IN ({listed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return CheckConstraint(condition, name=f"{column}_valid")


def pk() -> Column[uuid.UUID]:
    # Python-side default: the id is known before the INSERT returns.
    return Column("id", UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def created_at() -> Column:  # type: ignore[type-arg]
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def updated_at() -> Column:  # type: ignore[type-arg]
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now(), onupdate=func.now())


def ts(name: str, nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(name, DateTime(timezone=True), nullable=nullable)


def fk(name: str, target: str, *, ondelete: str = "CASCADE", nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, UUID(as_uuid=True), ForeignKey(target, ondelete=ondelete), nullable=nullable)


def money(name: str, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, Numeric(MONEY_DIGITS, MONEY_SCALE), nullable=nullable)


def currency(name: str = "currency", nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(name, String(3), nullable=nullable)


users = Table(
    "users",
    metadata,
    pk(),
    Column("email", String(255), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("full_name", String(200), nullable=False),
    Column("role", String(20), nullable=False, server_default="student"),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("mfa_enabled", Boolean, nullable=False, server_default=text("false")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    created_at(),
    updated_at(),
    ts("last_login_at"),
    ts("email_verified_at"),
    # Tokens issued before this instant are refused (password change/reset).
    ts("password_changed_at"),
    one_of("role", ROLES),
    CheckConstraint("email = lower(email)", name="email_lowercase"),
    Index(None, "role", "created_at"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    pk(),
    fk("user_id", "users.id"),
    # Rotation keeps a family; presenting a rotated token revokes the family.
    Column("family_id", UUID(as_uuid=True), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    created_at(),
    ts("expires_at", nullable=False),
    ts("rotated_at"),
    ts("revoked_at"),
    Column("user_agent", String(300)),
    Column("ip_address", String(64)),
    Index(None, "user_id", "revoked_at"),
    Index(None, "family_id"),
    Index(None, "expires_at"),
)

courses = Table(
    "courses",
    metadata,
    pk(),
    Column("title", String(200), nullable=False),
    Column("slug", String(220), nullable=False, unique=True),
    Column("description", Text),
    fk("instructor_id", "users.id", ondelete="RESTRICT"),
    Column("category", String(100)),
    Column("difficulty_level", String(20)),
    Column("is_published", Boolean, nullable=False, server_default=text("false")),
    ts("published_at"),
    money("price_amount", nullable=True),
    currency("price_currency", nullable=True),
    Column("thumbnail_url", String(1000)),
    Column("estimated_duration_minutes", Integer),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("rating_average", Numeric(3, 2)),
    Column("rating_count", Integer, nullable=False, server_default="0"),
    Column(
        "search_vector",
        TSVECTOR,
        Computed("to_tsvector('simple', coalesce(title, '') || ' ' || coalesce(description, ''))", persisted=True),
    ),
    created_at(),
    updated_at(),
    one_of("difficulty_level", DIFFICULTY_LEVELS, nullable=True),
    CheckConstraint("price_amount IS NULL OR price_amount >= 0", name="price_not_negative"),
    CheckConstraint("(price_amount IS NULL) = (price_currency IS NULL)", name="price_has_currency"),
    CheckConstraint(
        "estimated_duration_minutes IS NULL OR estimated_duration_minutes >= 0", name="duration_not_negative"
    ),
    CheckConstraint("rating_count >= 0", name="rating_count_not_negative"),
    Index(None, "is_published", "created_at"),
    Index(None, "instructor_id", "created_at"),
    Index(None, "category"),
    Index(None, "difficulty_level"),
    Index("ix_courses_search_vector", "search_vector", postgresql_using="gin"),
    # The catalogue's first pages (newest published first) without sorting every course.
    Index("ix_courses_published_catalogue", "published_at", "id", postgresql_where=text("is_published")),
)

lessons = Table(
    "lessons",
    metadata,
    pk(),
    fk("course_id", "courses.id"),
    Column("title", String(200), nullable=False),
    Column("slug", String(220), nullable=False),
    Column("content_type", String(20), nullable=False),
    Column("content", Text),
    Column("video_url", String(1000)),
    # An uploaded video or document; whoever sees the lesson's content may download it.
    fk("file_id", "uploaded_files.id", ondelete="SET NULL", nullable=True),
    Column("duration_seconds", Integer),
    Column("position", Integer, nullable=False),
    Column("is_free", Boolean, nullable=False, server_default=text("false")),
    Column("is_published", Boolean, nullable=False, server_default=text("false")),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    created_at(),
    updated_at(),
    one_of("content_type", CONTENT_TYPES),
    CheckConstraint("duration_seconds IS NULL OR duration_seconds >= 0", name="duration_not_negative"),
    CheckConstraint("position >= 0", name="position_not_negative"),
    # Deferred so that a reorder can swap positions inside one transaction.
    UniqueConstraint("course_id", "position", deferrable=True, initially="DEFERRED"),
    UniqueConstraint("course_id", "slug"),
    # Counting a course's published lessons (every enrollment and progress
    # report) from the index alone.
    Index("ix_lessons_course_id_published", "course_id", postgresql_where=text("is_published")),
    Index(None, "file_id", postgresql_where=text("file_id IS NOT NULL")),
)

enrollments = Table(
    "enrollments",
    metadata,
    pk(),
    fk("student_id", "users.id"),
    fk("course_id", "courses.id"),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("progress_percentage", Numeric(5, 2), nullable=False, server_default="0"),
    Column("completed_lessons_count", Integer, nullable=False, server_default="0"),
    Column("total_lessons_count", Integer, nullable=False, server_default="0"),
    Column("total_time_spent_seconds", BigInteger, nullable=False, server_default="0"),
    Column("enrolled_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ts("started_at"),
    ts("completed_at"),
    ts("last_accessed_at"),
    ts("certificate_issued_at"),
    Column("rating", SmallInteger),
    Column("review", Text),
    ts("reviewed_at"),
    updated_at(),
    one_of("status", ENROLLMENT_STATUSES),
    CheckConstraint("progress_percentage BETWEEN 0 AND 100", name="progress_range"),
    CheckConstraint("completed_lessons_count >= 0 AND total_lessons_count >= 0", name="counts_not_negative"),
    CheckConstraint("total_time_spent_seconds >= 0", name="time_not_negative"),
    CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
    UniqueConstraint("student_id", "course_id"),
    Index(None, "student_id", "enrolled_at"),
    Index(None, "course_id", "enrolled_at"),
    Index(None, "course_id", "status"),
)

lesson_progress = Table(
    "lesson_progress",
    metadata,
    pk(),
    fk("enrollment_id", "enrollments.id"),
    fk("lesson_id", "lessons.id"),
    Column("status", String(20), nullable=False, server_default="not_started"),
    ts("started_at"),
    ts("completed_at"),
    Column("time_spent_seconds", BigInteger, nullable=False, server_default="0"),
    Column("last_position_seconds", Integer, nullable=False, server_default="0"),
    Column("completion_percentage", Numeric(5, 2), nullable=False, server_default="0"),
    Column("attempts_count", Integer, nullable=False, server_default="0"),
    updated_at(),
    one_of("status", LESSON_PROGRESS_STATUSES),
    CheckConstraint("completion_percentage BETWEEN 0 AND 100", name="completion_range"),
    CheckConstraint("time_spent_seconds >= 0 AND last_position_seconds >= 0", name="times_not_negative"),
    UniqueConstraint("enrollment_id", "lesson_id"),
    Index(None, "lesson_id", "status"),
)

quizzes = Table(
    "quizzes",
    metadata,
    pk(),
    fk("course_id", "courses.id"),
    fk("lesson_id", "lessons.id", ondelete="SET NULL", nullable=True),
    Column("title", String(200), nullable=False),
    Column("description", Text),
    Column("quiz_type", String(20), nullable=False, server_default="practice"),
    Column("passing_score", Numeric(5, 2), nullable=False, server_default="70"),
    Column("time_limit_seconds", Integer),
    Column("max_attempts", Integer),
    Column("shuffle_questions", Boolean, nullable=False, server_default=text("false")),
    Column("shuffle_options", Boolean, nullable=False, server_default=text("false")),
    Column("show_correct_answers", Boolean, nullable=False, server_default=text("true")),
    # Played only in live sessions: no self-paced attempts (their results would show the answers).
    Column("live_only", Boolean, nullable=False, server_default=text("false")),
    Column("is_published", Boolean, nullable=False, server_default=text("false")),
    created_at(),
    updated_at(),
    one_of("quiz_type", QUIZ_TYPES),
    CheckConstraint("passing_score BETWEEN 0 AND 100", name="passing_score_range"),
    CheckConstraint("time_limit_seconds IS NULL OR time_limit_seconds > 0", name="time_limit_positive"),
    CheckConstraint("max_attempts IS NULL OR max_attempts > 0", name="max_attempts_positive"),
    Index(None, "course_id", "is_published"),
    Index(None, "lesson_id"),
)

quiz_questions = Table(
    "quiz_questions",
    metadata,
    pk(),
    fk("quiz_id", "quizzes.id"),
    Column("question_text", Text, nullable=False),
    Column("question_type", String(20), nullable=False),
    Column("options", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("correct_answer", JSONB),  # NULL: a poll or word cloud, nothing to get right
    Column("points", Numeric(8, 2), nullable=False, server_default="1"),
    Column("explanation", Text),
    Column("position", Integer, nullable=False, server_default="0"),
    # Per type (lms.quizzes.question_types): a slider's range and tolerance, ordering's partial credit.
    Column("settings", JSONB),
    fk("image_file_id", "uploaded_files.id", ondelete="SET NULL", nullable=True),
    Column("video", JSONB),  # {url, start_seconds, end_seconds}
    Column("time_limit_seconds", Integer),  # live sessions: instead of the session's own
    # Live sessions award this question twice its points (lms.live.scoring).
    Column("double_points", Boolean, nullable=False, server_default=text("false")),
    created_at(),
    updated_at(),
    one_of("question_type", QUESTION_TYPES),
    CheckConstraint("points > 0", name="points_positive"),
    CheckConstraint("time_limit_seconds BETWEEN 5 AND 600", name="time_limit_seconds_range"),
    Index(None, "quiz_id", "position"),
)

quiz_attempts = Table(
    "quiz_attempts",
    metadata,
    pk(),
    fk("enrollment_id", "enrollments.id"),
    fk("quiz_id", "quizzes.id"),
    fk("student_id", "users.id"),
    Column("attempt_number", Integer, nullable=False),
    Column("status", String(20), nullable=False, server_default="in_progress"),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ts("deadline"),
    ts("submitted_at"),
    ts("graded_at"),
    Column("score", Numeric(8, 2)),
    Column("max_score", Numeric(8, 2)),
    Column("percentage", Numeric(5, 2)),
    Column("is_passed", Boolean),
    Column("time_taken_seconds", Integer),
    Column("answers", JSONB),
    Column("results", JSONB),
    # The order this attempt was shown (question ids, option ids per question).
    Column("presentation", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    one_of("status", ATTEMPT_STATUSES),
    CheckConstraint("attempt_number >= 1", name="attempt_number_positive"),
    CheckConstraint("percentage IS NULL OR percentage BETWEEN 0 AND 100", name="percentage_range"),
    UniqueConstraint("enrollment_id", "quiz_id", "attempt_number"),
    Index(None, "enrollment_id", "status", "submitted_at"),
    Index(None, "quiz_id", "status", "submitted_at"),
    Index(None, "student_id", "quiz_id"),
    Index("ix_quiz_attempts_open_deadline", "deadline", postgresql_where=text("status = 'in_progress'")),
)

live_sessions = Table(
    "live_sessions",
    metadata,
    pk(),
    fk("quiz_id", "quizzes.id"),
    fk("host_id", "users.id"),
    Column("pin", String(6), nullable=False),
    Column("status", String(20), nullable=False, server_default="lobby"),
    Column("allow_guests", Boolean, nullable=False, server_default=text("false")),
    Column("question_time_limit_seconds", Integer, nullable=False, server_default="20"),
    Column("total_questions", Integer, nullable=False, server_default="0"),
    Column("results", JSONB),
    # How points are awarded (lms.live.scoring); streak_bonus_points 0: no streak bonus.
    Column("scoring", String(20), nullable=False, server_default="speed"),
    Column("streak_bonus_points", Integer, nullable=False, server_default="0"),
    # Team mode: the number of teams (NULL: no teams).
    Column("team_count", Integer),
    created_at(),
    ts("started_at"),
    ts("ended_at"),
    one_of("status", LIVE_SESSION_STATUSES),
    one_of("scoring", SCORING_MODES),
    CheckConstraint("pin ~ '^[0-9]{6}$'", name="pin_six_digits"),
    CheckConstraint("question_time_limit_seconds BETWEEN 5 AND 600", name="time_limit_range"),
    CheckConstraint("streak_bonus_points BETWEEN 0 AND 1000", name="streak_bonus_range"),
    CheckConstraint("team_count IS NULL OR team_count BETWEEN 2 AND 10", name="team_count_range"),
    # A pin is unique among sessions that are still open.
    Index("uq_live_sessions_open_pin", "pin", unique=True, postgresql_where=text("status <> 'ended'")),
    Index(None, "quiz_id", "created_at"),
)

live_players = Table(
    "live_players",
    metadata,
    pk(),
    fk("session_id", "live_sessions.id"),
    fk("user_id", "users.id", ondelete="SET NULL", nullable=True),
    Column("nickname", String(24), nullable=False),
    Column("score", Integer, nullable=False, server_default="0"),
    Column("rank", Integer),
    Column("correct_count", Integer, nullable=False, server_default="0"),
    Column("joined_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ts("kicked_at"),
    # 1..team_count in team mode, else NULL.
    Column("team", Integer),
    Index("uq_live_players_session_nickname", "session_id", func.lower(text("nickname")), unique=True),
    Index(None, "user_id"),
)

live_answers = Table(
    "live_answers",
    metadata,
    pk(),
    fk("session_id", "live_sessions.id"),
    fk("player_id", "live_players.id"),
    fk("question_id", "quiz_questions.id", ondelete="SET NULL", nullable=True),
    Column("question_index", Integer, nullable=False),
    Column("answer", JSONB),
    Column("is_correct", Boolean, nullable=False),
    Column("points", Integer, nullable=False, server_default="0"),
    Column("response_time_ms", Integer),
    ts("answered_at", nullable=False),
    CheckConstraint("question_index >= 0", name="question_index_not_negative"),
    CheckConstraint("points >= 0", name="points_not_negative"),
    UniqueConstraint("player_id", "question_index"),
    Index(None, "session_id", "question_index"),
)

uploaded_files = Table(
    "uploaded_files",
    metadata,
    pk(),
    fk("uploader_id", "users.id"),
    Column("filename", String(255), nullable=False),
    Column("original_filename", String(255), nullable=False),
    Column("storage_provider", String(10), nullable=False),
    Column("storage_path", String(1000), nullable=False),
    Column("folder", String(100)),
    Column("file_type", String(20)),
    Column("mime_type", String(100)),
    Column("file_size", BigInteger, nullable=False),
    Column("checksum_sha256", String(64)),
    Column("is_public", Boolean, nullable=False, server_default=text("false")),
    created_at(),
    one_of("storage_provider", STORAGE_PROVIDERS),
    CheckConstraint("file_size >= 0", name="size_not_negative"),
    Index(None, "uploader_id", "created_at"),
)

certificates = Table(
    "certificates",
    metadata,
    pk(),
    Column(
        "enrollment_id",
        UUID(as_uuid=True),
        ForeignKey("enrollments.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    fk("student_id", "users.id"),
    fk("course_id", "courses.id"),
    Column("certificate_number", String(40), nullable=False, unique=True),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("pdf_path", String(1000)),
    ts("completion_date", nullable=False),
    ts("issued_at"),
    Column("is_revoked", Boolean, nullable=False, server_default=text("false")),
    ts("revoked_at"),
    Column("revocation_reason", Text),
    Column("error", Text),
    created_at(),
    one_of("status", CERTIFICATE_STATUSES),
    Index(None, "student_id", "created_at"),
    Index(None, "course_id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    pk(),
    fk("user_id", "users.id"),
    Column("plan_name", String(100), nullable=False),
    money("amount"),
    currency(),
    Column("gateway", String(20), nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),
    ts("start_date"),
    ts("end_date"),
    ts("cancelled_at"),
    Column("gateway_subscription_id", String(255)),
    # The gateway's checkout for the first period (a Stripe Checkout Session).
    Column("gateway_checkout_id", String(255)),
    Column("plan_interval", String(10), nullable=False, server_default="month"),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    created_at(),
    updated_at(),
    one_of("gateway", GATEWAYS),
    one_of("status", SUBSCRIPTION_STATUSES),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("plan_interval IN ('day', 'week', 'month', 'year')", name="plan_interval_valid"),
    UniqueConstraint("gateway", "gateway_subscription_id"),
    Index(None, "user_id", "status"),
    # One open (pending or active) subscription per user: a second request returns it.
    Index(
        "uq_subscriptions_open_user", "user_id", unique=True, postgresql_where=text("status IN ('pending', 'active')")
    ),
)

payments = Table(
    "payments",
    metadata,
    pk(),
    fk("user_id", "users.id", ondelete="RESTRICT"),
    fk("course_id", "courses.id", ondelete="SET NULL", nullable=True),
    fk("enrollment_id", "enrollments.id", ondelete="SET NULL", nullable=True),
    fk("subscription_id", "subscriptions.id", ondelete="SET NULL", nullable=True),
    money("amount"),
    currency(),
    Column("gateway", String(20), nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),
    # What the payment is known by at the gateway: the Stripe Checkout Session
    # (or invoice, for a subscription period), the Paymob order, the MyFatoorah invoice.
    Column("gateway_reference", String(255)),
    # The money movement itself, once paid: Stripe PaymentIntent, Paymob
    # transaction, MyFatoorah PaymentId (refunds and refund events use it).
    Column("gateway_transaction_id", String(255)),
    Column("payment_method", String(50)),
    Column("failure_reason", Text),
    # Why an admin should look (an event whose amount or currency differs).
    Column("flagged_reason", Text),
    Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    money("refunded_amount", nullable=True),
    created_at(),
    updated_at(),
    ts("completed_at"),
    ts("refunded_at"),
    # Set while a refund is being asked of the gateway: a second request is a conflict.
    ts("refund_started_at"),
    # The status whose side effects (receipt, notifications) were delivered:
    # a settlement re-run after a crash delivers what is missing, once.
    Column("effects_status", String(20)),
    one_of("gateway", GATEWAYS),
    one_of("status", PAYMENT_STATUSES),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint(
        "refunded_amount IS NULL OR (refunded_amount > 0 AND refunded_amount <= amount)", name="refund_in_range"
    ),
    UniqueConstraint("gateway", "gateway_reference"),
    Index(None, "user_id", "created_at"),
    Index(None, "status", "created_at"),
    Index(None, "course_id", "status"),
    Index(None, "gateway", "gateway_transaction_id"),
    Index(None, "subscription_id"),
    # One pending checkout per student and course: a second checkout returns it.
    Index(
        "uq_payments_pending_course",
        "user_id",
        "course_id",
        unique=True,
        postgresql_where=text("status = 'pending' AND course_id IS NOT NULL"),
    ),
    Index("ix_payments_flagged", "created_at", postgresql_where=text("flagged_reason IS NOT NULL")),
)

payment_events = Table(
    "payment_events",
    metadata,
    pk(),
    Column("gateway", String(20), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("event_type", String(100)),
    Column("payload", JSONB, nullable=False),
    fk("payment_id", "payments.id", ondelete="SET NULL", nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ts("processed_at"),
    Column("error", Text),
    one_of("gateway", GATEWAYS),
    # A gateway retries; each event is applied once.
    UniqueConstraint("gateway", "event_id"),
    Index("ix_payment_events_unprocessed", "received_at", postgresql_where=text("processed_at IS NULL")),
)

email_log = Table(
    "email_log",
    metadata,
    pk(),
    Column("message_id", String(255), nullable=False, unique=True),
    fk("user_id", "users.id", ondelete="SET NULL", nullable=True),
    Column("to_address", String(255), nullable=False),
    Column("template", String(50), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("status", String(20), nullable=False, server_default="queued"),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    created_at(),
    ts("sent_at"),
    one_of("status", EMAIL_STATUSES),
    Index(None, "to_address", "created_at"),
    Index(None, "template", "created_at"),
)

DEAD_LETTER_REASONS = ("exhausted", "permanent")

job_dead_letters = Table(
    "job_dead_letters",
    metadata,
    pk(),
    # Retries keep the task id: one record per task however often it ran.
    Column("task_id", String(64), nullable=False, unique=True),
    Column("task_name", String(200), nullable=False),
    Column("queue", String(50), nullable=False),
    Column("args", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("kwargs", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # exhausted: a transient error outlasted the retries; permanent: an error
    # that retrying cannot fix (bad input, unknown template, a bug).
    Column("reason", String(20), nullable=False),
    Column("error_type", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    created_at(),
    ts("requeued_at"),
    one_of("reason", DEAD_LETTER_REASONS),
    Index(None, "task_name", "created_at"),
    Index(None, "created_at"),
)

# --- analytics aggregates -----------------------------------------------------
# Kept current inside the writing transaction by PostgreSQL triggers
# (migrations/versions/0007_analytics.py), whichever code path writes the rows
# they sum: the API, the jobs, the payments settlement, a test builder. A stats
# row lives as long as its course, lesson or quiz (created by a trigger,
# removed by the cascade); triggers only UPDATE them, so a cascade in progress
# never re-creates one. lms/analytics/README.md lists what each figure counts.

course_stats = Table(
    "course_stats",
    metadata,
    Column("course_id", UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True),
    *(Column(status, Integer, nullable=False, server_default="0") for status in ENROLLMENT_STATUSES),
    # Over studying (active and completed) enrollments.
    Column("progress_sum", Numeric(16, 2), nullable=False, server_default="0"),
    Column("time_spent_sum", BigInteger, nullable=False, server_default="0"),
)

# Studying enrollments per tenth of progress: bucket 0 is [0, 10), bucket 9 is [90, 100].
course_progress_buckets = Table(
    "course_progress_buckets",
    metadata,
    Column("course_id", UUID(as_uuid=True), ForeignKey("courses.id", ondelete="CASCADE"), primary_key=True),
    Column("bucket", SmallInteger, primary_key=True),
    Column("enrollments", Integer, nullable=False, server_default="0"),
    CheckConstraint("bucket BETWEEN 0 AND 9", name="bucket_range"),
)

# Lesson progress rows of studying enrollments.
lesson_stats = Table(
    "lesson_stats",
    metadata,
    Column("lesson_id", UUID(as_uuid=True), ForeignKey("lessons.id", ondelete="CASCADE"), primary_key=True),
    Column("started", Integer, nullable=False, server_default="0"),
    Column("completed", Integer, nullable=False, server_default="0"),
    Column("time_spent_sum", BigInteger, nullable=False, server_default="0"),
)

# Graded attempts.
quiz_stats = Table(
    "quiz_stats",
    metadata,
    Column("quiz_id", UUID(as_uuid=True), ForeignKey("quizzes.id", ondelete="CASCADE"), primary_key=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("passed", Integer, nullable=False, server_default="0"),
    Column("percentage_sum", Numeric(16, 2), nullable=False, server_default="0"),
)

quiz_score_buckets = Table(
    "quiz_score_buckets",
    metadata,
    Column("quiz_id", UUID(as_uuid=True), ForeignKey("quizzes.id", ondelete="CASCADE"), primary_key=True),
    Column("bucket", SmallInteger, primary_key=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    CheckConstraint("bucket BETWEEN 0 AND 9", name="bucket_range"),
)

# A student's study per quarter hour (UTC): every zone in use is a whole
# number of quarter hours from UTC, so local days are sums of these.
study_activity = Table(
    "study_activity",
    metadata,
    Column("student_id", UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("seconds", BigInteger, nullable=False, server_default="0"),
    Column("reports", Integer, nullable=False, server_default="0"),
    Column("lessons_completed", Integer, nullable=False, server_default="0"),
    # The platform's active learners over a window.
    Index(None, "bucket"),
)

# -- Assigned challenges (issue 18): a live quiz played alone, with the live timers and scoring --

live_challenges = Table(
    "live_challenges",
    metadata,
    pk(),
    fk("quiz_id", "quizzes.id"),
    fk("created_by", "users.id"),
    Column("question_time_limit_seconds", Integer, nullable=False),
    ts("deadline", nullable=False),
    created_at(),
    CheckConstraint("question_time_limit_seconds BETWEEN 5 AND 600", name="challenge_time_limit_range"),
    Index(None, "quiz_id", "created_at"),
)

# One student's play of a challenge: the question it is on and when the server started it.
challenge_plays = Table(
    "challenge_plays",
    metadata,
    pk(),
    fk("challenge_id", "live_challenges.id"),
    fk("user_id", "users.id"),
    Column("current_index", Integer, nullable=False, server_default="0"),
    ts("question_started_at", nullable=False),
    Column("score", Integer, nullable=False, server_default="0"),
    Column("correct_count", Integer, nullable=False, server_default="0"),
    created_at(),
    ts("finished_at"),
    UniqueConstraint("challenge_id", "user_id"),
)

challenge_answers = Table(
    "challenge_answers",
    metadata,
    Column("play_id", UUID(as_uuid=True), ForeignKey("challenge_plays.id", ondelete="CASCADE"), primary_key=True),
    Column("question_index", Integer, primary_key=True),
    fk("question_id", "quiz_questions.id", ondelete="SET NULL", nullable=True),
    Column("answer", JSONB),
    Column("correct", Boolean, nullable=False),
    Column("points", Integer, nullable=False),
    Column("elapsed_ms", Integer),
    ts("answered_at", nullable=False),
)
