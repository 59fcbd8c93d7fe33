"""Courses: slugs, visibility of drafts, publishing, search, ownership, deletion, money."""

from __future__ import annotations

import asyncio
from typing import Any

from lms.db import Database
from tests.builders import make_course, make_enrollment, make_user, signed_in

PROBLEM = "application/problem+json"
COURSES = "/api/v1/courses"


async def create(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(COURSES, json={"title": "A course"} | body, headers=headers)
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_slugs_are_unique_and_kept_when_the_title_changes(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    first = await create(client, headers, title="Python")
    assert first["slug"] == "python" and first["is_published"] is False
    assert (await create(client, headers, title="Python"))["slug"] == "python-2"
    assert (await create(client, headers, title="  python!! "))["slug"] == "python-3"
    assert (await create(client, headers, title="Café Crème & Ünïcode"))["slug"] == "cafe-creme-unicode"
    assert (await create(client, headers, title="مقدمة في البرمجة"))["slug"] == "مقدمة-في-البرمجة"

    renamed = await client.patch(f"{COURSES}/{first['id']}", json={"title": "Python for Data"}, headers=headers)
    assert renamed.status == 200
    body = await renamed.json()
    assert body["title"] == "Python for Data" and body["slug"] == "python"
    assert (await client.get(f"{COURSES}/python", headers=headers)).status == 200


async def test_concurrent_courses_with_one_title_get_distinct_slugs(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    responses = await asyncio.gather(*(client.post(COURSES, json={"title": "Rust"}, headers=headers) for _ in range(6)))
    assert [r.status for r in responses] == [201] * 6
    slugs = sorted([(await r.json())["slug"] for r in responses])
    assert slugs == sorted(["rust", "rust-2", "rust-3", "rust-4", "rust-5", "rust-6"])


async def test_only_instructors_and_admins_create_courses(client: Any, db: Database) -> None:
    _, student = await signed_in(client, db)
    refused = await client.post(COURSES, json={"title": "Nope"}, headers=student)
    assert refused.status == 403 and refused.content_type == PROBLEM
    assert (await client.post(COURSES, json={"title": "Nope"})).status == 401
    _, admin = await signed_in(client, db, role="admin")
    assert (await client.post(COURSES, json={"title": "Admin course"}, headers=admin)).status == 201


async def test_invalid_course_input_is_a_422_naming_the_field(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    for body, field in (
        ({"title": "   "}, "title"),
        ({"title": "x", "difficulty_level": "expert"}, "difficulty_level"),
        ({"title": "x", "price": {"amount": "-1", "currency": "USD"}}, "price.amount"),
        ({"title": "x", "price": {"amount": "10.001", "currency": "USD"}}, "price.amount"),
        ({"title": "x", "price": {"amount": "10", "currency": "dollars"}}, "price.currency"),
        ({"title": "x", "estimated_duration_minutes": -5}, "estimated_duration_minutes"),
        ({"title": "x", "slug": "chosen"}, "slug"),
    ):
        response = await client.post(COURSES, json=body, headers=headers)
        assert response.status == 422, body
        assert field in [e["field"] for e in (await response.json())["errors"]], body


async def test_price_is_a_decimal_string_with_its_currency(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    paid = await create(client, headers, title="Paid", price={"amount": "49", "currency": "usd"})
    assert paid["price"] == {"amount": "49.00", "currency": "USD"} and paid["is_free"] is False
    free = await create(client, headers, title="Free", price={"amount": "0", "currency": "USD"})
    assert free["price"] is None and free["is_free"] is True
    changed = await client.patch(f"{COURSES}/{paid['id']}", json={"price": None}, headers=headers)
    assert (await changed.json())["price"] is None
    changed = await client.patch(
        f"{COURSES}/{paid['id']}", json={"price": {"amount": "19.99", "currency": "EUR"}}, headers=headers
    )
    assert (await changed.json())["price"] == {"amount": "19.99", "currency": "EUR"}


async def test_drafts_are_visible_to_their_owner_and_admins_only(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    _, other_instructor = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db)
    _, admin = await signed_in(client, db, role="admin")
    draft = await make_course(db, owner, title="Secret draft")
    for ref in (draft["id"], draft["slug"]):
        assert (await client.get(f"{COURSES}/{ref}", headers=owner_headers)).status == 200
        assert (await client.get(f"{COURSES}/{ref}", headers=admin)).status == 200
        for headers in ({}, student, other_instructor):
            response = await client.get(f"{COURSES}/{ref}", headers=headers)
            assert response.status == 404 and response.content_type == PROBLEM
    published = await make_course(db, owner, is_published=True, lessons=1)
    assert (await client.get(f"{COURSES}/{published['slug']}")).status == 200
    assert (await client.get(f"{COURSES}/no-such-course")).status == 404
    # A token that is sent but not valid is a 401, not an anonymous view.
    assert (await client.get(f"{COURSES}/{published['id']}", headers={"Authorization": "Bearer junk"})).status == 401


async def test_publishing_needs_a_published_lesson(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    course = await create(client, headers, title="Empty")
    refused = await client.post(f"{COURSES}/{course['id']}/publish", headers=headers)
    assert refused.status == 409 and refused.content_type == PROBLEM
    draft_lesson = await client.post(
        f"{COURSES}/{course['id']}/lessons",
        json={"title": "Draft", "content_type": "text", "is_published": False},
        headers=headers,
    )
    assert draft_lesson.status == 201
    assert (await client.post(f"{COURSES}/{course['id']}/publish", headers=headers)).status == 409
    await client.patch(
        f"/api/v1/lessons/{(await draft_lesson.json())['id']}", json={"is_published": True}, headers=headers
    )
    published = await client.post(f"{COURSES}/{course['id']}/publish", headers=headers)
    assert published.status == 200
    body = await published.json()
    assert body["is_published"] is True and body["published_at"] is not None
    assert (await client.get(f"{COURSES}/{course['id']}")).status == 200
    unpublished = await client.post(f"{COURSES}/{course['id']}/unpublish", headers=headers)
    assert (await unpublished.json())["is_published"] is False
    assert (await client.get(f"{COURSES}/{course['id']}")).status == 404


async def test_others_cannot_change_a_course(client: Any, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    _, other = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db)
    _, admin = await signed_in(client, db, role="admin")
    published = await make_course(db, owner, is_published=True, lessons=1)
    draft = await make_course(db, owner)
    assert (await client.patch(f"{COURSES}/{published['id']}", json={"title": "Mine"}, headers=other)).status == 403
    assert (await client.patch(f"{COURSES}/{draft['id']}", json={"title": "Mine"}, headers=other)).status == 404
    assert (await client.post(f"{COURSES}/{published['id']}/unpublish", headers=other)).status == 403
    assert (await client.patch(f"{COURSES}/{published['id']}", json={"title": "Mine"}, headers=student)).status == 403
    assert (await client.delete(f"{COURSES}/{draft['id']}", headers=other)).status == 404
    fixed = await client.patch(f"{COURSES}/{draft['id']}", json={"title": "Fixed by admin"}, headers=admin)
    assert fixed.status == 200 and (await fixed.json())["instructor_id"] == str(owner["id"])
    assert (await client.patch(f"{COURSES}/{draft['id']}", json={"title": None}, headers=admin)).status == 422


async def test_list_filters_searches_and_pages_published_courses(client: Any, db: Database) -> None:
    ada = await make_user(db, role="instructor")
    bob = await make_user(db, role="instructor")
    await make_course(db, ada, title="Python basics", description="Variables and loops", category="programming",
                      difficulty_level="beginner", is_published=True, lessons=1)  # fmt: skip
    await make_course(db, ada, title="Advanced Python", description="Metaclasses and descriptors",
                      category="programming", difficulty_level="advanced", is_published=True, lessons=1)  # fmt: skip
    await make_course(db, bob, title="Watercolour", description="Painting with Python-free brushes",
                      category="art", difficulty_level="beginner", is_published=True, lessons=1)  # fmt: skip
    await make_course(db, bob, title="Python draft", category="programming")

    everything = await (await client.get(COURSES)).json()
    assert everything["total"] == 3 and everything["limit"] == 20 and everything["offset"] == 0
    assert "Python draft" not in [c["title"] for c in everything["items"]]

    async def titles(query: str) -> list[str]:
        body = await (await client.get(f"{COURSES}?{query}")).json()
        return sorted(c["title"] for c in body["items"])

    assert await titles("category=programming") == ["Advanced Python", "Python basics"]
    assert await titles("difficulty_level=beginner") == ["Python basics", "Watercolour"]
    assert await titles(f"instructor_id={bob['id']}") == ["Watercolour"]
    assert await titles("q=python") == ["Advanced Python", "Python basics", "Watercolour"]
    assert await titles("q=metaclasses") == ["Advanced Python"]
    assert await titles("q=python -free") == ["Advanced Python", "Python basics"]
    assert await titles("q=loops&category=programming") == ["Python basics"]
    assert await titles("q=nothing-like-this") == []
    page = await (await client.get(f"{COURSES}?limit=2&offset=2")).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    assert (await client.get(f"{COURSES}?limit=101")).status == 422
    assert (await client.get(f"{COURSES}?difficulty_level=expert")).status == 422
    assert (await client.get(f"{COURSES}?instructor_id=nope")).status == 422


async def test_mine_lists_the_instructors_own_courses_with_drafts(client: Any, db: Database) -> None:
    me, headers = await signed_in(client, db, role="instructor")
    other = await make_user(db, role="instructor")
    await make_course(db, me, title="My draft")
    await make_course(db, me, title="My published", is_published=True, lessons=1)
    await make_course(db, other, title="Not mine", is_published=True, lessons=1)
    body = await (await client.get(f"{COURSES}/mine", headers=headers)).json()
    assert body["total"] == 2 and sorted(c["title"] for c in body["items"]) == ["My draft", "My published"]
    _, student = await signed_in(client, db)
    assert (await client.get(f"{COURSES}/mine", headers=student)).status == 403


async def test_delete_is_refused_while_students_are_enrolled_unless_an_admin_forces(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    course = await make_course(db, owner, is_published=True, lessons=2)
    await make_enrollment(db, await make_user(db), course)
    await make_enrollment(db, await make_user(db), course, status="dropped")
    refused = await client.delete(f"{COURSES}/{course['id']}", headers=headers)
    assert refused.status == 409 and (await refused.json())["enrolled"] == 1
    assert (await client.delete(f"{COURSES}/{course['id']}?force=true", headers=headers)).status == 403
    assert (await client.delete(f"{COURSES}/{course['id']}", headers=admin)).status == 409
    assert (await client.delete(f"{COURSES}/{course['id']}?force=true", headers=admin)).status == 204
    assert (await client.get(f"{COURSES}/{course['id']}", headers=admin)).status == 404

    empty = await make_course(db, owner)
    assert (await client.delete(f"{COURSES}/{empty['id']}", headers=headers)).status == 204
    assert (await client.delete(f"{COURSES}/{empty['id']}", headers=headers)).status == 404


async def test_courses_are_in_the_openapi_document(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    for path in (
        "/api/v1/courses",
        "/api/v1/courses/mine",
        "/api/v1/courses/{id}",
        "/api/v1/courses/{id}/publish",
        "/api/v1/courses/{id}/unpublish",
        "/api/v1/courses/{id}/lessons",
        "/api/v1/courses/{id}/lessons/order",
        "/api/v1/lessons/{id}",
        "/api/v1/enrollments",
        "/api/v1/enrollments/my-courses",
        "/api/v1/enrollments/{id}",
        "/api/v1/courses/{id}/enrollments",
        "/api/v1/courses/{id}/enrollments/stats",
        "/api/v1/enrollments/{id}/lessons/{lesson_id}/progress",
        "/api/v1/enrollments/{id}/lessons/{lesson_id}/complete",
        "/api/v1/enrollments/{id}/review",
    ):
        assert path in doc["paths"], path
    price = doc["components"]["schemas"]["Money"]["properties"]["amount"]
    assert "string" in str(price)
