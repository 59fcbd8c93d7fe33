"""The learning hot paths against a real `lms serve` process, on a seeded catalogue.

    python -m bench.learning [--courses 1000] [--lessons 20] [--students 10000]
                             [--per-student 10] [--requests 3000] [--concurrency 50]

Seeds (INSERT ... SELECT generate_series, a few seconds) 1,000 courses of 20
lessons and 100,000 enrollments (10,000 students x 10 courses), starts one
`lms serve` on embedded PostgreSQL and Redis, then reports req/s and latency
percentiles at 50 concurrent clients for:

- GET /courses?q=...             anonymous catalogue search (full text)
- GET /enrollments/my-courses    50 students, each their own list
- PUT .../progress               50 students, each on their own enrollment
- PUT .../progress (one enr.)    50 clients on ONE enrollment (two devices'
                                 worst case: the row lock serializes them)

and finally EXPLAIN (ANALYZE, BUFFERS) of every statement those endpoints
run, slowest first (``--plans N`` how many to print in full).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import bcrypt

from bench import load, profile
from bench.harness import platform
from lms.courses import queries as course_queries
from lms.db import Connection, Database, compile_statement
from lms.enrollments import queries as enrollment_queries
from lms.users.queries import get_user

PASSWORD = "benchmark passphrase 42"
_WORDS = (
    "python data science machine learning web design photography music guitar piano cooking baking "
    "finance accounting marketing writing poetry history physics chemistry biology statistics algebra "
    "calculus geometry drawing painting yoga fitness nutrition spanish french arabic german japanese "
    "chinese rust golang javascript typescript react django flask kubernetes docker linux security "
    "networking databases postgres redis"
)
WORDS = _WORDS.split()
SEARCHES = ["python", "machine learning", "cooking", "postgres", "guitar", "history", "arabic", "docker security"]
CATEGORIES = ["programming", "data", "design", "music", "cooking", "business", "languages", "science", "art", "health"]


# --- seeding -----------------------------------------------------------------


async def seed(db: Database, *, courses: int, lessons: int, students: int, per_student: int) -> dict[str, float]:
    """Everything with set-based statements; returns seconds per step."""
    timings: dict[str, float] = {}
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    instructors = max(1, courses // 10)
    published = courses - courses // 10  # every tenth course stays a draft

    async def step(name: str, sql: str, params: Mapping[str, Any] | None = None) -> None:
        started = time.perf_counter()
        async with db.transaction() as conn:
            await conn.execute(sql, params)
        timings[name] = time.perf_counter() - started

    await step(
        "users",
        """
        INSERT INTO users (id, email, password_hash, full_name, role)
        SELECT gen_random_uuid(), 'instructor-' || i || '@bench.example', %(hash)s, 'Instructor ' || i, 'instructor'
        FROM generate_series(1, %(instructors)s) AS i
        UNION ALL
        SELECT gen_random_uuid(), 'student-' || i || '@bench.example', %(hash)s, 'Student ' || i, 'student'
        FROM generate_series(1, %(students)s) AS i
        """,
        {"hash": password_hash, "instructors": instructors, "students": students},
    )
    # Titles and descriptions from a word list, so that a search matches a few percent of the catalogue.
    await step(
        "courses",
        """
        WITH teachers AS (
            SELECT id, row_number() OVER (ORDER BY email) - 1 AS n FROM users WHERE role = 'instructor'
        )
        INSERT INTO courses (id, title, slug, description, instructor_id, category, difficulty_level,
                             is_published, published_at, price_amount, price_currency)
        SELECT gen_random_uuid(),
               initcap(w1) || ' ' || w2 || ' ' || i,
               'course-' || i,
               'Learn ' || w1 || ' and ' || w3 || ' from scratch: ' || w2 || ', ' || w4 || ' and practice.',
               t.id,
               (%(categories)s::text[])[1 + i %% cardinality(%(categories)s::text[])],
               (ARRAY['beginner', 'intermediate', 'advanced'])[1 + i %% 3],
               i %% 10 <> 0,
               CASE WHEN i %% 10 <> 0 THEN now() - make_interval(mins => i) END,
               CASE WHEN i %% 4 = 0 THEN 49.00 END,
               CASE WHEN i %% 4 = 0 THEN 'USD' END
        FROM generate_series(1, %(courses)s) AS i
        CROSS JOIN LATERAL (
            SELECT w[1 + (i * 7) %% n] AS w1, w[1 + (i * 13) %% n] AS w2,
                   w[1 + (i * 17) %% n] AS w3, w[1 + (i * 29) %% n] AS w4
            FROM (SELECT %(words)s::text[] AS w, cardinality(%(words)s::text[]) AS n) AS list
        ) AS picked
        JOIN teachers t ON t.n = i %% %(instructors)s
        """,
        {"courses": courses, "instructors": instructors, "words": list(WORDS), "categories": list(CATEGORIES)},
    )
    await step(
        "lessons",
        """
        INSERT INTO lessons (id, course_id, title, slug, content_type, content, video_url, duration_seconds,
                             position, is_free, is_published)
        SELECT gen_random_uuid(), c.id, 'Lesson ' || n, 'lesson-' || n,
               CASE WHEN n %% 3 = 0 THEN 'text' ELSE 'video' END,
               'The text of lesson ' || n, 'https://videos.example/' || c.slug || '/' || n, 600,
               n, n = 1, true
        FROM courses c CROSS JOIN generate_series(1, %(lessons)s) AS n
        """,
        {"lessons": lessons},
    )
    # Student s takes published courses s, s + step, s + 2 step ... (distinct for a student).
    await step(
        "enrollments",
        """
        WITH open_courses AS (
            SELECT id, row_number() OVER (ORDER BY slug) - 1 AS n FROM courses WHERE is_published
        ), learners AS (
            SELECT id, row_number() OVER (ORDER BY email) - 1 AS n FROM users WHERE role = 'student'
        )
        INSERT INTO enrollments (id, student_id, course_id, status, total_lessons_count, enrolled_at)
        SELECT gen_random_uuid(), l.id, c.id, 'active', %(lessons)s, now() - make_interval(hours => k)
        FROM learners l
        CROSS JOIN generate_series(0, %(per_student)s - 1) AS k
        JOIN open_courses c ON c.n = (l.n + k * (%(published)s / %(per_student)s)) %% %(published)s
        """,
        {"lessons": lessons, "per_student": per_student, "published": published},
    )
    started = time.perf_counter()
    async with db.connection() as conn:
        await conn.execute("VACUUM ANALYZE")
    timings["vacuum analyze"] = time.perf_counter() - started
    return timings


# --- driving -----------------------------------------------------------------


@dataclass
class Learner:
    headers: dict[str, str]
    student_id: uuid.UUID
    enrollment_id: uuid.UUID
    course_id: uuid.UUID
    lesson_ids: list[uuid.UUID] = field(default_factory=list)


async def learners(db: Database, http: aiohttp.ClientSession, count: int) -> list[Learner]:
    async with db.connection() as conn:
        rows = await conn.fetch_all(
            """
            SELECT DISTINCT ON (u.id) u.id AS student_id, u.email, e.id AS enrollment_id, e.course_id
            FROM users u JOIN enrollments e ON e.student_id = u.id
            WHERE u.role = 'student' ORDER BY u.id, e.enrolled_at LIMIT %(count)s
            """,
            {"count": count},
        )
        result = []
        for row in rows:
            lessons = await conn.fetch_all(
                "SELECT id FROM lessons WHERE course_id = %(c)s ORDER BY position", {"c": row["course_id"]}
            )
            async with http.post("/api/v1/auth/login", json={"email": row["email"], "password": PASSWORD}) as response:
                token = (await response.json())["access_token"]
            result.append(
                Learner({"Authorization": f"Bearer {token}"}, row["student_id"], row["enrollment_id"],
                        row["course_id"], [lesson["id"] for lesson in lessons])
            )  # fmt: skip
    return result


# --- query plans -------------------------------------------------------------


@dataclass
class Plan:
    label: str
    sql: str
    ms: float
    text: str


class ExplainingConnection(Connection):
    """Runs EXPLAIN (ANALYZE, BUFFERS) before each statement and keeps the plan (bench only)."""

    def __init__(self, raw: Any, label: str, plans: list[Plan]) -> None:
        super().__init__(raw)
        self.label = label
        self.plans = plans

    async def _run(self, stmt: Any, params: Mapping[str, Any] | None) -> Any:
        sql, values = compile_statement(stmt, params)
        head = sql.lstrip().split(None, 1)[0].upper()
        if head in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            cur = await self.raw.cursor()
            await cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, values)
            lines = [r[0] for r in await cur.fetchall()]
            cur.close()
            total = next(
                (float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time")), 0.0
            )
            self.plans.append(Plan(self.label, " ".join(sql.split()), total, "\n".join(lines)))
        return await super()._run(stmt, params)


class _Rollback(Exception):
    pass


def print_plans(plans: list[Plan], show: int) -> None:
    print("\nstatements by execution time (EXPLAIN ANALYZE, warm cache):")
    for plan in sorted(plans, key=lambda p: p.ms, reverse=True):
        print(f"  {plan.ms:8.3f} ms  {plan.label:<34} {plan.sql[:110]}")
    for plan in sorted(plans, key=lambda p: p.ms, reverse=True)[:show]:
        print(f"\n--- {plan.label} ({plan.ms:.3f} ms)\n{plan.sql}\n{plan.text}")


# --- main --------------------------------------------------------------------


async def main(args: argparse.Namespace) -> None:
    with platform() as env:
        db = await Database.connect(env.database_url, min_size=1, max_size=4, statement_timeout_ms=600_000)
        try:
            timings = await seed(
                db, courses=args.courses, lessons=args.lessons, students=args.students, per_student=args.per_student
            )
            async with db.connection() as conn:
                counts = await conn.fetch_one(
                    "SELECT (SELECT count(*) FROM courses) AS courses, (SELECT count(*) FROM lessons) AS lessons, "
                    "(SELECT count(*) FROM enrollments) AS enrollments, (SELECT count(*) FROM users) AS users"
                )
            print(f"seeded {counts} in " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))

            url = env.serve(LMS_RATE_LIMIT_ENABLED="false", LMS_AUTH_BCRYPT_ROUNDS="4")
            host = url.split("//", 1)[1]
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(url, connector=connector) as http:
                people = await learners(db, http, args.concurrency)
            rng = random.Random(7)

            def search(i: int) -> bytes:
                return load.request_bytes("GET", f"/api/v1/courses?q={quote(SEARCHES[i % len(SEARCHES)])}", host)

            def my_courses(i: int) -> bytes:
                return load.request_bytes("GET", "/api/v1/enrollments/my-courses", host,
                                          headers=people[i % len(people)].headers)  # fmt: skip

            def progress(shared: bool) -> load.RequestBytes:
                def put(i: int) -> bytes:
                    who = people[0] if shared else people[i % len(people)]
                    lesson = who.lesson_ids[rng.randrange(len(who.lesson_ids))]
                    body = {"time_spent_seconds": 30, "last_position_seconds": rng.randrange(600),
                            "completion_percentage": rng.randrange(100)}  # fmt: skip
                    path = f"/api/v1/enrollments/{who.enrollment_id}/lessons/{lesson}/progress"
                    return load.request_bytes("PUT", path, host, headers=who.headers, body=body)

                return put

            scenarios: list[tuple[str, load.RequestBytes]] = [
                ("GET /courses?q=...", search),
                ("GET /enrollments/my-courses", my_courses),
                ("PUT progress (own enrollments)", progress(shared=False)),
                ("PUT progress (one enrollment)", progress(shared=True)),
            ]
            c = args.concurrency
            with load.reference_server() as bare:
                reference = await load.measure_reference(bare, max(args.requests, 10_000), c)
            print(f"\n{args.requests} requests per scenario, {c} concurrent clients, 1 lms serve:")
            print(reference.line(f"bare aiohttp handler (c={c})"))
            for n, (name, make) in enumerate(scenarios):
                await load.warm_up(url, make, c, min(500, args.requests))
                with contextlib.ExitStack() as stack:
                    if args.profile:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        collapsed = args.profile / f"learning-{n}.txt"
                        stack.enter_context(profile.recording(env.server_pid(url), collapsed))
                    result = await load.drive(url, make, args.requests, c, cpu=env.cpu_groups(url))
                print(result.line(f"{name} (c={c})", reference))
                if args.profile:
                    print(f"py-spy, {name}: {collapsed}\n{profile.summary(collapsed)}")

            plans: list[Plan] = []
            try:
                await explain_into(db, people[1], plans)
            finally:
                print_plans(plans, args.plans)
        finally:
            await db.close()


async def explain_into(db: Database, learner: Learner, plans: list[Plan]) -> None:
    async with db.connection() as plain:
        conn = ExplainingConnection(plain.raw, "", plans)
        try:
            async with conn.transaction():
                await _explained_calls(conn, learner)
                raise _Rollback
        except _Rollback:
            pass


async def _explained_calls(conn: ExplainingConnection, learner: Learner) -> None:
    conn.label = "auth guard: load the user"
    await get_user(conn, learner.student_id)
    for q in ("python", "machine learning"):
        conn.label = f"GET /courses?q={q}"
        await course_queries.list_courses(conn, limit=20, offset=0, q=q)
    conn.label = "GET /courses (no filter)"
    await course_queries.list_courses(conn, limit=20, offset=0)
    conn.label = "GET /enrollments/my-courses"
    await enrollment_queries.list_student_enrollments(
        conn, student_id=learner.student_id, status=None, limit=20, offset=0
    )
    conn.label = "PUT progress"  # the one statement of a report that completes no lesson (run prepared)
    report = {
        "student_id": learner.student_id, "enrollment_id": learner.enrollment_id, "lesson_id": learner.lesson_ids[0],
        "status": "in_progress", "seconds": 30, "position": 10, "percentage": 50,
    }  # fmt: skip
    await conn.fetch_one(enrollment_queries.REPORT.stmt, report)
    conn.label = "PUT progress (completing a lesson)"
    await enrollment_queries.get_enrollment(conn, learner.enrollment_id)
    await enrollment_queries.get_course_lesson(conn, lesson_id=learner.lesson_ids[0], course_id=learner.course_id)
    await enrollment_queries.add_study_time(conn, learner.enrollment_id, 30)
    await enrollment_queries.record_lesson_progress(
        conn, enrollment_id=learner.enrollment_id, lesson_id=learner.lesson_ids[0], seconds=30, position=10,
        percentage=50,
    )  # fmt: skip
    await enrollment_queries.refresh_progress(conn, enrollment_id=learner.enrollment_id)
    conn.label = "job: recalculate_course_progress"
    await enrollment_queries.lock_course_enrollments(conn, learner.course_id)
    await enrollment_queries.refresh_progress(conn, course_id=learner.course_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--courses", type=int, default=1000)
    parser.add_argument("--lessons", type=int, default=20)
    parser.add_argument("--students", type=int, default=10_000)
    parser.add_argument("--per-student", type=int, default=10)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--plans", type=int, default=4, help="slowest statements whose plans are printed in full")
    parser.add_argument("--profile", type=Path, help="record each scenario with py-spy into this directory")
    asyncio.run(main(parser.parse_args()))
