"""The stats rows equal a recount from the tables after any mix of writes, concurrent ones included."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from lms.db import Database, Row
from lms.enrollments.queries import report_progress
from lms.tables import enrollments, lesson_progress, lessons, quiz_attempts
from tests.builders import make_course, make_enrollment, make_quiz, make_user

STATUSES = ("active", "completed", "dropped", "expired", "pending_payment")

RECOUNT = """
SELECT 'course' AS kind, c.id::text AS key, ARRAY[
         count(e.id) FILTER (WHERE e.status = 'active'), count(e.id) FILTER (WHERE e.status = 'completed'),
         count(e.id) FILTER (WHERE e.status = 'dropped'), count(e.id) FILTER (WHERE e.status = 'expired'),
         count(e.id) FILTER (WHERE e.status = 'pending_payment'),
         coalesce(sum(e.progress_percentage) FILTER (WHERE e.status IN ('active', 'completed')), 0),
         coalesce(sum(e.total_time_spent_seconds) FILTER (WHERE e.status IN ('active', 'completed')), 0)
       ]::numeric[] AS v
FROM courses c LEFT JOIN enrollments e ON e.course_id = c.id GROUP BY c.id
UNION ALL
SELECT 'bucket', c.id || ':' || b, ARRAY[(SELECT count(*) FROM enrollments e WHERE e.course_id = c.id
       AND e.status IN ('active', 'completed') AND least(floor(e.progress_percentage / 10), 9) = b)]::numeric[]
FROM courses c CROSS JOIN generate_series(0, 9) b
UNION ALL
SELECT 'lesson', l.id::text, ARRAY[count(lp.id), count(lp.id) FILTER (WHERE lp.status = 'completed'),
       coalesce(sum(lp.time_spent_seconds), 0)]::numeric[]
FROM lessons l LEFT JOIN (lesson_progress lp JOIN enrollments e ON e.id = lp.enrollment_id
     AND e.status IN ('active', 'completed')) ON lp.lesson_id = l.id GROUP BY l.id
UNION ALL
SELECT 'quiz', q.id::text, ARRAY[count(a.id), count(a.id) FILTER (WHERE a.is_passed),
       coalesce(sum(a.percentage), 0)]::numeric[]
FROM quizzes q LEFT JOIN quiz_attempts a ON a.quiz_id = q.id AND a.status = 'graded' AND a.percentage IS NOT NULL
GROUP BY q.id
"""

STORED = """
SELECT 'course' AS kind, course_id::text AS key,
       ARRAY[active, completed, dropped, expired, pending_payment, progress_sum, time_spent_sum]::numeric[] AS v
FROM course_stats
UNION ALL SELECT 'bucket', course_id || ':' || bucket, ARRAY[enrollments]::numeric[] FROM course_progress_buckets
UNION ALL SELECT 'lesson', lesson_id::text, ARRAY[started, completed, time_spent_sum]::numeric[] FROM lesson_stats
UNION ALL SELECT 'quiz', quiz_id::text, ARRAY[attempts, passed, percentage_sum]::numeric[] FROM quiz_stats
"""


async def figures(db: Database, sql: str) -> dict[tuple[str, str], list[Any]]:
    async with db.connection() as conn:
        return {(r["kind"], r["key"]): list(r["v"]) for r in await conn.fetch_all(sql)}


async def assert_consistent(db: Database) -> None:
    stored, recount = await figures(db, STORED), await figures(db, RECOUNT)
    assert stored == recount


async def random_write(db: Database, rng: random.Random, state: dict[str, Any]) -> None:
    choice = rng.randrange(7)
    enrollment: Row = rng.choice(state["enrollments"])
    async with db.transaction() as conn:
        if choice == 0:
            await conn.execute(
                update(enrollments).where(enrollments.c.id == enrollment["id"]).values(status=rng.choice(STATUSES))
            )
        elif choice == 1:
            await conn.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment["id"])
                .values(progress_percentage=rng.randrange(0, 10001) / 100,
                        total_time_spent_seconds=enrollments.c.total_time_spent_seconds + rng.randrange(100))
            )  # fmt: skip
        elif choice == 2:
            lesson_id = rng.choice(state["lessons"])
            status = rng.choice(("in_progress", "completed"))
            stmt = pg_insert(lesson_progress).values(
                enrollment_id=enrollment["id"], lesson_id=lesson_id, status=status, time_spent_seconds=rng.randrange(50)
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    constraint="uq_lesson_progress_enrollment_id_lesson_id",
                    set_={"status": status, "time_spent_seconds": lesson_progress.c.time_spent_seconds + 7},
                )
            )
        elif choice == 3:
            # Taken before the await: concurrent writers must not share a number (unique per enrollment and quiz).
            number, state["attempt"] = state["attempt"], state["attempt"] + 1
            await conn.execute(
                insert(quiz_attempts).values(
                    enrollment_id=enrollment["id"], quiz_id=state["quiz"]["id"], student_id=enrollment["student_id"],
                    attempt_number=number, status=rng.choice(("in_progress", "graded")),
                    percentage=rng.randrange(0, 10001) / 100, is_passed=rng.random() < 0.5,
                )
            )  # fmt: skip
        elif choice == 4:  # a course-wide statement, as the progress recalculation job runs
            await conn.execute(
                update(enrollments)
                .where(enrollments.c.course_id == state["course"]["id"])
                .values(progress_percentage=(enrollments.c.progress_percentage / 2))
            )
        elif choice == 5:  # study time only, as a progress report (the short way, migration 0012)
            await conn.execute(
                update(enrollments)
                .where(enrollments.c.id.in_([enrollment["id"], rng.choice(state["enrollments"])["id"]]))
                .values(total_time_spent_seconds=enrollments.c.total_time_spent_seconds + rng.randrange(100))
            )
        else:
            await conn.execute(
                update(quiz_attempts)
                .where(quiz_attempts.c.quiz_id == state["quiz"]["id"], quiz_attempts.c.status == "in_progress")
                .values(status="graded")
            )


async def test_stats_rows_equal_a_recount_after_random_concurrent_writes(db: Database) -> None:
    rng = random.Random(1414)
    owner = await make_user(db, role="instructor")
    course = await make_course(db, owner, is_published=True, lessons=5)
    other = await make_course(db, owner, is_published=True, lessons=2)
    async with db.connection() as conn:
        lesson_rows = await conn.fetch_all(lessons.select().where(lessons.c.course_id == course["id"]))
    state: dict[str, Any] = {
        "course": course, "lessons": [r["id"] for r in lesson_rows], "attempt": 1,
        "quiz": await make_quiz(db, course_id=course["id"]),
        "enrollments": [
            await make_enrollment(db, await make_user(db), course, status=rng.choice(STATUSES),
                                  progress_percentage=rng.randrange(101), total_time_spent_seconds=rng.randrange(999))
            for _ in range(12)
        ],
    }  # fmt: skip
    await make_enrollment(db, await make_user(db), other, status="completed", progress_percentage=100)
    await assert_consistent(db)
    for _ in range(6):  # rounds of concurrent writers on the same course
        await asyncio.gather(*(random_write(db, rng, state) for _ in range(8)))
    await assert_consistent(db)

    gone = state["enrollments"].pop()
    async with db.transaction() as conn:
        await conn.execute(delete(enrollments).where(enrollments.c.id == gone["id"]))
        await conn.execute(delete(lessons).where(lessons.c.id == state["lessons"].pop()))
    await assert_consistent(db)
    async with db.transaction() as conn:  # a whole course goes: its stats rows with it, the other's stay
        await conn.execute(delete(enrollments).where(enrollments.c.course_id == course["id"]))
        await conn.execute("DELETE FROM courses WHERE id = %(id)s", {"id": course["id"]})
    await assert_consistent(db)
    assert len([k for k in await figures(db, STORED) if k[0] == "course"]) == 1


async def test_a_statement_that_changed_no_row_applies_nothing(db: Database) -> None:
    # An upsert fires both its INSERT and its UPDATE statement triggers (one with no rows), and an UPDATE
    # that matches nothing fires its trigger too: only statements with rows reach analytics_apply_*
    # (migration 0011), and the stats still follow every change.
    owner = await make_user(db, role="instructor")
    course = await make_course(db, owner, is_published=True, lessons=2)
    enrollment = await make_enrollment(db, await make_user(db), course)
    async with db.connection() as conn:
        lesson_id = await conn.fetch_val(lessons.select().with_only_columns(lessons.c.id).where(
            lessons.c.course_id == course["id"]).limit(1))  # fmt: skip
    calls = (
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions "
        "WHERE funcname IN ('analytics_apply_lesson_progress', 'analytics_apply_enrollments')"
    )
    async with db.transaction() as conn:
        await conn.execute("SET LOCAL track_functions = 'all'")
        for seconds in (5, 7):  # the first inserts the row, the second updates it
            stmt = pg_insert(lesson_progress).values(
                enrollment_id=enrollment["id"], lesson_id=lesson_id, status="in_progress", time_spent_seconds=seconds
            )
            await conn.execute(stmt.on_conflict_do_update(
                constraint="uq_lesson_progress_enrollment_id_lesson_id",
                set_={"time_spent_seconds": lesson_progress.c.time_spent_seconds + stmt.excluded.time_spent_seconds},
            ))  # fmt: skip
        await conn.execute(update(enrollments).where(enrollments.c.id == enrollment["id"], enrollments.c.status == "x")
                           .values(progress_percentage=50))  # fmt: skip
        assert await conn.fetch_val(calls) == 2
    await assert_consistent(db)
    async with db.connection() as conn:
        started, spent = (await conn.fetch_one(
            "SELECT started, time_spent_sum FROM lesson_stats WHERE lesson_id = %(id)s", {"id": lesson_id}
        )).values()  # fmt: skip
    assert (started, spent) == (1, 12)


async def test_the_apply_functions_plan_once_per_connection(db: Database) -> None:
    # Under plan_cache_mode = auto a one-row array made PostgreSQL re-plan every statement of every
    # call (migration 0012); the random-writes test above holds the generic plans to the recount.
    # Their index lookups (migration 0013): the test below.
    async with db.connection() as conn:
        settings = await conn.fetch_all(
            "SELECT proname, proconfig FROM pg_proc WHERE proname LIKE 'analytics_apply_%%' "
            "OR proname IN ('analytics_enrollments_study_time', 'analytics_lock_courses') ORDER BY proname"
        )
    generic = ["plan_cache_mode=force_generic_plan", "enable_seqscan=off"]
    assert [(r["proname"], r["proconfig"]) for r in settings] == [
        ("analytics_apply_enrollments", generic), ("analytics_apply_lesson_progress", generic),
        ("analytics_apply_quiz_attempts", generic), ("analytics_enrollments_study_time", generic),
        ("analytics_lock_courses", ["enable_seqscan=off"]),
    ]  # fmt: skip


STATS_TABLES = (
    "course_stats", "course_progress_buckets", "lesson_stats", "study_activity", "quiz_stats", "quiz_score_buckets",
)  # fmt: skip
# This backend's sequential scans of the stats tables, those not yet in pg_stat_user_tables included.
SEQ_SCANS = "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%(tables)s) ORDER BY relname"


async def test_the_apply_functions_look_stats_rows_up_by_index_on_small_tables(db: Database) -> None:
    # The generic plans take an unnest() of a parameter for 10 rows, so against stats tables of a few
    # thousand rows a sequential scan looked cheaper: every progress report read all of lesson_stats
    # and course_stats (migration 0013). The tables here are tiny, where a scan looks cheapest.
    owner = await make_user(db, role="instructor")
    course = await make_course(db, owner, is_published=True, lessons=3)
    quiz = await make_quiz(db, course_id=course["id"])
    student = await make_user(db)
    enrollment = await make_enrollment(db, student, course, progress_percentage=10)
    async with db.connection() as conn:
        lesson_id = await conn.fetch_val(lessons.select().with_only_columns(lessons.c.id).where(
            lessons.c.course_id == course["id"]).limit(1))  # fmt: skip
    tables = {"tables": list(STATS_TABLES)}
    async with db.transaction() as conn:
        before = await conn.fetch_all(SEQ_SCANS, tables)
        for position in (10, 20):  # a progress report as the API makes it: inserts the row, then updates it
            reported = await report_progress(
                conn, student_id=student["id"], enrollment_id=enrollment["id"], lesson_id=lesson_id, seconds=30,
                position=position, percentage=position,
            )  # fmt: skip
            assert reported is not None
        await conn.execute(update(enrollments).where(enrollments.c.id == enrollment["id"]).values(
            progress_percentage=55))  # fmt: skip
        await conn.execute(update(enrollments).where(enrollments.c.course_id == course["id"]).values(
            status="completed"))  # fmt: skip
        await conn.execute(insert(quiz_attempts).values(
            enrollment_id=enrollment["id"], quiz_id=quiz["id"], student_id=student["id"], attempt_number=1,
            status="graded", percentage=75, is_passed=True,
        ))  # fmt: skip
        assert await conn.fetch_all(SEQ_SCANS, tables) == before
    await assert_consistent(db)
