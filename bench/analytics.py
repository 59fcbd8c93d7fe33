"""Analytics endpoints against a real `lms serve`, on the bench/learning.py catalogue plus learning data.

    python -m bench.analytics [--requests 2000] [--concurrency 50] [--plans 1] [--data-dir DIR] [--only TEXT]

``--data-dir`` keeps PostgreSQL's data there: the first run seeds it, later
runs reuse it (about a minute saved; the PUT scenario's writes accumulate).
``--only`` runs the scenarios whose name contains TEXT (the reference always runs).

Seeds bench/learning.py's data set (1,000 courses of 20 lessons, 10,000
students, 100,000 enrollments), then adds what analytics sums: lesson
progress (about 5 lessons per enrollment, some completed; enrollment
counters follow), a quiz per course with graded attempts, completed and
dropped enrollments, payments for the paid courses, sign-ins over 30 days.
The stats rows are then recomputed once (seeding runs with the triggers
off, as a bulk load would). Then, at 50 concurrent clients on one
`lms serve`, the rate and p50/p99 of:

- GET /analytics/courses/{id}          instructors, each on their own courses (target p99 <= 50 ms)
- GET /analytics/system/overview       admin; the shared snapshot (target p99 <= 200 ms), and recomputed
                                        on every request by a second server (max age 0), for comparison
- GET /analytics/instructors/{id}/overview, /analytics/my-dashboard, /analytics/my-progress
- GET /auth/me                          the authenticated floor: token check and account read only
- PUT progress                          the write path, which now also updates the stats rows
- a bare aiohttp handler                the reference, measured in the same run

and, per endpoint, the EXPLAIN (ANALYZE, BUFFERS) of its slowest statement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench import load, profile
from bench.harness import Platform, platform
from bench.learning import PASSWORD, ExplainingConnection, Plan, _Rollback, seed
from lms.analytics import platform as platform_figures
from lms.analytics import queries, students
from lms.analytics.window import WindowQuery
from lms.db import Database
from lms.users.queries import get_user

ROOT = Path(__file__).resolve().parent.parent

LEARNING = [
    # Lesson progress: enrollment e opens its course's first 1 + (e mod 10) lessons, completes
    # all but the last one it opened; enrollments that completed every lesson are completed.
    """
    INSERT INTO lesson_progress (id, enrollment_id, lesson_id, status, started_at, completed_at,
                                 time_spent_seconds, completion_percentage, updated_at)
    SELECT gen_random_uuid(), e.id, l.id,
           CASE WHEN l.position < e.opened OR e.opened = 20 THEN 'completed' ELSE 'in_progress' END,
           e.enrolled_at, CASE WHEN l.position < e.opened OR e.opened = 20 THEN e.enrolled_at END,
           60 + (l.position * 37) %% 600,
           CASE WHEN l.position < e.opened OR e.opened = 20 THEN 100 ELSE 40 END,
           now() - make_interval(days => ((l.position + e.n) %% 30)::int, mins => ((e.n * 7) %% 1440)::int)
    FROM (SELECT id, course_id, enrolled_at, row_number() OVER (ORDER BY id) AS n,
                 1 + (abs(hashtext(id::text)) %% 10) * 2 AS opened
          FROM enrollments) AS e
    JOIN lessons l ON l.course_id = e.course_id AND l.position <= e.opened
    """,
    """
    UPDATE enrollments e SET
        completed_lessons_count = p.done, total_time_spent_seconds = p.seconds,
        progress_percentage = round(p.done * 100.0 / e.total_lessons_count, 2),
        last_accessed_at = p.last, started_at = e.enrolled_at,
        status = CASE WHEN p.done >= e.total_lessons_count THEN 'completed'
                      WHEN abs(hashtext(e.id::text)) %% 20 = 0 THEN 'dropped' ELSE 'active' END,
        completed_at = CASE WHEN p.done >= e.total_lessons_count THEN p.last END,
        rating = CASE WHEN abs(hashtext(e.id::text)) %% 4 = 0 THEN 1 + abs(hashtext(e.id::text)) %% 5 END
    FROM (SELECT enrollment_id, count(*) FILTER (WHERE status = 'completed') AS done,
                 sum(time_spent_seconds) AS seconds, max(updated_at) AS last
          FROM lesson_progress GROUP BY enrollment_id) AS p
    WHERE p.enrollment_id = e.id
    """,
    """
    UPDATE courses c SET rating_count = r.n, rating_average = r.avg
    FROM (SELECT course_id, count(rating) AS n, round(avg(rating), 2) AS avg FROM enrollments
          WHERE rating IS NOT NULL GROUP BY course_id) AS r
    WHERE r.course_id = c.id
    """,
    """
    INSERT INTO quizzes (id, course_id, title, quiz_type, is_published)
    SELECT gen_random_uuid(), id, 'Checkpoint of ' || title, 'graded', true FROM courses
    """,
    """
    INSERT INTO quiz_attempts (id, enrollment_id, quiz_id, student_id, attempt_number, status, started_at,
                               submitted_at, graded_at, score, max_score, percentage, is_passed)
    SELECT gen_random_uuid(), e.id, q.id, e.student_id, a, 'graded', e.enrolled_at, e.enrolled_at, e.enrolled_at,
           pct, 100, pct, pct >= 70
    FROM enrollments e JOIN quizzes q ON q.course_id = e.course_id
    CROSS JOIN generate_series(1, 2) AS a
    CROSS JOIN LATERAL (SELECT (abs(hashtext(e.id::text || a)) %% 10001) / 100.0 AS pct) AS s
    WHERE abs(hashtext(e.id::text)) %% 3 = 0
    """,
    """
    INSERT INTO payments (id, user_id, course_id, enrollment_id, amount, currency, gateway, status,
                          gateway_reference, created_at, completed_at)
    SELECT gen_random_uuid(), e.student_id, c.id, e.id, c.price_amount, c.price_currency, 'stripe', 'completed',
           'cs_' || e.id, e.enrolled_at, e.enrolled_at
    FROM enrollments e JOIN courses c ON c.id = e.course_id WHERE c.price_amount IS NOT NULL
    """,
    "UPDATE users SET last_login_at = now() - make_interval(hours => abs(hashtext(id::text)) %% 1000)",
    """
    INSERT INTO users (id, email, password_hash, full_name, role)
    SELECT gen_random_uuid(), 'admin@bench.example', password_hash, 'Bench Admin', 'admin' FROM users LIMIT 1
    """,
]


def backfill_sql() -> str:
    """The migration's one-time recount of the stats rows (the seeding ran without the triggers)."""
    path = ROOT / "migrations" / "versions" / "0007_analytics.py"
    spec = importlib.util.spec_from_file_location("analytics_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.BACKFILL)


async def seed_learning(db: Database) -> dict[str, float]:
    timings: dict[str, float] = {}
    async with db.transaction() as conn:
        # A bulk load: the triggers are off for this session, the stats are recounted at the end.
        await conn.execute("SET LOCAL session_replication_role = replica")
        for i, sql in enumerate(LEARNING):
            started = time.perf_counter()
            await conn.execute(sql)
            timings[f"step {i + 1}"] = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(
            "TRUNCATE course_stats, course_progress_buckets, lesson_stats, quiz_stats, quiz_score_buckets, "
            "study_activity"
        )
        await conn.execute(backfill_sql())
        timings["stats recount"] = time.perf_counter() - started
    async with db.connection() as conn:
        await conn.execute("VACUUM ANALYZE")
    return timings


async def tokens_for(http: aiohttp.ClientSession, emails: list[str]) -> list[dict[str, str]]:
    headers = []
    for email in emails:
        async with http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}) as response:
            body = await response.json()
            headers.append({"Authorization": f"Bearer {body['access_token']}"})
    return headers


async def main(args: argparse.Namespace) -> None:
    with platform(args.data_dir) as env:
        db = await Database.connect(env.database_url, min_size=1, max_size=4, statement_timeout_ms=900_000)
        try:
            async with db.connection() as conn:
                seeded = await conn.fetch_val("SELECT count(*) FROM users WHERE email = 'admin@bench.example'")
            timings: dict[str, float] = {}
            if not seeded:
                timings = await seed(db, courses=1000, lessons=20, students=10_000, per_student=10)
                timings |= await seed_learning(db)
            async with db.connection() as conn:
                counts = await conn.fetch_one(
                    "SELECT (SELECT count(*) FROM enrollments) AS enrollments, "
                    "(SELECT count(*) FROM lesson_progress) AS lesson_progress, "
                    "(SELECT count(*) FROM quiz_attempts) AS quiz_attempts, "
                    "(SELECT count(*) FROM payments) AS payments, "
                    "(SELECT count(*) FROM study_activity) AS study_activity"
                )
                instructors = await conn.fetch_all(
                    "SELECT u.id, u.email, array_agg(c.id) AS courses FROM users u JOIN courses c "
                    "ON c.instructor_id = u.id WHERE u.role = 'instructor' GROUP BY u.id ORDER BY u.email LIMIT 50"
                )
                learners = await conn.fetch_all(
                    "SELECT u.id, u.email, (SELECT e.id FROM enrollments e WHERE e.student_id = u.id AND "
                    "e.status = 'active' LIMIT 1) AS enrollment_id FROM users u WHERE u.role = 'student' "
                    "ORDER BY u.email LIMIT 50"
                )
            print(f"seeded {counts} in " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))

            snapshot_url = env.serve(LMS_RATE_LIMIT_ENABLED="false", LMS_AUTH_BCRYPT_ROUNDS="4",
                                     LMS_ANALYTICS_OVERVIEW_MAX_AGE_SECONDS="60")  # fmt: skip
            fresh_url = env.serve(LMS_RATE_LIMIT_ENABLED="false", LMS_AUTH_BCRYPT_ROUNDS="4",
                                  LMS_ANALYTICS_OVERVIEW_MAX_AGE_SECONDS="0")  # fmt: skip
            connector = aiohttp.TCPConnector(limit=0)
            async with (
                aiohttp.ClientSession(snapshot_url, connector=connector) as http,
                aiohttp.ClientSession(fresh_url) as fresh,
            ):
                setup = await sign_in(http, fresh, instructors, learners)
            await run(args, env, snapshot_url, fresh_url, setup)
            await explain(db, instructors[0], learners[0], args.plans)
        finally:
            await db.close()


@dataclass
class People:
    """Who the scenarios act as: request headers per person, and each learner's lessons."""

    teachers: list[dict[str, str]]
    learners: list[dict[str, str]]
    admin: dict[str, str]
    fresh_admin: dict[str, str]
    courses: list[list[uuid.UUID]]  # per teacher
    instructor_ids: list[uuid.UUID]
    enrollments: list[tuple[uuid.UUID, list[str]] | None]  # per learner: enrollment and its lessons


async def sign_in(
    http: aiohttp.ClientSession, fresh: aiohttp.ClientSession, instructors: list[Any], learners: list[Any]
) -> People:
    people = await tokens_for(http, [r["email"] for r in learners])
    enrollments: list[tuple[uuid.UUID, list[str]] | None] = []
    for row, headers in zip(learners, people, strict=True):
        if row["enrollment_id"] is None:
            enrollments.append(None)
            continue
        async with http.get(f"/api/v1/enrollments/{row['enrollment_id']}", headers=headers) as r:
            course_id = (await r.json())["course_id"]
        async with http.get(f"/api/v1/courses/{course_id}/lessons", headers=headers) as r:
            enrollments.append((row["enrollment_id"], [x["id"] for x in await r.json()]))
    return People(
        teachers=await tokens_for(http, [r["email"] for r in instructors]),
        learners=people,
        admin=(await tokens_for(http, ["admin@bench.example"]))[0],
        fresh_admin=(await tokens_for(fresh, ["admin@bench.example"]))[0],
        courses=[r["courses"] for r in instructors],
        instructor_ids=[r["id"] for r in instructors],
        enrollments=enrollments,
    )


async def run(args: argparse.Namespace, env: Platform, url: str, fresh_url: str, people: People) -> None:
    rng = random.Random(14)
    host, fresh_host = urlsplit(url).netloc, urlsplit(fresh_url).netloc

    def get(path: Callable[[int], str], headers: Callable[[int], dict[str, str]], on: str = host) -> load.RequestBytes:
        return lambda i: load.request_bytes("GET", path(i), on, headers=headers(i))

    def teacher(i: int) -> dict[str, str]:
        return people.teachers[i % len(people.teachers)]

    def learner(i: int) -> dict[str, str]:
        return people.learners[i % len(people.learners)]

    def course_path(i: int) -> str:
        return f"/api/v1/analytics/courses/{rng.choice(people.courses[i % len(people.courses)])}"

    studying = [(n, e) for n, e in enumerate(people.enrollments) if e is not None]

    def put(i: int) -> bytes:
        n, (enrollment_id, lessons) = studying[i % len(studying)]
        body = {"time_spent_seconds": 30, "completion_percentage": rng.randrange(100)}
        path = f"/api/v1/enrollments/{enrollment_id}/lessons/{rng.choice(lessons)}/progress"
        return load.request_bytes("PUT", path, host, headers=people.learners[n], body=body)

    overview = "/api/v1/analytics/system/overview"
    scenarios: list[tuple[str, str, load.RequestBytes, int]] = [
        ("GET /auth/me (authenticated floor)", url, get(lambda i: "/api/v1/auth/me", learner), args.requests),
        ("GET /analytics/courses/{id}", url, get(course_path, teacher), args.requests),
        ("GET /analytics/system/overview (snapshot)", url, get(lambda i: overview, lambda i: people.admin),
         args.requests),
        ("GET /analytics/system/overview (max age 0)", fresh_url,
         get(lambda i: overview, lambda i: people.fresh_admin, fresh_host), max(100, args.requests // 10)),
        ("GET /analytics/instructors/{id}/overview", url,
         get(lambda i: f"/api/v1/analytics/instructors/{people.instructor_ids[i % len(people.instructor_ids)]}"
             "/overview", teacher), args.requests),
        ("GET /analytics/my-dashboard", url, get(lambda i: "/api/v1/analytics/my-dashboard", learner), args.requests),
        ("GET /analytics/my-progress", url, get(lambda i: "/api/v1/analytics/my-progress", learner), args.requests),
        ("PUT progress (own enrollments, stats rows too)", url, put, args.requests),
    ]  # fmt: skip
    c = args.concurrency
    with load.reference_server() as bare:
        reference = await load.measure_reference(bare, max(args.requests, 10_000), c)
    print(f"\n{c} concurrent clients, one lms serve per column of figures:")
    print(reference.line(f"bare aiohttp handler (c={c})"))
    for n, (name, target, make, total) in enumerate(scenarios):
        if args.only and args.only not in name:
            continue
        await load.warm_up(target, make, c, min(500, total))
        with contextlib.ExitStack() as stack:
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                collapsed = args.profile / f"analytics-{n}.txt"
                stack.enter_context(profile.recording(env.server_pid(target), collapsed))
            result = await load.drive(target, make, total, c, cpu=env.cpu_groups(target))
        print(result.line(name, reference))
        if args.profile:
            print(f"py-spy, {name}: {collapsed}\n{profile.summary(collapsed)}")


async def explain(db: Database, instructor: Any, learner: Any, show: int) -> None:
    """The statements each endpoint runs, under EXPLAIN ANALYZE (rolled back); the slowest per endpoint."""
    plans: list[Plan] = []
    window = WindowQuery().window()
    async with db.connection() as plain:
        conn = ExplainingConnection(plain.raw, "", plans)
        try:
            async with conn.transaction():
                course_id = instructor["courses"][0]
                conn.label = "GET /analytics/courses/{id}"
                # The statement that course_figures() runs prepared, as plain SQL (EXPLAIN cannot prepare).
                await conn.fetch_one(queries.COURSE_FIGURES.stmt, window.params() | {"course_id": course_id})
                conn.label = "GET /analytics/system/overview (compute)"
                await platform_figures.system_figures(conn, window, datetime.now(UTC))
                conn.label = "GET /analytics/instructors/{id}/overview"
                user = await get_user(conn, instructor["id"])
                assert user is not None
                await platform_figures.instructor_overview(conn, user)
                conn.label = "GET /analytics/my-dashboard"
                await students.totals(conn, learner["id"])
                await students.quiz_history(conn, learner["id"])
                await students.my_certificates(conn, learner["id"])
                await students.active_days(conn, learner["id"], "UTC")
                await students.time_per_day(conn, learner["id"], window)
                conn.label = "GET /analytics/my-progress"
                await students.enrollment_progress(conn, student_id=learner["id"], status=None, limit=20, offset=0)
                raise _Rollback
        except _Rollback:
            pass
    print("\nslowest statement per endpoint (EXPLAIN ANALYZE, warm cache):")
    slowest: dict[str, Plan] = {}
    for plan in plans:
        if plan.label not in slowest or plan.ms > slowest[plan.label].ms:
            slowest[plan.label] = plan
    for label, plan in slowest.items():
        total = sum(p.ms for p in plans if p.label == label)
        count = sum(1 for p in plans if p.label == label)
        print(f"\n--- {label}: {count} statements, {total:.2f} ms in all; slowest {plan.ms:.3f} ms\n{plan.sql[:400]}")
        if show:
            print(plan.text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--plans", type=int, default=1, help="0: no full plans")
    parser.add_argument("--data-dir", type=Path, help="keep PostgreSQL's data here; seed only when it is empty")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--profile", type=Path, help="record each scenario with py-spy into this directory")
    asyncio.run(main(parser.parse_args()))
