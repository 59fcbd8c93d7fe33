"""Lessons: ordering, reordering in one transaction, content visibility, ownership."""

from __future__ import annotations

from typing import Any

from lms.db import Database
from tests.builders import make_course, make_enrollment, make_lesson, make_user, signed_in

PROBLEM = "application/problem+json"


async def add(client: Any, course_id: Any, headers: dict[str, str], title: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/courses/{course_id}/lessons", json={"title": title, "content_type": "text"} | body, headers=headers
    )
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def titles(client: Any, course_id: Any, headers: dict[str, str]) -> list[tuple[int, str]]:
    lessons = await (await client.get(f"/api/v1/courses/{course_id}/lessons", headers=headers)).json()
    return [(lesson["order"], lesson["title"]) for lesson in lessons]


async def test_lessons_append_or_insert_at_an_order(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner)
    first = await add(client, course["id"], headers, "Intro", content="Hello", is_free=True)
    assert first["order"] == 1 and first["slug"] == "intro" and first["is_free"] is True
    await add(
        client,
        course["id"],
        headers,
        "Loops",
        content_type="video",
        video_url="https://v.example/1",
        duration_seconds=600,
    )
    await add(client, course["id"], headers, "Setup", order=1)
    await add(client, course["id"], headers, "Far away", order=99)
    await add(client, course["id"], headers, "Intro")
    assert await titles(client, course["id"], headers) == [
        (1, "Setup"), (2, "Intro"), (3, "Loops"), (4, "Far away"), (5, "Intro"),
    ]  # fmt: skip
    slugs = [
        lesson["slug"]
        for lesson in await (await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)).json()
    ]
    assert sorted(slugs) == ["far-away", "intro", "intro-2", "loops", "setup"]
    bad = await client.post(
        f"/api/v1/courses/{course['id']}/lessons", json={"title": "x", "content_type": "podcast"}, headers=headers
    )
    assert bad.status == 422 and (await bad.json())["errors"][0]["field"] == "content_type"


async def test_reorder_applies_a_full_permutation_in_one_transaction(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, lessons=4)
    lessons = await (await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)).json()
    ids = [lesson["id"] for lesson in lessons]
    reordered = await client.put(
        f"/api/v1/courses/{course['id']}/lessons/order", json={"lesson_ids": ids[::-1]}, headers=headers
    )
    assert reordered.status == 200
    assert [(lesson["order"], lesson["id"]) for lesson in await reordered.json()] == list(enumerate(ids[::-1], start=1))
    assert await titles(client, course["id"], headers) == [
        (1, "Lesson 4"),
        (2, "Lesson 3"),
        (3, "Lesson 2"),
        (4, "Lesson 1"),
    ]

    other = await make_lesson(db, await make_course(db, owner), title="Elsewhere")
    for wrong in (ids[:3], [*ids, ids[0]], [*ids[:3], str(other["id"])]):
        response = await client.put(
            f"/api/v1/courses/{course['id']}/lessons/order", json={"lesson_ids": wrong}, headers=headers
        )
        assert response.status == 422 and response.content_type == PROBLEM
    assert await titles(client, course["id"], headers) == [
        (1, "Lesson 4"),
        (2, "Lesson 3"),
        (3, "Lesson 2"),
        (4, "Lesson 1"),
    ]


async def test_moving_and_deleting_keep_positions_contiguous(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, lessons=4)
    lessons = await (await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)).json()
    moved = await client.patch(f"/api/v1/lessons/{lessons[3]['id']}", json={"order": 2}, headers=headers)
    assert moved.status == 200 and (await moved.json())["order"] == 2
    assert await titles(client, course["id"], headers) == [
        (1, "Lesson 1"),
        (2, "Lesson 4"),
        (3, "Lesson 2"),
        (4, "Lesson 3"),
    ]
    await client.patch(
        f"/api/v1/lessons/{lessons[0]['id']}", json={"order": 10, "title": "First, now last"}, headers=headers
    )
    assert await titles(client, course["id"], headers) == [
        (1, "Lesson 4"), (2, "Lesson 2"), (3, "Lesson 3"), (4, "First, now last"),
    ]  # fmt: skip
    assert (await client.delete(f"/api/v1/lessons/{lessons[1]['id']}", headers=headers)).status == 204
    assert await titles(client, course["id"], headers) == [(1, "Lesson 4"), (2, "Lesson 3"), (3, "First, now last")]
    assert (await client.get(f"/api/v1/lessons/{lessons[1]['id']}", headers=headers)).status == 404
    assert (
        await client.patch(f"/api/v1/lessons/{lessons[2]['id']}", json={"title": None}, headers=headers)
    ).status == 422


async def test_content_only_for_enrolled_owner_admin_or_free_lessons(client: Any, db: Database) -> None:
    owner, owner_headers = await signed_in(client, db, role="instructor")
    enrolled, enrolled_headers = await signed_in(client, db)
    dropped, dropped_headers = await signed_in(client, db)
    _, stranger = await signed_in(client, db)
    _, admin = await signed_in(client, db, role="admin")
    course = await make_course(db, owner, is_published=True)
    free = await make_lesson(db, course, title="Free", content="free text", is_free=True)
    paid = await make_lesson(db, course, title="Paid", content="secret text", video_url="https://v.example/2")
    draft = await make_lesson(db, course, title="Draft", content="draft text", is_published=False)
    await make_enrollment(db, enrolled, course)
    await make_enrollment(db, dropped, course, status="dropped")

    async def seen(headers: dict[str, str]) -> dict[str, tuple[str | None, bool]]:
        response = await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=headers)
        assert response.status == 200
        return {lesson["title"]: (lesson["content"], lesson["locked"]) for lesson in await response.json()}

    locked = {"Free": ("free text", False), "Paid": (None, True)}
    assert await seen({}) == locked
    assert await seen(stranger) == locked
    assert await seen(dropped_headers) == locked
    assert await seen(enrolled_headers) == {"Free": ("free text", False), "Paid": ("secret text", False)}
    full = {"Free": ("free text", False), "Paid": ("secret text", False), "Draft": ("draft text", False)}
    assert await seen(owner_headers) == full
    assert await seen(admin) == full

    single = await (await client.get(f"/api/v1/lessons/{paid['id']}")).json()
    assert single["content"] is None and single["video_url"] is None and single["locked"] is True
    assert (await (await client.get(f"/api/v1/lessons/{paid['id']}", headers=enrolled_headers)).json())[
        "content"
    ] == "secret text"
    assert (await (await client.get(f"/api/v1/lessons/{free['id']}")).json())["content"] == "free text"
    assert (await client.get(f"/api/v1/lessons/{draft['id']}", headers=enrolled_headers)).status == 404
    assert (await client.get(f"/api/v1/lessons/{draft['id']}", headers=owner_headers)).status == 200


async def test_lessons_of_a_draft_course_are_hidden(client: Any, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    _, student = await signed_in(client, db)
    course = await make_course(db, owner)
    lesson = await make_lesson(db, course, is_free=True)
    assert (await client.get(f"/api/v1/courses/{course['id']}/lessons", headers=student)).status == 404
    assert (await client.get(f"/api/v1/lessons/{lesson['id']}", headers=student)).status == 404
    assert (await client.get("/api/v1/lessons/not-a-uuid")).status == 404


async def test_only_the_owner_or_an_admin_changes_lessons(client: Any, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    _, other = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db)
    _, admin = await signed_in(client, db, role="admin")
    published = await make_course(db, owner, is_published=True, lessons=1)
    draft = await make_course(db, owner)
    lesson = await make_lesson(db, published)
    body = {"title": "Mine", "content_type": "text"}
    assert (await client.post(f"/api/v1/courses/{published['id']}/lessons", json=body, headers=other)).status == 403
    assert (await client.post(f"/api/v1/courses/{draft['id']}/lessons", json=body, headers=other)).status == 404
    assert (await client.post(f"/api/v1/courses/{published['id']}/lessons", json=body, headers=student)).status == 403
    assert (await client.post(f"/api/v1/courses/{published['id']}/lessons", json=body)).status == 401
    assert (await client.patch(f"/api/v1/lessons/{lesson['id']}", json={"title": "x"}, headers=other)).status == 403
    assert (await client.delete(f"/api/v1/lessons/{lesson['id']}", headers=other)).status == 403
    order = {"lesson_ids": [str(lesson["id"])]}
    assert (
        await client.put(f"/api/v1/courses/{published['id']}/lessons/order", json=order, headers=other)
    ).status == 403
    assert (await client.post(f"/api/v1/courses/{draft['id']}/lessons", json=body, headers=admin)).status == 201
