"""Demo data for a first look (``lms up --demo``, ``lms seed-demo``).

An admin, an instructor and three students with one known password, a
published free course with a lesson of each content type, a published quiz
with a question of each type, some progress, and a live session of the quiz
waiting in its lobby. Everything is written with the domain's own queries, in
one transaction under an advisory lock, and found again by its natural key
(account emails, the course's ``metadata.demo`` marker, the quiz's title):
a second run adds nothing. The one exception: when the demo's live session
has ended (sessions end after a while without players), a new one is opened,
so that there is always a pin to join.

Production refuses it (known passwords); see ``lms.cli``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from lms.auth.passwords import hash_password
from lms.clients import open_database
from lms.config import Settings
from lms.courses import queries as courses
from lms.db import Connection, IntegrityViolation, Row
from lms.enrollments import queries as enrollments
from lms.live import queries as live
from lms.live.routes import new_pin
from lms.quizzes import queries as quizzes
from lms.quizzes.authoring import prepare
from lms.tables import courses as courses_table
from lms.tables import live_sessions
from lms.tables import quizzes as quizzes_table
from lms.users import queries as users

log = logging.getLogger(__name__)

PASSWORD = "lms-demo-password"
COURSE_MARKER = "getting-started"
ADVISORY_LOCK = "lms:demo-seed"


@dataclass(frozen=True)
class Account:
    role: str
    email: str
    full_name: str


ACCOUNTS = (
    Account("admin", "admin@example.com", "Avery Admin"),
    Account("instructor", "instructor@example.com", "Ada Lovelace"),
    Account("student", "ann@example.com", "Ann Archer"),
    Account("student", "ben@example.com", "Ben Baker"),
    Account("student", "cara@example.com", "Cara Cole"),
)

COURSE = {
    "title": "Getting started with the LMS",
    "description": "A tour of the platform: a lesson of each kind, a quiz, and a live quiz to play with friends.",
    "category": "Demo",
    "difficulty_level": "beginner",
    "estimated_duration_minutes": 20,
    "metadata": {"demo": COURSE_MARKER},
}

LESSONS: tuple[dict[str, Any], ...] = (
    {
        "title": "Welcome",
        "content_type": "video",
        "video_url": "https://interactive-examples.mdn.mozilla.net/media/cc0-videos/flower.mp4",
        "duration_seconds": 5,
        "is_free": True,
        "content": "A short clip: video lessons report the position they were left at.",
    },
    {
        "title": "How courses work",
        "content_type": "text",
        "duration_seconds": 180,
        "content": (
            "# How courses work\n\nA course is a list of lessons. Enrolling opens them; each lesson you finish "
            "moves your progress, and finishing them all completes the course.\n"
        ),
    },
    {
        "title": "The course handbook",
        "content_type": "document",
        "duration_seconds": 300,
        "content": "Document lessons point at a file: upload one and link it here.",
    },
    {"title": "Check your understanding", "content_type": "quiz", "duration_seconds": 120},
)

QUIZ_TITLE = "LMS basics"
QUESTIONS: tuple[dict[str, Any], ...] = (
    {
        "question_type": "single_choice",
        "question_text": "What does a student do to open a course's lessons?",
        "options": [{"text": "Enroll"}, {"text": "Email the instructor"}, {"text": "Nothing"}],
        "correct_answer": 0,
        "explanation": "Enrolling in a free course opens every lesson.",
    },
    {
        "question_type": "multiple_choice",
        "question_text": "Which of these are lesson types?",
        "options": [{"text": "Video"}, {"text": "Text"}, {"text": "Spreadsheet"}, {"text": "Quiz"}],
        "correct_answer": [0, 1, 3],
    },
    {
        "question_type": "true_false",
        "question_text": "A live quiz shows the answers' distribution after each question.",
        "options": [],
        "correct_answer": True,
    },
    {
        "question_type": "short_answer",
        "question_text": "How many digits does a live quiz pin have?",
        "options": [],
        "correct_answer": ["6", "six"],
    },
)

# (student email, lessons completed in order, percentage of the next one)
PROGRESS = (("ann@example.com", 2, 50), ("ben@example.com", 1, 40), ("cara@example.com", 0, 0))


@dataclass(frozen=True)
class Demo:
    accounts: tuple[Account, ...]
    password: str
    course_id: uuid.UUID
    course_title: str
    quiz_id: uuid.UUID
    session_id: uuid.UUID
    pin: str
    added: int  # rows this run created (0: it was all there)

    def urls(self, base_url: str) -> dict[str, str]:
        base = base_url.rstrip("/")
        return {
            "dashboard": f"{base}/dashboard/courses/{self.course_id}",
            "play": f"{base}/play?pin={self.pin}",
            "host": f"{base}/host/{self.session_id}",
        }


async def seed_demo(config: Settings) -> Demo:
    db = await open_database(config.database, pool_max=1)
    try:
        async with db.transaction() as conn:
            # Two seeds at once (two `lms up --demo`) take turns.
            await conn.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(ADVISORY_LOCK, 0))))
            return await _seed(conn, config)
    finally:
        await db.close()


async def _seed(conn: Connection, config: Settings) -> Demo:
    added = 0
    people: dict[str, Row] = {}
    for account in ACCOUNTS:
        user = await users.get_user_by_email(conn, account.email)
        if user is None:
            user = await users.create_user(
                conn,
                email=account.email,
                password_hash=await hash_password(PASSWORD, config.auth.bcrypt_rounds),
                full_name=account.full_name,
                role=account.role,
            )
            await users.update_user(conn, user["id"], email_verified_at=func.now())
            added += 1
        people[account.email] = user
    instructor = people["instructor@example.com"]

    course = await conn.fetch_one(
        select(courses_table.c.id, courses_table.c.title).where(
            courses_table.c.metadata["demo"].astext == COURSE_MARKER
        )
    )
    if course is None:
        course = await courses.create_course(conn, instructor_id=instructor["id"], **COURSE)
        added += 1 + await _lessons_and_quiz(conn, course["id"])
        await courses.publish_course(conn, course["id"])
    quiz_id = await conn.fetch_val(
        select(quizzes_table.c.id).where(quizzes_table.c.course_id == course["id"], quizzes_table.c.title == QUIZ_TITLE)
    )
    added += await _progress(conn, course["id"], people)

    session = await conn.fetch_one(
        select(live_sessions).where(live_sessions.c.quiz_id == quiz_id, live_sessions.c.status != "ended")
    )
    if session is None:
        session = await _open_live_session(conn, config, quiz_id=quiz_id, host_id=instructor["id"])
        added += 1
    log.info("demo data: %d row(s) added", added)
    return Demo(
        accounts=ACCOUNTS,
        password=PASSWORD,
        course_id=course["id"],
        course_title=course["title"],
        quiz_id=quiz_id,
        session_id=session["id"],
        pin=session["pin"],
        added=added,
    )


async def _lessons_and_quiz(conn: Connection, course_id: uuid.UUID) -> int:
    lesson_ids = []
    for lesson in LESSONS:
        row = await courses.create_lesson(conn, course_id, None, is_published=True, **lesson)
        lesson_ids.append(row["id"])
    quiz_id = await quizzes.create_quiz(
        conn, course_id=course_id, lesson_id=lesson_ids[-1], title=QUIZ_TITLE, quiz_type="practice",
        description="Four questions, one of each type.", passing_score=50, is_published=True,
    )  # fmt: skip
    for position, question in enumerate(QUESTIONS):
        authored = prepare(question["question_type"], question["options"], question["correct_answer"])
        await quizzes.create_question(
            conn, quiz_id=quiz_id, question_text=question["question_text"], question_type=question["question_type"],
            options=authored.options, correct_answer=authored.correct_answer, explanation=question.get("explanation"),
            points=1, position=position,
        )  # fmt: skip
    return len(LESSONS) + 1 + len(QUESTIONS)


async def _progress(conn: Connection, course_id: uuid.UUID, people: dict[str, Row]) -> int:
    """Enroll the students who are not yet enrolled and record their share of progress."""
    lessons = await courses.list_lessons(conn, course_id, published_only=True)
    added = 0
    for email, completed, partial in PROGRESS:
        student = people[email]
        if await enrollments.find_enrollment(conn, student_id=student["id"], course_id=course_id) is not None:
            continue
        enrollment = await enrollments.enroll(conn, student_id=student["id"], course_id=course_id)
        assert enrollment is not None
        added += 1
        steps = [(lesson, 100) for lesson in lessons[:completed]]
        if partial and completed < len(lessons):
            steps.append((lessons[completed], partial))
        for lesson, percentage in steps:
            seconds = (lesson["duration_seconds"] or 60) * percentage // 100
            await enrollments.add_study_time(conn, enrollment["id"], seconds)
            await enrollments.record_lesson_progress(
                conn, enrollment_id=enrollment["id"], lesson_id=lesson["id"], seconds=seconds,
                position=seconds if lesson["content_type"] == "video" else None, percentage=percentage,
            )  # fmt: skip
            added += 1
        await enrollments.refresh_progress(conn, enrollment_id=enrollment["id"])
    return added


async def _open_live_session(conn: Connection, config: Settings, *, quiz_id: uuid.UUID, host_id: uuid.UUID) -> Row:
    """A lobby anyone may join with a nickname; a pin taken by another open session is drawn again."""
    while True:
        try:
            async with conn.transaction():
                return await live.insert_session(
                    conn, quiz_id=quiz_id, host_id=host_id, pin=new_pin(), allow_guests=True,
                    question_time_limit_seconds=config.live.default_question_time_limit_seconds,
                    total_questions=len(QUESTIONS),
                )  # fmt: skip
        except IntegrityViolation as err:
            if err.constraint != live.OPEN_PIN_INDEX:
                raise
