"""Enrollments: free and paid courses, duplicates under concurrency, who sees what, drop, stats."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select

from lms.db import Database
from lms.events import EnrollmentCreated
from lms.tables import email_log, enrollments
from tests.builders import collect_events, make_course, make_enrollment, make_user, signed_in

PROBLEM = "application/problem+json"
ENROLL = "/api/v1/enrollments"


async def test_free_course_enrollment_is_active_at_once_with_email_and_event(
    inline_client: Any, db: Database, smtp_server: Any
) -> None:
    client = inline_client
    events = collect_events(client.app)
    student, headers = await signed_in(client, db, full_name="Grace Student")
    course = await make_course(db, await make_user(db, role="instructor"), title="Free Python", is_published=True,
                               lessons=3)  # fmt: skip
    response = await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["status"] == "active" and body["student_id"] == str(student["id"])
    assert body["total_lessons_count"] == 3 and body["completed_lessons_count"] == 0
    assert body["progress_percentage"] == "0.00" and body["enrolled_at"]

    (mail,) = smtp_server.messages
    assert mail.rcpt_tos == [student["email"]]
    assert "Free Python" in mail.message.get_body(("plain",)).get_content()
    async with db.connection() as conn:
        assert await conn.fetch_val(select(email_log.c.template)) == "enrollment_confirmation"
    assert events == [
        EnrollmentCreated(
            course_id=course["id"], enrollment_id=uuid.UUID(body["id"]),
            student_id=student["id"], student_name="Grace Student", status="active",
        )
    ]  # fmt: skip


async def test_paid_course_answers_402_pointing_at_checkout(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=1,
                               price_amount="49.00", price_currency="USD")  # fmt: skip
    response = await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)
    assert response.status == 402 and response.content_type == PROBLEM
    problem = await response.json()
    assert problem["checkout"] == {
        "method": "POST", "href": "/api/v1/payments/checkout", "body": {"course_id": str(course["id"])},
    }  # fmt: skip
    assert problem["price"] == {"amount": "49.00", "currency": "USD"}
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(enrollments)) == 0


async def test_second_enrollment_is_a_conflict(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=1)
    assert (await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)).status == 201
    again = await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)
    assert again.status == 409 and again.content_type == PROBLEM


async def test_concurrent_enrollments_of_one_student_create_exactly_one(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=2)
    responses = await asyncio.gather(
        *(client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers) for _ in range(12))
    )
    assert sorted(r.status for r in responses) == [201] + [409] * 11
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(enrollments)) == 1


async def test_who_may_enroll_where(client: Any, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    _, student = await signed_in(client, db)
    _, instructor = await signed_in(client, db, role="instructor")
    draft = await make_course(db, owner, lessons=1)
    published = await make_course(db, owner, is_published=True, lessons=1)
    assert (await client.post(ENROLL, json={"course_id": str(draft["id"])}, headers=student)).status == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.post(ENROLL, json={"course_id": missing}, headers=student)).status == 404
    assert (await client.post(ENROLL, json={"course_id": str(published["id"])}, headers=instructor)).status == 403
    assert (await client.post(ENROLL, json={"course_id": str(published["id"])})).status == 401
    invalid = await client.post(ENROLL, json={"course_id": "nope"}, headers=student)
    assert invalid.status == 422 and invalid.content_type == PROBLEM


async def test_my_courses_lists_my_enrollments_with_their_courses(client: Any, db: Database) -> None:
    me, headers = await signed_in(client, db)
    instructor = await make_user(db, role="instructor")
    first = await make_course(db, instructor, title="First", is_published=True, lessons=1)
    second = await make_course(db, instructor, title="Second", is_published=True, lessons=1)
    await make_enrollment(db, me, first)
    await make_enrollment(db, me, second, status="dropped")
    await make_enrollment(db, await make_user(db), first)
    body = await (await client.get(f"{ENROLL}/my-courses", headers=headers)).json()
    assert body["total"] == 2 and {e["course"]["title"] for e in body["items"]} == {"First", "Second"}
    assert body["items"][0]["course"]["slug"] in (first["slug"], second["slug"])
    active = await (await client.get(f"{ENROLL}/my-courses?status=active", headers=headers)).json()
    assert [e["course"]["title"] for e in active["items"]] == ["First"]
    assert (await client.get(f"{ENROLL}/my-courses")).status == 401


async def test_an_enrollment_is_seen_by_its_student_the_owner_and_admins_only(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    student, student_headers = await signed_in(client, db)
    _, other_student = await signed_in(client, db)
    _, other_instructor = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    course = await make_course(db, owner, is_published=True, lessons=2)
    enrollment = await make_enrollment(db, student, course)
    url = f"{ENROLL}/{enrollment['id']}"
    for headers in (student_headers, owner_headers, admin):
        response = await client.get(url, headers=headers)
        assert response.status == 200
        body = await response.json()
        assert body["course"]["id"] == str(course["id"]) and body["lessons"] == []
    for headers in (other_student, other_instructor):
        response = await client.get(url, headers=headers)
        assert response.status == 404 and response.content_type == PROBLEM
    assert (await client.get(f"{ENROLL}/00000000-0000-0000-0000-000000000000", headers=admin)).status == 404


async def test_drop_makes_the_enrollment_dropped_and_a_free_course_can_be_rejoined(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    student, headers = await signed_in(client, db)
    _, stranger = await signed_in(client, db)
    course = await make_course(db, owner, is_published=True, lessons=2)
    enrolled = await (await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)).json()
    url = f"{ENROLL}/{enrolled['id']}"
    assert (await client.delete(url, headers=stranger)).status == 404
    assert (await client.delete(url, headers=owner_headers)).status == 403
    assert (await client.delete(url, headers=headers)).status == 204
    assert (await (await client.get(url, headers=headers)).json())["status"] == "dropped"
    assert (await client.delete(url, headers=headers)).status == 204  # dropping twice changes nothing
    lessons = await (await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)).json()
    assert all(lesson["locked"] for lesson in lessons)

    again = await client.post(ENROLL, json={"course_id": str(course["id"])}, headers=headers)
    assert again.status == 201
    assert (await again.json())["id"] == enrolled["id"] and (await again.json())["status"] == "active"

    done = await make_enrollment(db, student, await make_course(db, owner, is_published=True), status="completed")
    assert (await client.delete(f"{ENROLL}/{done['id']}", headers=headers)).status == 409


async def test_course_enrollments_and_stats_for_owner_and_admin(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    _, student = await signed_in(client, db)
    course = await make_course(db, owner, is_published=True, lessons=4, rating_average="4.50", rating_count=2)
    ann, ben = await make_user(db, full_name="Ann"), await make_user(db, full_name="Ben")
    await make_enrollment(
        db, ann, course, progress_percentage="50", completed_lessons_count=2, total_time_spent_seconds=600
    )
    await make_enrollment(db, ben, course, status="completed", progress_percentage="100", completed_lessons_count=4,
                          total_time_spent_seconds=1800)  # fmt: skip
    await make_enrollment(db, await make_user(db, full_name="Cy"), course, status="dropped")

    listing = await (await client.get(f"/api/v1/courses/{course['id']}/enrollments", headers=owner_headers)).json()
    assert listing["total"] == 3 and {e["student"]["full_name"] for e in listing["items"]} == {"Ann", "Ben", "Cy"}
    dropped = await (
        await client.get(f"/api/v1/courses/{course['id']}/enrollments?status=dropped", headers=admin)
    ).json()
    assert [e["student"]["full_name"] for e in dropped["items"]] == ["Cy"]

    stats = await (await client.get(f"/api/v1/courses/{course['id']}/enrollments/stats", headers=owner_headers)).json()
    assert stats["total_enrollments"] == 3
    assert stats["by_status"] == {"active": 1, "completed": 1, "dropped": 1, "expired": 0, "pending_payment": 0}
    assert stats["completion_rate"] == "50.00" and stats["average_progress"] == "75.00"
    assert stats["average_time_spent_seconds"] == 1200
    assert stats["rating_average"] == "4.50" and stats["rating_count"] == 2

    for path in ("enrollments", "enrollments/stats"):
        assert (await client.get(f"/api/v1/courses/{course['id']}/{path}", headers=student)).status == 403
        assert (await client.get(f"/api/v1/courses/{course['id']}/{path}")).status == 401
