"""The REST side of live sessions: create, look up by pin, list, results (JSON and CSV)."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

from sqlalchemy import insert, update

from lms.db import Database
from lms.live import queries
from lms.live.keys import session_keys
from lms.live.routes import new_pin
from lms.tables import live_sessions
from tests.builders import bearer, login, make_question, make_quiz, make_quiz_course, make_user, signed_in


async def hosted_quiz(db: Database, instructor_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    course = await make_quiz_course(db, instructor_id=instructor_id)
    quiz = await make_quiz(db, course_id=course["id"], **overrides)
    await make_question(db, quiz_id=quiz["id"])
    await make_question(db, quiz_id=quiz["id"], question_type="true_false")
    return quiz


async def test_an_instructor_opens_a_live_session_of_their_quiz(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    response = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={"allow_guests": True}, headers=auth
    )
    assert response.status == 201, await response.text()
    body = await response.json()
    assert len(body["pin"]) == 6 and body["pin"].isdigit()
    assert body["status"] == "lobby"
    assert body["allow_guests"] is True
    assert body["question_time_limit_seconds"] == 20
    assert body["total_questions"] == 2
    assert body["host_url"].endswith(f"/host/{body['id']}")
    without_body = await client.post(f"/api/v1/quizzes/{quiz['id']}/live-sessions", headers=auth)
    assert without_body.status == 201
    assert (await without_body.json())["allow_guests"] is False


async def test_time_limit_is_validated(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    for limit in (4, 601):
        response = await client.post(
            f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={"question_time_limit_seconds": limit}, headers=auth
        )
        assert response.status == 422
    ok = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={"question_time_limit_seconds": 5}, headers=auth
    )
    assert (await ok.json())["question_time_limit_seconds"] == 5


async def test_only_the_quiz_owner_or_an_admin_opens_sessions(client: Any, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    quiz = await hosted_quiz(db, owner["id"])
    _, other = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db, role="student")
    _, admin = await signed_in(client, db, role="admin")
    url = f"/api/v1/quizzes/{quiz['id']}/live-sessions"
    assert (await client.post(url, json={})).status == 401
    assert (await client.post(url, json={}, headers=student)).status == 403
    assert (await client.post(url, json={}, headers=other)).status == 404
    assert (await client.post(url, json={}, headers=admin)).status == 201
    assert (await client.post(f"/api/v1/quizzes/{uuid.uuid4()}/live-sessions", json={}, headers=admin)).status == 404


async def test_a_draft_or_empty_quiz_cannot_be_hosted(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    draft = await hosted_quiz(db, teacher["id"], is_published=False)
    course = await make_quiz_course(db, instructor_id=teacher["id"])
    empty = await make_quiz(db, course_id=course["id"])
    for quiz in (draft, empty):
        response = await client.post(f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={}, headers=auth)
        assert response.status == 409
        assert response.content_type == "application/problem+json"


async def test_pins_are_unique_among_open_sessions_and_reusable_once_ended(
    client: Any, db: Database, monkeypatch: Any
) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    url = f"/api/v1/quizzes/{quiz['id']}/live-sessions"
    pins = iter(["111111", "111111", "222222", "111111"])
    monkeypatch.setattr("lms.live.routes.new_pin", lambda: next(pins))
    first = await (await client.post(url, json={}, headers=auth)).json()
    second = await (await client.post(url, json={}, headers=auth)).json()
    assert (first["pin"], second["pin"]) == ("111111", "222222")
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == first["id"]).values(status="ended"))
    third = await (await client.post(url, json={}, headers=auth)).json()
    assert third["pin"] == "111111"


def test_pins_are_six_random_digits() -> None:
    pins = [new_pin() for _ in range(200)]
    assert all(len(p) == 6 and p.isdigit() for p in pins)
    assert len(set(pins)) > 190


async def test_lookup_by_pin_shows_the_join_screen(client: Any, db: Database, redis: Any, config: Any) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"], title="Capitals")
    created = await (await client.post(f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={}, headers=auth)).json()
    keys = session_keys(config.live.redis_prefix, created["id"])
    await redis.zadd(keys.online, {"p1": 9_999_999_999_999, "p2": 9_999_999_999_999, "gone": 1})
    response = await client.get(f"/api/v1/live-sessions/{created['pin']}")
    assert response.status == 200
    assert await response.json() == {
        "quiz_title": "Capitals", "status": "lobby", "player_count": 2, "allow_guests": False,
    }  # fmt: skip
    assert (await client.get("/api/v1/live-sessions/000000")).status in (200, 404)
    assert (await client.get("/api/v1/live-sessions/12ab56")).status == 404
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == created["id"]).values(status="ended"))
    gone = await client.get(f"/api/v1/live-sessions/{created['pin']}")
    assert gone.status == 404
    assert gone.content_type == "application/problem+json"


async def test_sessions_of_a_quiz_are_listed_newest_first(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    url = f"/api/v1/quizzes/{quiz['id']}/live-sessions"
    ids = [(await (await client.post(url, json={}, headers=auth)).json())["id"] for _ in range(3)]
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == ids[0]).values(status="ended"))
    page = await (await client.get(url + "?limit=2", headers=auth)).json()
    assert page["total"] == 3 and page["limit"] == 2 and len(page["items"]) == 2
    assert [i["id"] for i in page["items"]] == ids[:0:-1]
    ended = await (await client.get(url + "?status=ended", headers=auth)).json()
    assert [i["id"] for i in ended["items"]] == [ids[0]]
    assert ended["items"][0]["player_count"] == 0
    _, other = await signed_in(client, db, role="instructor")
    assert (await client.get(url, headers=other)).status == 404


async def stored_game(db: Database, quiz: dict[str, Any], host_id: uuid.UUID) -> dict[str, Any]:
    """A finished session written through the same queries the session owner uses."""
    student = await make_user(db, role="student")
    async with db.transaction() as conn:
        session = await conn.fetch_one(
            insert(live_sessions)
            .values(quiz_id=quiz["id"], host_id=host_id, pin="123456", total_questions=2)
            .returning(live_sessions)
        )
        assert session is not None
        questions = await queries.list_questions(conn, quiz["id"])
        alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
        now = "2026-01-01T10:00:00+00:00"
        await queries.save_players(
            conn,
            session["id"],
            [
                {"id": alice, "user_id": str(student["id"]), "nickname": "Alice", "joined_at": now, "score": 1700,
                 "rank": 1, "correct_count": 2, "kicked_at": None},
                {"id": bob, "user_id": None, "nickname": "=cmd()", "joined_at": now, "score": 0, "rank": 2,
                 "correct_count": 0, "kicked_at": None},
            ],
        )  # fmt: skip
        answers = [
            {"player_id": alice, "question_id": str(questions[0]["id"]), "question_index": 0, "answer": "b",
             "is_correct": True, "points": 900, "response_time_ms": 4000, "answered_at": now},
            {"player_id": bob, "question_id": str(questions[0]["id"]), "question_index": 0, "answer": "a",
             "is_correct": False, "points": 0, "response_time_ms": 5000, "answered_at": now},
            {"player_id": alice, "question_id": str(questions[1]["id"]), "question_index": 1, "answer": "true",
             "is_correct": True, "points": 800, "response_time_ms": 8000, "answered_at": now},
        ]  # fmt: skip
        await queries.save_answers(conn, session["id"], answers)
        await queries.save_answers(conn, session["id"], answers)  # a second save changes nothing
        results = {
            "questions": [
                {"index": 0, "question_id": str(questions[0]["id"]), "text": "Question 0",
                 "question_type": "single_choice", "correct_answer": "b", "distribution": {"a": 1, "b": 1, "c": 0},
                 "answered": 2, "correct": 1},
                {"index": 1, "question_id": str(questions[1]["id"]), "text": "Question 1",
                 "question_type": "true_false", "correct_answer": "true", "distribution": {"true": 1, "false": 0},
                 "answered": 1, "correct": 1},
            ]
        }  # fmt: skip
        await queries.save_results(conn, session["id"], results, ended=True)
    return {"session": session, "alice": alice, "bob": bob, "student": student}


async def test_results_come_from_postgresql(client: Any, db: Database) -> None:
    teacher = await make_user(db, role="instructor")
    auth = bearer((await login(client, teacher["email"]))["access_token"])
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    sid = game["session"]["id"]
    response = await client.get(f"/api/v1/live-sessions/{sid}/results", headers=auth)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "ended" and body["ended_at"] is not None
    assert body["questions_asked"] == 2
    assert [(p["nickname"], p["score"], p["rank"]) for p in body["leaderboard"]] == [
        ("Alice", 1700, 1), ("=cmd()", 0, 2),
    ]  # fmt: skip
    assert body["leaderboard"][0]["user_id"] == str(game["student"]["id"])
    assert body["leaderboard"][1]["user_id"] is None
    assert body["questions"][0]["distribution"] == {"a": 1, "b": 1, "c": 0}


async def test_results_csv_has_a_row_per_player_and_question(client: Any, db: Database) -> None:
    teacher = await make_user(db, role="instructor")
    auth = bearer((await login(client, teacher["email"]))["access_token"])
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    response = await client.get(f"/api/v1/live-sessions/{game['session']['id']}/results.csv", headers=auth)
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 4
    alice = [r for r in rows if r["nickname"] == "Alice"]
    assert [(r["question_index"], r["answer"], r["correct"], r["points"]) for r in alice] == [
        ("0", "b", "true", "900"), ("1", "true", "true", "800"),
    ]  # fmt: skip
    assert alice[0]["user_id"] == str(game["student"]["id"])
    bob = [r for r in rows if r["player_id"] == game["bob"]]
    assert bob[0]["nickname"] == "'=cmd()"  # not a formula in a spreadsheet
    assert (bob[1]["answer"], bob[1]["correct"], bob[1]["points"]) == ("", "false", "0")


async def test_results_are_for_the_owner_and_admins_only(client: Any, db: Database) -> None:
    teacher = await make_user(db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    _, other = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db, role="student")
    _, admin = await signed_in(client, db, role="admin")
    for suffix in ("results", "results.csv"):
        url = f"/api/v1/live-sessions/{game['session']['id']}/{suffix}"
        assert (await client.get(url)).status == 401
        assert (await client.get(url, headers=student)).status == 403
        assert (await client.get(url, headers=other)).status == 404
        assert (await client.get(url, headers=admin)).status == 200
        assert (await client.get(f"/api/v1/live-sessions/{uuid.uuid4()}/{suffix}", headers=admin)).status == 404


async def test_openapi_describes_the_live_routes(client: Any) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    assert "post" in paths["/api/v1/quizzes/{id}/live-sessions"]
    assert "get" in paths["/api/v1/quizzes/{id}/live-sessions"]
    assert "get" in paths["/api/v1/live-sessions/{pin}"]
    assert "get" in paths["/api/v1/live-sessions/{id}/results"]
    assert "get" in paths["/api/v1/live-sessions/{id}/results.csv"]
