"""Analytics: a small course with known numbers, compared digit for digit; who sees what; bad input."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select, update

from lms.db import Database, Row
from lms.tables import certificates, enrollments, live_sessions, payments, quiz_attempts, study_activity
from tests.builders import login, make_course, make_enrollment, make_quiz, make_user, signed_in
from tests.conftest import Instance


async def lesson_ids(db: Database, course: Row) -> list[uuid.UUID]:
    from lms.tables import lessons

    async with db.connection() as conn:
        rows = await conn.fetch_all(
            select(lessons.c.id).where(lessons.c.course_id == course["id"]).order_by(lessons.c.position)
        )
    return [r["id"] for r in rows]


async def student_session(client: Any, db: Database, course: Row, name: str, **enrollment: Any) -> dict[str, Any]:
    user = await make_user(db, full_name=name)
    headers = {"Authorization": "Bearer " + (await login(client, user["email"]))["access_token"]}
    row = await make_enrollment(db, user, course, **enrollment)
    return {"user": user, "headers": headers, "enrollment": row}


async def progress(client: Any, who: dict[str, Any], lesson_id: uuid.UUID, *, seconds: int, percent: int) -> None:
    path = f"/api/v1/enrollments/{who['enrollment']['id']}/lessons/{lesson_id}/progress"
    body = {"time_spent_seconds": seconds, "completion_percentage": percent}
    response = await client.put(path, json=body, headers=who["headers"])
    assert response.status == 200, await response.text()


async def graded_attempt(db: Database, quiz: Row, who: dict[str, Any], number: int, percentage: str | None) -> None:
    """An attempt started, then graded (``None``: left in progress) — the update path the grader takes."""
    async with db.transaction() as conn:
        attempt_id = await conn.fetch_val(
            insert(quiz_attempts)
            .values(enrollment_id=who["enrollment"]["id"], quiz_id=quiz["id"], student_id=who["user"]["id"],
                    attempt_number=number)
            .returning(quiz_attempts.c.id)
        )  # fmt: skip
    if percentage is None:
        return
    async with db.transaction() as conn:
        await conn.execute(
            update(quiz_attempts)
            .where(quiz_attempts.c.id == attempt_id)
            .values(status="graded", percentage=percentage, score=percentage, max_score=100,
                    is_passed=Decimal(percentage) >= 70, graded_at=datetime.now(UTC))
        )  # fmt: skip


async def payment(db: Database, user: Row, course: Row, amount: str, currency: str, status: str, **more: Any) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            insert(payments).values(
                user_id=user["id"], course_id=course["id"], amount=amount, currency=currency, gateway="stripe",
                status=status, gateway_reference=uuid.uuid4().hex,
                completed_at=datetime.now(UTC) if status in ("completed", "refunded") else None, **more,
            )
        )  # fmt: skip


async def known_course(client: Any, db: Database) -> dict[str, Any]:
    """Four published lessons (and a draft), five students, a quiz, two reviews, payments: numbers below."""
    owner, owner_headers = await signed_in(client, db, role="instructor", full_name="Ada Teacher")
    course = await make_course(db, owner, is_published=True, lessons=4, title="Known numbers")
    l1, l2, l3, l4 = await lesson_ids(db, course)
    s1 = await student_session(client, db, course, "Sam One")
    s2 = await student_session(client, db, course, "Sue Two")
    s3 = await student_session(client, db, course, "Sid Three")
    s4 = await student_session(client, db, course, "=Dee Four")  # a name a spreadsheet would run
    s5 = await student_session(client, db, course, "Pat Five", status="pending_payment",
                               enrolled_at=datetime.now(UTC) - timedelta(days=3))  # fmt: skip
    await progress(client, s1, l1, seconds=60, percent=100)
    await progress(client, s1, l2, seconds=60, percent=100)
    await progress(client, s2, l1, seconds=30, percent=100)
    await progress(client, s2, l2, seconds=90, percent=50)
    for lesson in (l1, l2, l3, l4):
        await progress(client, s3, lesson, seconds=10, percent=100)
    await progress(client, s4, l1, seconds=20, percent=100)
    dropped = await client.delete(f"/api/v1/enrollments/{s4['enrollment']['id']}", headers=s4["headers"])
    assert dropped.status == 204
    for who, rating in ((s1, 5), (s3, 4)):
        review = await client.post(
            f"/api/v1/enrollments/{who['enrollment']['id']}/review", json={"rating": rating}, headers=who["headers"]
        )
        assert review.status == 200, await review.text()
    quiz = await make_quiz(db, course_id=course["id"], title="Checkpoint")
    await graded_attempt(db, quiz, s1, 1, "95.00")
    await graded_attempt(db, quiz, s1, 2, "100.00")
    await graded_attempt(db, quiz, s2, 1, "55.00")
    await graded_attempt(db, quiz, s3, 1, "70.00")
    await graded_attempt(db, quiz, s2, 2, None)
    await payment(db, s1["user"], course, "49.00", "USD", "completed")
    await payment(db, s2["user"], course, "10.000", "KWD", "refunded", refunded_amount="2.500")
    await payment(db, s5["user"], course, "49.00", "USD", "pending")
    return {"owner": owner, "headers": owner_headers, "course": course, "lessons": [l1, l2, l3, l4],
            "students": [s1, s2, s3, s4, s5], "quiz": quiz}  # fmt: skip


def bucket_counts(distribution: list[dict[str, int]]) -> dict[int, int]:
    assert [(b["lower"], b["upper"]) for b in distribution] == [(i * 10, i * 10 + 10) for i in range(10)]
    return {b["lower"]: b["count"] for b in distribution if b["count"]}


async def test_course_figures_are_exact(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    course_id = known["course"]["id"]
    response = await client.get(f"/api/v1/analytics/courses/{course_id}", headers=known["headers"])
    assert response.status == 200, await response.text()
    body = await response.json()

    assert body["course_id"] == str(course_id) and body["title"] == "Known numbers"
    assert body["total_enrollments"] == 5
    assert body["by_status"] == {"active": 2, "completed": 1, "dropped": 1, "expired": 0, "pending_payment": 1}
    # Over the three studying enrollments: 50 %, 25 %, 100 %; 120 s, 120 s, 40 s.
    assert body["completion_rate"] == "33.33"
    assert body["average_progress"] == "58.33"
    assert body["average_time_spent_seconds"] == 93
    assert bucket_counts(body["progress_distribution"]) == {20: 1, 50: 1, 90: 1}
    assert body["rating_average"] == "4.50" and body["rating_count"] == 2

    lessons = [(x["order"], x["started_count"], x["completed_count"], x["completion_rate"],
                x["average_time_spent_seconds"]) for x in body["lessons"]]  # fmt: skip
    # The dropped student's lesson 1 is not counted.
    assert lessons == [(1, 3, 3, "100.00", 33), (2, 3, 2, "66.67", 53), (3, 1, 1, "33.33", 10), (4, 1, 1, "33.33", 10)]
    assert [x["lesson_id"] for x in body["lessons"]] == [str(i) for i in known["lessons"]]

    (quiz,) = body["quiz_scores"]
    assert quiz["quiz_id"] == str(known["quiz"]["id"]) and quiz["title"] == "Checkpoint"
    assert (quiz["attempts"], quiz["average_percentage"], quiz["pass_rate"]) == (4, "80.00", "75.00")
    assert bucket_counts(quiz["distribution"]) == {50: 1, 70: 1, 90: 2}

    days = body["enrollments_per_day"]
    today = datetime.now(UTC).date()
    assert len(days) == 30 and days[-1] == {"date": today.isoformat(), "count": 4}
    assert {d["date"]: d["count"] for d in days if d["count"]} == {
        today.isoformat(): 4,
        (today - timedelta(days=3)).isoformat(): 1,
    }
    assert (body["timezone"], body["from"], body["to"]) == ("UTC", (today - timedelta(days=29)).isoformat(),
                                                            today.isoformat())  # fmt: skip
    assert body["revenue"] == [
        {"currency": "KWD", "gross": {"amount": "10.000", "currency": "KWD"},
         "refunded": {"amount": "2.500", "currency": "KWD"}, "net": {"amount": "7.500", "currency": "KWD"},
         "payments": 1},
        {"currency": "USD", "gross": {"amount": "49.00", "currency": "USD"},
         "refunded": {"amount": "0.00", "currency": "USD"}, "net": {"amount": "49.00", "currency": "USD"},
         "payments": 1},
    ]  # fmt: skip

    # The enrollment stats endpoint answers the same figures (one query behind both).
    stats = await (await client.get(f"/api/v1/courses/{course_id}/enrollments/stats", headers=known["headers"])).json()
    assert stats == {k: body[k] for k in stats}

    # The dropped student comes back: their completed lesson counts again.
    s4 = known["students"][3]
    again = await client.post("/api/v1/enrollments", json={"course_id": str(course_id)}, headers=s4["headers"])
    assert again.status == 201, await again.text()
    body = await (await client.get(f"/api/v1/analytics/courses/{course_id}", headers=known["headers"])).json()
    assert body["by_status"]["active"] == 3 and body["by_status"]["dropped"] == 0
    assert body["lessons"][0]["completed_count"] == 4 and body["lessons"][0]["completion_rate"] == "100.00"
    assert body["completion_rate"] == "25.00" and body["average_progress"] == "50.00"


async def test_the_same_figures_from_either_instance(instances: list[Instance], db: Database) -> None:
    a, b = instances
    known = await known_course(a.http, db)
    path = f"/api/v1/analytics/courses/{known['course']['id']}"
    first = await (await a.http.get(path, headers=known["headers"])).json()
    second = await (await b.http.get(path, headers=known["headers"])).json()
    first.pop("as_of"), second.pop("as_of")
    assert first == second


async def test_days_follow_the_requested_zone(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    # 02:30 UTC on 10 March 2026: 9 March in New York (UTC-4 since 8 March), 10 March in Kathmandu (+5:45).
    at = datetime(2026, 3, 10, 2, 30, tzinfo=UTC)
    await make_enrollment(db, await make_user(db), course, enrolled_at=at)
    await make_enrollment(db, await make_user(db), course, enrolled_at=at + timedelta(hours=21))
    expected = {
        "UTC": {"2026-03-10": 2},
        "America/New_York": {"2026-03-09": 1, "2026-03-10": 1},
        "Asia/Kathmandu": {"2026-03-10": 1, "2026-03-11": 1},
    }
    for tz, days in expected.items():
        query = {"tz": tz, "from": "2026-03-08", "to": "2026-03-11"}
        body = await (
            await client.get(f"/api/v1/analytics/courses/{course['id']}", params=query, headers=headers)
        ).json()
        assert body["timezone"] == tz and len(body["enrollments_per_day"]) == 4
        assert {d["date"]: d["count"] for d in body["enrollments_per_day"] if d["count"]} == days, tz


async def test_bad_zones_and_ranges_are_422(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    _, admin = await signed_in(client, db, role="admin")
    far = (date.today() - timedelta(days=400)).isoformat()
    bad = [
        {"tz": "Mars/Olympus_Mons"}, {"tz": ""}, {"tz": "../../etc/passwd"}, {"tz": "Europe/Paris\x00"},
        {"tz": "x" * 1000}, {"tz": "utc "}, {"from": "2026-03-11", "to": "2026-03-10"},
        {"from": "2024-01-01", "to": "2026-01-01"}, {"from": far}, {"to": "not a date"}, {"from": "2026-02-30"},
        {"format": "xml"}, {"format": "csv", "table": "payments"},
    ]  # fmt: skip
    for query in bad:
        for path, who in (
            (f"/api/v1/analytics/courses/{course['id']}", headers),
            ("/api/v1/analytics/system/overview", admin),
            ("/api/v1/analytics/my-dashboard", admin),
        ):
            response = await client.get(path, params=query, headers=who)
            if "format" in query and "courses" not in path:
                continue  # format/table belong to the course route only; elsewhere they are ignored
            assert response.status == 422, (path, query, await response.text())
            assert response.content_type == "application/problem+json"
    ok = await client.get(f"/api/v1/analytics/courses/{course['id']}", params={"tz": "Pacific/Chatham"},
                          headers=headers)  # fmt: skip
    assert ok.status == 200


async def test_who_may_see_course_figures(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    _, other = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    _, student = await signed_in(client, db)
    published = await make_course(db, owner, is_published=True)
    draft = await make_course(db, owner)
    path = "/api/v1/analytics/courses/{}"
    assert (await client.get(path.format(published["id"]), headers=owner_headers)).status == 200
    assert (await client.get(path.format(draft["id"]), headers=admin)).status == 200
    assert (await client.get(path.format(published["id"]), headers=other)).status == 403
    assert (await client.get(path.format(published["id"]), headers=student)).status == 403
    assert (await client.get(path.format(draft["id"]), headers=other)).status == 404
    assert (await client.get(path.format(uuid.uuid4()), headers=admin)).status == 404
    assert (await client.get(path.format("not-a-uuid"), headers=admin)).status == 404
    assert (await client.get(path.format(published["id"]))).status == 401
    for query in ({}, {"format": "csv"}, {"format": "csv", "table": "students"}):
        assert (await client.get(path.format(published["id"]), params=query, headers=student)).status == 403


def parse_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_course_tables_as_csv(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    path = f"/api/v1/analytics/courses/{known['course']['id']}"
    response = await client.get(path, params={"format": "csv"}, headers=known["headers"])
    assert response.status == 200 and response.content_type == "text/csv"
    assert "lessons.csv" in response.headers["Content-Disposition"]
    lessons = parse_csv(await response.text())
    assert [(r["order"], r["completed_count"], r["completion_rate"]) for r in lessons] == [
        ("1", "3", "100.00"), ("2", "2", "66.67"), ("3", "1", "33.33"), ("4", "1", "33.33")
    ]  # fmt: skip

    response = await client.get(path, params={"format": "csv", "table": "students", "tz": "Asia/Tokyo"},
                                headers=known["headers"])  # fmt: skip
    assert response.status == 200 and response.content_type == "text/csv"
    students = {r["full_name"]: r for r in parse_csv(await response.text())}
    assert set(students) == {"Sam One", "Sue Two", "Sid Three", "'=Dee Four", "Pat Five"}
    sam = students["Sam One"]
    assert (sam["status"], sam["progress_percentage"], sam["completed_lessons_count"], sam["total_time_spent_seconds"],
            sam["quiz_attempts"], sam["quiz_average_percentage"], sam["rating"]) == (
        "active", "50.00", "2", "120", "2", "97.50", "5")  # fmt: skip
    assert sam["enrolled_at"].endswith("+09:00")
    assert students["'=Dee Four"]["status"] == "dropped"


async def test_the_student_export_streams_every_row(client: Any, db: Database) -> None:
    from lms.analytics import exports

    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    for _ in range(exports.BATCH + 3):  # more than one batch
        await make_enrollment(db, await make_user(db), course)
    text = await (await client.get(f"/api/v1/analytics/courses/{course['id']}",
                                   params={"format": "csv", "table": "students"}, headers=headers)).text()  # fmt: skip
    rows = parse_csv(text)
    assert len(rows) == exports.BATCH + 3 and len({r["enrollment_id"] for r in rows}) == len(rows)


async def add_activity(db: Database, student: Row, at: datetime, seconds: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            insert(study_activity).values(student_id=student["id"], bucket=at, seconds=seconds, reports=1)
        )


async def test_my_progress_and_dashboard(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    s1, s3 = known["students"][0], known["students"][2]
    other_course = await make_course(db, known["owner"], is_published=True, lessons=2, title="Second")
    await make_enrollment(db, s1["user"], other_course)

    listing = await (await client.get("/api/v1/analytics/my-progress", headers=s1["headers"])).json()
    assert listing["total"] == 2 and listing["limit"] == 20
    mine = {item["course"]["title"]: item for item in listing["items"]}
    first = mine["Known numbers"]
    assert (first["progress_percentage"], first["completed_lessons_count"], first["total_lessons_count"],
            first["total_time_spent_seconds"], first["quiz_attempts"], first["quiz_average_percentage"]) == (
        "50.00", 2, 4, 120, 2, "97.50")  # fmt: skip
    assert first["last_accessed_at"] is not None and mine["Second"]["quiz_attempts"] == 0
    assert mine["Second"]["quiz_average_percentage"] is None
    only = await (await client.get("/api/v1/analytics/my-progress?status=completed", headers=s1["headers"])).json()
    assert only["total"] == 0

    async with db.transaction() as conn:
        await conn.execute(
            insert(certificates).values(
                enrollment_id=s3["enrollment"]["id"], student_id=s3["user"]["id"], course_id=known["course"]["id"],
                certificate_number="LMS-2026-TEST1", status="issued", completion_date=datetime.now(UTC),
                issued_at=datetime.now(UTC),
            )
        )  # fmt: skip
    board = await (await client.get("/api/v1/analytics/my-dashboard", headers=s3["headers"])).json()
    assert board["totals"] == {
        "enrollments": 1, "by_status": {"active": 0, "completed": 1, "dropped": 0, "expired": 0, "pending_payment": 0},
        "lessons_completed": 4, "time_spent_seconds": 40, "average_progress": "100.00",
    }  # fmt: skip
    assert board["continue_learning"] == []
    assert [c["certificate_number"] for c in board["certificates"]] == ["LMS-2026-TEST1"]
    assert board["quizzes"]["attempts"] == 1 and board["quizzes"]["average_percentage"] == "70.00"
    today = datetime.now(UTC).date()
    assert board["time_spent_per_day"][-1] == {"date": today.isoformat(), "seconds": 40}
    assert board["streak"] == {"current_days": 1, "longest_days": 1, "last_active_date": today.isoformat()}

    s1_board = await (await client.get("/api/v1/analytics/my-dashboard", headers=s1["headers"])).json()
    assert [e["course"]["title"] for e in s1_board["continue_learning"]] == ["Known numbers", "Second"]
    assert s1_board["quizzes"]["recent"][0]["percentage"] == "100.00" and s1_board["quizzes"]["passed"] == 2


async def test_streak_and_time_per_day_from_the_study_log(client: Any, db: Database) -> None:
    student, headers = await signed_in(client, db)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for days_ago, seconds in ((1, 300), (2, 60), (3, 30), (6, 600), (7, 600), (8, 600), (9, 600)):
        await add_activity(db, student, now - timedelta(days=days_ago), seconds)
    await add_activity(db, student, now - timedelta(days=1, minutes=30), 45)  # same day, another quarter hour
    board = await (await client.get("/api/v1/analytics/my-dashboard", headers=headers)).json()
    today = now.date()
    assert board["streak"] == {"current_days": 3, "longest_days": 4,
                               "last_active_date": (today - timedelta(days=1)).isoformat()}  # fmt: skip
    per_day = {d["date"]: d["seconds"] for d in board["time_spent_per_day"] if d["seconds"]}
    assert per_day[(today - timedelta(days=1)).isoformat()] == 345
    assert sum(per_day.values()) == 345 + 60 + 30 + 4 * 600


async def test_instructor_overview(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    owner, headers = known["owner"], known["headers"]
    second = await make_course(db, owner, title="Second", lessons=1)
    s1 = known["students"][0]
    await make_enrollment(db, s1["user"], second, status="completed", progress_percentage="100")
    await payment(db, s1["user"], second, "20.00", "USD", "completed")

    path = f"/api/v1/analytics/instructors/{owner['id']}/overview"
    body = await (await client.get(path, headers=headers)).json()
    assert body["instructor_id"] == str(owner["id"]) and body["full_name"] == "Ada Teacher"
    assert [c["title"] for c in body["courses"]] == ["Second", "Known numbers"]
    first = body["courses"][1]
    assert (first["total_enrollments"], first["completion_rate"], first["average_progress"], first["rating_average"],
            first["rating_count"]) == (5, "33.33", "58.33", "4.50", 2)  # fmt: skip
    assert [(r["currency"], r["net"]["amount"]) for r in first["revenue"]] == [("KWD", "7.500"), ("USD", "49.00")]
    assert body["distinct_students"] == 5
    assert body["totals"] == {
        "courses": 2, "published_courses": 1, "enrollments": 6, "completed": 2, "completion_rate": "50.00",
        "rating_average": "4.50", "rating_count": 2,
        "revenue": [
            {"currency": "KWD", "gross": {"amount": "10.000", "currency": "KWD"},
             "refunded": {"amount": "2.500", "currency": "KWD"}, "net": {"amount": "7.500", "currency": "KWD"},
             "payments": 1},
            {"currency": "USD", "gross": {"amount": "69.00", "currency": "USD"},
             "refunded": {"amount": "0.00", "currency": "USD"}, "net": {"amount": "69.00", "currency": "USD"},
             "payments": 2},
        ],
    }  # fmt: skip

    _, admin = await signed_in(client, db, role="admin")
    _, other = await signed_in(client, db, role="instructor")
    assert (await client.get(path, headers=admin)).status == 200
    assert (await client.get(path, headers=other)).status == 403
    assert (await client.get(path, headers=s1["headers"])).status == 403
    assert (await client.get(path)).status == 401
    unknown = f"/api/v1/analytics/instructors/{uuid.uuid4()}/overview"
    assert (await client.get(unknown, headers=admin)).status == 404
    a_student = f"/api/v1/analytics/instructors/{s1['user']['id']}/overview"
    assert (await client.get(a_student, headers=admin)).status == 404


async def test_system_overview(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    _, admin_headers = await signed_in(client, db, role="admin")
    await make_user(db, role="student", created_at=datetime.now(UTC) - timedelta(days=2))
    async with db.transaction() as conn:
        quiz_id = known["quiz"]["id"]
        for pin, started in (
            ("111111", datetime.now(UTC)),
            ("222222", datetime.now(UTC) - timedelta(days=60)),
            ("333333", None),
        ):
            await conn.execute(insert(live_sessions).values(quiz_id=quiz_id, host_id=known["owner"]["id"], pin=pin,
                                                            status="ended", started_at=started))  # fmt: skip

    response = await client.get("/api/v1/analytics/system/overview", headers=admin_headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    # Users: the owner, five students, the admin, the extra student.
    assert body["users_by_role"] == {"admin": 1, "instructor": 1, "student": 6} and body["total_users"] == 8
    today = datetime.now(UTC).date()
    assert {d["date"]: d["count"] for d in body["new_users_per_day"] if d["count"]} == {
        today.isoformat(): 7,
        (today - timedelta(days=2)).isoformat(): 1,
    }
    assert body["enrollments_by_status"] == {"active": 2, "completed": 1, "dropped": 1, "expired": 0,
                                             "pending_payment": 1}  # fmt: skip
    assert body["total_enrollments"] == 5
    assert sum(d["count"] for d in body["enrollments_per_day"]) == 5
    assert [(r["currency"], r["net"]["amount"], r["payments"]) for r in body["revenue_by_currency"]] == [
        ("KWD", "7.500", 1),
        ("USD", "49.00", 1),
    ]
    # Signed in: the owner, the five students, the admin (logins); nobody else.
    assert body["active_users"] == {"last_7_days": 7, "last_30_days": 7}
    assert body["live_sessions_run"] == {"total": 2, "in_range": 1}
    assert body["max_age_seconds"] == 0 and body["as_of"]

    _, instructor = await signed_in(client, db, role="instructor")
    assert (await client.get("/api/v1/analytics/system/overview", headers=instructor)).status == 403
    assert (
        await client.get("/api/v1/analytics/system/overview", headers=known["students"][0]["headers"])
    ).status == 403


async def test_the_overview_snapshot_is_shared_and_says_when_it_was_taken(aiohttp_client: Any, servers: Any,
                                                                         db: Database) -> None:  # fmt: skip
    from lms.app import create_app
    from tests.conftest import make_config

    config = make_config(servers, analytics={"overview_max_age_seconds": 600})
    a, b = await aiohttp_client(create_app(config)), await aiohttp_client(create_app(config))
    _, headers = await signed_in(a, db, role="admin")
    first = await (await a.get("/api/v1/analytics/system/overview", headers=headers)).json()
    await make_user(db)  # after the snapshot: not in it until it is recomputed
    second = await (await b.get("/api/v1/analytics/system/overview", headers=headers)).json()
    assert second == first and first["total_users"] == 1 and first["max_age_seconds"] == 600
    other_days = await (await b.get("/api/v1/analytics/system/overview", params={"tz": "Asia/Tokyo"},
                                    headers=headers)).json()  # fmt: skip
    assert other_days["total_users"] == 2 and other_days["as_of"] > first["as_of"]


async def test_stats_rows_follow_course_and_enrollment_deletion(client: Any, db: Database) -> None:
    known = await known_course(client, db)
    course_id = known["course"]["id"]
    async with db.transaction() as conn:
        await conn.execute(enrollments.delete().where(enrollments.c.id == known["students"][0]["enrollment"]["id"]))
    body = await (await client.get(f"/api/v1/analytics/courses/{course_id}", headers=known["headers"])).json()
    assert body["by_status"]["active"] == 1 and body["lessons"][0]["completed_count"] == 2
    assert body["lessons"][1]["completed_count"] == 1
    assert (await client.delete(f"/api/v1/courses/{course_id}", headers=known["headers"])).status in (204, 409)
