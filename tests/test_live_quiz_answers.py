"""Quizzes played live do not give their answers away through self-paced attempts (issue 10, item 7)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from lms.db import Database
from lms.tables import live_sessions
from tests.builders import make_course, make_enrollment, make_question, make_quiz, signed_in

PROBLEM = "application/problem+json"


async def setup(client: Any, db: Database, **quiz: Any) -> tuple[dict[str, str], dict[str, str], Any]:
    owner, host = await signed_in(client, db, role="instructor")
    student, player = await signed_in(client, db)
    course = await make_course(db, owner, is_published=True)
    await make_enrollment(db, student, course)
    row = await make_quiz(db, course_id=course["id"], **quiz)
    await make_question(db, quiz_id=row["id"])
    return host, player, row


async def open_session(client: Any, quiz: Any, host: dict[str, str]) -> dict[str, Any]:
    response = await client.post(f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={}, headers=host)
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def submit_empty(client: Any, attempt_id: str, player: dict[str, str]) -> dict[str, Any]:
    response = await client.post(f"/api/v1/attempts/{attempt_id}/submit", json={"answers": []}, headers=player)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_live_only_quiz_refuses_self_paced_attempts(client: Any, db: Database) -> None:
    owner, host = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    created = await client.post(
        f"/api/v1/courses/{course['id']}/quizzes", json={"title": "Friday game", "live_only": True}, headers=host
    )
    assert created.status == 201 and (await created.json())["live_only"] is True
    quiz = await created.json()
    await make_question(db, quiz_id=quiz["id"])
    assert (await client.post(f"/api/v1/quizzes/{quiz['id']}/publish", headers=host)).status == 200
    student, player = await signed_in(client, db)
    await make_enrollment(db, student, course)
    refused = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=player)
    assert refused.status == 409 and refused.content_type == PROBLEM
    assert (await refused.json())["type"].endswith("/live-only-quiz")
    # The host still plays it live.
    await open_session(client, quiz, host)
    switched = await client.patch(f"/api/v1/quizzes/{quiz['id']}", json={"live_only": None}, headers=host)
    assert switched.status == 422


async def test_an_open_live_session_hides_answers_and_refuses_new_attempts(client: Any, db: Database) -> None:
    host, player, quiz = await setup(client, db)  # show_correct_answers: true, the default
    started = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=player)
    assert started.status == 201
    session = await open_session(client, quiz, host)

    # The attack: submit an attempt empty and read the results.
    graded = await submit_empty(client, (await started.json())["id"], player)
    assert graded["results"] and all("correct_answer" not in r and "explanation" not in r for r in graded["results"])
    again = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=player)
    assert again.status == 409 and (await again.json())["type"].endswith("/quiz-live-now")

    # The game is over: answers show again, self-paced attempts are back.
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == session["id"]).values(status="ended"))
    shown = await (await client.get(f"/api/v1/attempts/{graded['id']}", headers=player)).json()
    assert all("correct_answer" in r for r in shown["results"])
    assert (await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=player)).status == 201


async def test_the_quiz_owner_still_sees_the_answers_of_attempts_during_a_session(client: Any, db: Database) -> None:
    host, player, quiz = await setup(client, db)
    started = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=player)
    await open_session(client, quiz, host)
    graded = await submit_empty(client, (await started.json())["id"], player)
    seen = await (await client.get(f"/api/v1/attempts/{graded['id']}", headers=host)).json()
    assert all("correct_answer" in r for r in seen["results"])
