"""Authoring quizzes and questions through the API: who may do what."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, insert, select

from lms.db import Database
from lms.tables import quiz_attempts
from tests.builders import make_question, make_quiz, make_quiz_course, make_quiz_enrollment, make_user, signed_in
from tests.polling import eventually

Client = TestClient  # type: ignore[type-arg]


async def _owner_and_course(client: Client, db: Database, **course: Any) -> tuple[dict[str, str], Any]:
    owner, headers = await signed_in(client, db, role="instructor")
    return headers, await make_quiz_course(db, instructor_id=owner["id"], **course)


async def _student(client: Client, db: Database, course_id: Any, status: str | None = "active") -> dict[str, str]:
    student, headers = await signed_in(client, db, role="student")
    if status:
        await make_quiz_enrollment(db, student_id=student["id"], course_id=course_id, status=status)
    return headers


# -- quizzes -------------------------------------------------------------------


async def test_owner_creates_an_unpublished_quiz(client: Client, db: Database) -> None:
    headers, course = await _owner_and_course(client, db)
    response = await client.post(
        f"/api/v1/courses/{course['id']}/quizzes",
        json={"title": " Week 1 ", "quiz_type": "graded", "passing_score": 62.5, "time_limit_seconds": 600},
        headers=headers,
    )
    assert response.status == 201, await response.text()
    quiz = await response.json()
    assert quiz["title"] == "Week 1"
    assert quiz["course_id"] == str(course["id"])
    assert quiz["passing_score"] == 62.5
    assert quiz["time_limit_seconds"] == 600
    assert quiz["max_attempts"] is None
    assert quiz["is_published"] is False
    assert quiz["question_count"] == 0
    assert quiz["show_correct_answers"] is True


async def test_students_cannot_create_quizzes(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db)
    student = await _student(client, db, course["id"])
    response = await client.post(f"/api/v1/courses/{course['id']}/quizzes", json={"title": "x"}, headers=student)
    assert response.status == 403


async def test_another_instructor_is_refused_on_a_visible_course_and_blind_to_a_draft(
    client: Client, db: Database
) -> None:
    _, published = await _owner_and_course(client, db)
    _, draft = await _owner_and_course(client, db, is_published=False)
    _, other = await signed_in(client, db, role="instructor")
    response = await client.post(f"/api/v1/courses/{published['id']}/quizzes", json={"title": "x"}, headers=other)
    assert response.status == 403
    response = await client.post(f"/api/v1/courses/{draft['id']}/quizzes", json={"title": "x"}, headers=other)
    assert response.status == 404


async def test_admin_creates_a_quiz_in_any_course(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db, is_published=False)
    _, admin = await signed_in(client, db, role="admin")
    response = await client.post(f"/api/v1/courses/{course['id']}/quizzes", json={"title": "x"}, headers=admin)
    assert response.status == 201


async def test_quiz_settings_are_validated(client: Client, db: Database) -> None:
    headers, course = await _owner_and_course(client, db)
    url = f"/api/v1/courses/{course['id']}/quizzes"
    for body, field in [
        ({"title": "x", "passing_score": 101}, "passing_score"),
        ({"title": "x", "max_attempts": 0}, "max_attempts"),
        ({"title": "x", "time_limit_seconds": 0}, "time_limit_seconds"),
        ({"title": "x", "quiz_type": "exam"}, "quiz_type"),
        ({"title": "   "}, "title"),
        ({"title": "x", "lesson_id": "00000000-0000-0000-0000-000000000001"}, "lesson_id"),
    ]:
        response = await client.post(url, json=body, headers=headers)
        assert response.status == 422, body
        assert field in [e["field"] for e in (await response.json())["errors"]], body


async def test_unknown_course_is_not_found(client: Client, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    response = await client.post(
        "/api/v1/courses/00000000-0000-0000-0000-000000000000/quizzes", json={"title": "x"}, headers=headers
    )
    assert response.status == 404
    response = await client.get("/api/v1/courses/not-a-uuid/quizzes", headers=headers)
    assert response.status == 404


async def test_owner_lists_drafts_and_enrolled_students_only_published(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    published = await make_quiz(db, course_id=course["id"], title="Published")
    await make_quiz(db, course_id=course["id"], title="Draft", is_published=False)
    student = await _student(client, db, course["id"])
    url = f"/api/v1/courses/{course['id']}/quizzes"

    page = await (await client.get(url, headers=owner)).json()
    assert page["total"] == 2
    assert {q["title"] for q in page["items"]} == {"Published", "Draft"}

    response = await client.get(url, headers=student)
    assert response.status == 200
    page = await response.json()
    assert (page["total"], page["limit"], page["offset"]) == (1, 20, 0)
    assert [q["id"] for q in page["items"]] == [str(published["id"])]


async def test_students_not_enrolled_cannot_list_quizzes(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db)
    _, draft_course = await _owner_and_course(client, db, is_published=False)
    stranger = await _student(client, db, course["id"], status=None)
    dropped = await _student(client, db, course["id"], status="dropped")
    assert (await client.get(f"/api/v1/courses/{course['id']}/quizzes", headers=stranger)).status == 403
    assert (await client.get(f"/api/v1/courses/{course['id']}/quizzes", headers=dropped)).status == 403
    assert (await client.get(f"/api/v1/courses/{draft_course['id']}/quizzes", headers=stranger)).status == 404
    assert (await client.get(f"/api/v1/courses/{course['id']}/quizzes")).status == 401


async def test_a_quiz_is_visible_to_owner_and_enrolled_students_when_published(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    draft = await make_quiz(db, course_id=course["id"], is_published=False)
    await make_question(db, quiz_id=quiz["id"])
    student = await _student(client, db, course["id"])
    stranger = await _student(client, db, course["id"], status=None)

    response = await client.get(f"/api/v1/quizzes/{quiz['id']}", headers=student)
    assert response.status == 200
    assert (await response.json())["question_count"] == 1
    assert (await client.get(f"/api/v1/quizzes/{draft['id']}", headers=student)).status == 404
    assert (await client.get(f"/api/v1/quizzes/{draft['id']}", headers=owner)).status == 200
    assert (await client.get(f"/api/v1/quizzes/{quiz['id']}", headers=stranger)).status == 404


async def test_owner_updates_a_quiz_and_may_clear_nullable_settings(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"], max_attempts=3, time_limit_seconds=60)
    response = await client.patch(
        f"/api/v1/quizzes/{quiz['id']}",
        json={"title": "Renamed", "max_attempts": None, "shuffle_questions": True},
        headers=owner,
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["title"], body["max_attempts"], body["time_limit_seconds"]) == ("Renamed", None, 60)
    assert body["shuffle_questions"] is True
    response = await client.patch(f"/api/v1/quizzes/{quiz['id']}", json={"title": None}, headers=owner)
    assert response.status == 422


async def test_only_the_owner_or_an_admin_changes_a_quiz(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    student = await _student(client, db, course["id"])
    _, other = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    url = f"/api/v1/quizzes/{quiz['id']}"
    assert (await client.patch(url, json={"title": "x"}, headers=student)).status == 403
    assert (await client.patch(url, json={"title": "x"}, headers=other)).status == 404
    assert (await client.patch(url, json={"title": "x"}, headers=admin)).status == 200
    assert (await client.post(f"{url}/publish", headers=student)).status == 403
    assert (await client.delete(url, headers=other)).status == 404


async def test_publishing_needs_a_question(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"], is_published=False)
    url = f"/api/v1/quizzes/{quiz['id']}/publish"
    response = await client.post(url, headers=owner)
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    await make_question(db, quiz_id=quiz["id"])
    for _ in range(2):  # publishing again changes nothing
        response = await client.post(url, headers=owner)
        assert response.status == 200
        assert (await response.json())["is_published"] is True


async def test_deleting_a_quiz_with_attempts_needs_an_admin_and_force(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    await make_question(db, quiz_id=quiz["id"])
    student = await _student(client, db, course["id"])
    assert (await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=student)).status == 201
    _, admin = await signed_in(client, db, role="admin")

    assert (await client.delete(f"/api/v1/quizzes/{quiz['id']}", headers=owner)).status == 409
    assert (await client.delete(f"/api/v1/quizzes/{quiz['id']}?force=true", headers=owner)).status == 409
    assert (await client.delete(f"/api/v1/quizzes/{quiz['id']}?force=true", headers=admin)).status == 204
    assert (await client.get(f"/api/v1/quizzes/{quiz['id']}", headers=owner)).status == 404

    empty = await make_quiz(db, course_id=course["id"])
    assert (await client.delete(f"/api/v1/quizzes/{empty['id']}", headers=owner)).status == 204


async def lock_waiters(db: Database) -> int:
    async with db.connection() as conn:
        return int(await conn.fetch_val("SELECT count(*) FROM pg_locks WHERE NOT granted"))


async def test_a_delete_waits_for_an_attempt_being_started_and_then_refuses(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    await make_question(db, quiz_id=quiz["id"])
    student, _ = await signed_in(client, db, role="student")
    enrollment = await make_quiz_enrollment(db, student_id=student["id"], course_id=course["id"])
    # An attempt whose start has not committed yet (its insert holds the quiz row's key-share lock).
    async with db.transaction() as conn:
        await conn.execute(
            insert(quiz_attempts).values(
                enrollment_id=enrollment["id"], quiz_id=quiz["id"], student_id=student["id"], attempt_number=1
            )
        )
        deleting = asyncio.create_task(client.delete(f"/api/v1/quizzes/{quiz['id']}", headers=owner))
        await eventually(lambda: lock_waiters(db), what="the delete waiting for the start's lock")
        assert not deleting.done()
    response = await deleting
    assert response.status == 409  # it counted the attempt that committed meanwhile, and deleted nothing
    async with db.connection() as conn:
        assert await conn.fetch_val(select(func.count()).select_from(quiz_attempts)) == 1


async def test_concurrent_starts_and_a_delete_never_lose_an_attempt(client: Client, db: Database) -> None:
    for _ in range(3):
        owner, course = await _owner_and_course(client, db)
        quiz = await make_quiz(db, course_id=course["id"])
        await make_question(db, quiz_id=quiz["id"])
        students = [await _student(client, db, course["id"]) for _ in range(6)]
        url = f"/api/v1/quizzes/{quiz['id']}"
        responses = await asyncio.gather(
            *(client.post(f"{url}/attempts", headers=headers) for headers in students[:3]),
            client.delete(url, headers=owner),
            *(client.post(f"{url}/attempts", headers=headers) for headers in students[3:]),
        )
        deleted = responses[3].status
        started = [r.status for i, r in enumerate(responses) if i != 3]
        assert deleted in (204, 409) and set(started) <= {201, 404}
        # Either the delete won (every later start is a 404) or it saw the attempts that won (409).
        assert (deleted == 204) == (201 not in started)
        async with db.connection() as conn:
            kept = await conn.fetch_val(
                select(func.count()).select_from(quiz_attempts).where(quiz_attempts.c.quiz_id == quiz["id"])
            )
        assert kept == started.count(201)


# -- questions -----------------------------------------------------------------


async def test_owner_adds_each_type_of_question(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"], is_published=False)
    url = f"/api/v1/quizzes/{quiz['id']}/questions"
    bodies = [
        {
            "text": "Capital of France?",
            "question_type": "single_choice",
            "options": [{"text": "Lyon"}, {"text": "Paris"}],
            "correct_answer": 1,
            "points": 2,
            "explanation": "Paris since 987.",
        },
        {
            "text": "Primes?",
            "question_type": "multiple_choice",
            "options": [{"id": "two", "text": "2"}, {"id": "four", "text": "4"}, {"id": "five", "text": "5"}],
            "correct_answer": ["two", "five"],
        },
        {"text": "The earth is flat.", "question_type": "true_false", "correct_answer": False},
        {
            "text": "Capital of Mongolia?",
            "question_type": "short_answer",
            "correct_answer": ["Ulan Bator", "Ulaanbaatar"],
        },
    ]
    created = []
    for body in bodies:
        response = await client.post(url, json=body, headers=owner)
        assert response.status == 201, await response.text()
        created.append(await response.json())

    single, multiple, true_false, short = created
    assert single["text"] == "Capital of France?"
    assert single["points"] == 2
    assert [o["text"] for o in single["options"]] == ["Lyon", "Paris"]
    assert all(o["id"] for o in single["options"])
    assert single["correct_answer"] == single["options"][1]["id"]
    assert multiple["correct_answer"] == ["two", "five"]
    assert true_false["options"] == [{"id": "true", "text": "True"}, {"id": "false", "text": "False"}]
    assert true_false["correct_answer"] is False
    assert short["options"] == [] and short["correct_answer"] == ["Ulan Bator", "Ulaanbaatar"]
    assert [q["order"] for q in created] == [0, 1, 2, 3]

    page = await (await client.get(url, headers=owner)).json()
    assert page["total"] == 4
    assert [q["id"] for q in page["items"]] == [q["id"] for q in created]
    assert page["items"][0]["explanation"] == "Paris since 987."


async def test_questions_that_cannot_be_graded_are_422(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    url = f"/api/v1/quizzes/{quiz['id']}/questions"
    body = {
        "text": "?",
        "question_type": "single_choice",
        "options": [{"text": "A"}, {"text": "B"}],
        "correct_answer": "zz",
    }
    response = await client.post(url, json=body, headers=owner)
    assert response.status == 422
    assert (await response.json())["errors"] == [
        {"field": "correct_answer", "message": "'zz' is neither an option id nor an option index"}
    ]
    response = await client.post(url, json={**body, "question_type": "essay"}, headers=owner)
    assert response.status == 422
    response = await client.post(url, json={**body, "correct_answer": 0, "points": 0}, headers=owner)
    assert response.status == 422


async def test_students_cannot_read_or_write_questions(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    question = await make_question(db, quiz_id=quiz["id"])
    student = await _student(client, db, course["id"])
    response = await client.get(f"/api/v1/quizzes/{quiz['id']}/questions", headers=student)
    assert response.status == 403
    assert "Paris" not in await response.text()
    body = {"text": "?", "question_type": "true_false", "correct_answer": True}
    assert (await client.post(f"/api/v1/quizzes/{quiz['id']}/questions", json=body, headers=student)).status == 403
    assert (
        await client.patch(f"/api/v1/questions/{question['id']}", json={"points": 5}, headers=student)
    ).status == 403
    assert (await client.delete(f"/api/v1/questions/{question['id']}", headers=student)).status == 403


async def test_another_instructor_does_not_see_the_questions(client: Client, db: Database) -> None:
    _, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    question = await make_question(db, quiz_id=quiz["id"])
    _, other = await signed_in(client, db, role="instructor")
    assert (await client.get(f"/api/v1/quizzes/{quiz['id']}/questions", headers=other)).status == 404
    assert (await client.patch(f"/api/v1/questions/{question['id']}", json={"points": 5}, headers=other)).status == 404
    assert (await client.delete(f"/api/v1/questions/{question['id']}", headers=other)).status == 404


async def test_editing_options_keeps_the_ids_of_unchanged_ones(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    response = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/questions",
        json={
            "text": "?",
            "question_type": "single_choice",
            "options": [{"text": "Lyon"}, {"text": "Paris"}],
            "correct_answer": 1,
        },
        headers=owner,
    )
    question = await response.json()
    ids = {o["text"]: o["id"] for o in question["options"]}

    response = await client.patch(
        f"/api/v1/questions/{question['id']}",
        json={"text": "Capital?", "order": 7, "options": [{"text": "Paris"}, {"text": "Lyon"}, {"text": "Nice"}]},
        headers=owner,
    )
    assert response.status == 200, await response.text()
    updated = await response.json()
    assert (updated["text"], updated["order"]) == ("Capital?", 7)
    assert [o["id"] for o in updated["options"][:2]] == [ids["Paris"], ids["Lyon"]]
    assert updated["correct_answer"] == ids["Paris"]  # still the same option

    # Removing the correct option leaves the stored answer pointing nowhere: refused.
    response = await client.patch(
        f"/api/v1/questions/{question['id']}", json={"options": [{"text": "Lyon"}, {"text": "Nice"}]}, headers=owner
    )
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "correct_answer"


async def test_owner_deletes_a_question(client: Client, db: Database) -> None:
    owner, course = await _owner_and_course(client, db)
    quiz = await make_quiz(db, course_id=course["id"])
    question = await make_question(db, quiz_id=quiz["id"])
    assert (await client.delete(f"/api/v1/questions/{question['id']}", headers=owner)).status == 204
    assert (await client.delete(f"/api/v1/questions/{question['id']}", headers=owner)).status == 404
    assert (await (await client.get(f"/api/v1/quizzes/{quiz['id']}", headers=owner)).json())["question_count"] == 0


async def test_quiz_routes_are_in_the_openapi_document(client: Client, db: Database) -> None:
    await make_user(db)
    document = await (await client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    for path, method in [
        ("/api/v1/courses/{course_id}/quizzes", "get"),
        ("/api/v1/courses/{course_id}/quizzes", "post"),
        ("/api/v1/quizzes/{id}", "patch"),
        ("/api/v1/quizzes/{id}/publish", "post"),
        ("/api/v1/quizzes/{id}/questions", "post"),
        ("/api/v1/questions/{id}", "delete"),
        ("/api/v1/quizzes/{id}/attempts", "post"),
        ("/api/v1/attempts/{id}", "get"),
        ("/api/v1/attempts/{id}/submit", "post"),
        ("/api/v1/quizzes/{id}/attempts/mine", "get"),
    ]:
        assert method in paths[path], (path, method)
    attempt_question = document["components"]["schemas"]["AttemptQuestion"]
    assert "correct_answer" not in attempt_question["properties"]
