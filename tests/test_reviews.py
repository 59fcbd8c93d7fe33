"""Reviews: one per enrollment, replaced on update, the course average kept exact under concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

from lms.db import Database
from tests.builders import bearer, login, make_course, make_enrollment, make_user, signed_in

PROBLEM = "application/problem+json"


def review_url(enrollment: Any) -> str:
    return f"/api/v1/enrollments/{enrollment['id']}/review"


async def test_a_second_review_replaces_the_first(client: Any, db: Database) -> None:
    student, headers = await signed_in(client, db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=1)
    enrollment = await make_enrollment(db, student, course)
    first = await client.post(review_url(enrollment), json={"rating": 5, "review": "  Great course  "}, headers=headers)
    assert first.status == 200, await first.text()
    body = await first.json()
    assert body["rating"] == 5 and body["review"] == "Great course" and body["reviewed_at"]
    assert body["course_rating_average"] == "5.00" and body["course_rating_count"] == 1

    second = await (await client.post(review_url(enrollment), json={"rating": 2}, headers=headers)).json()
    assert second["rating"] == 2 and second["review"] is None
    assert second["course_rating_average"] == "2.00" and second["course_rating_count"] == 1
    shown = await (await client.get(f"/api/v1/courses/{course['id']}")).json()
    assert shown["rating_average"] == "2.00" and shown["rating_count"] == 1
    detail = await (await client.get(f"/api/v1/enrollments/{enrollment['id']}", headers=headers)).json()
    assert detail["rating"] == 2 and detail["review"] is None


async def test_concurrent_reviews_keep_the_course_average_exact(client: Any, db: Database) -> None:
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=1)
    ratings = [1, 2, 3, 4, 5, 5, 4, 4, 5, 2, 3, 1]
    calls = []
    for rating in ratings:
        student = await make_user(db)
        enrollment = await make_enrollment(db, student, course)
        headers = bearer((await login(client, student["email"]))["access_token"])
        calls.append(client.post(review_url(enrollment), json={"rating": rating}, headers=headers))
    responses = await asyncio.gather(*calls)
    assert [r.status for r in responses] == [200] * len(ratings)
    shown = await (await client.get(f"/api/v1/courses/{course['id']}")).json()
    assert shown["rating_count"] == len(ratings)
    assert shown["rating_average"] == f"{sum(ratings) / len(ratings):.2f}"


async def test_only_the_studying_student_reviews(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    student, headers = await signed_in(client, db)
    _, stranger = await signed_in(client, db)
    course = await make_course(db, owner, is_published=True, lessons=1)
    enrollment = await make_enrollment(db, student, course)
    assert (await client.post(review_url(enrollment), json={"rating": 5}, headers=stranger)).status == 404
    assert (await client.post(review_url(enrollment), json={"rating": 5}, headers=owner_headers)).status == 403
    assert (await client.post(review_url(enrollment), json={"rating": 5})).status == 401
    for rating in (0, 6, "five", None):
        response = await client.post(review_url(enrollment), json={"rating": rating}, headers=headers)
        assert response.status == 422 and response.content_type == PROBLEM
    assert (
        await client.post(review_url(enrollment), json={"rating": 4, "review": "x" * 5001}, headers=headers)
    ).status == 422
    dropped = await make_enrollment(db, student, await make_course(db, owner, is_published=True), status="dropped")
    refused = await client.post(review_url(dropped), json={"rating": 1}, headers=headers)
    assert refused.status == 409 and refused.content_type == PROBLEM
    completed = await make_enrollment(db, student, await make_course(db, owner, is_published=True), status="completed")
    assert (await client.post(review_url(completed), json={"rating": 4}, headers=headers)).status == 200
