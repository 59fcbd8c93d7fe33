"""The REST side of scoring modes and teams: session settings, double-points questions, results that say both."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import openpyxl
import pytest
from sqlalchemy import update

from lms.db import Database
from lms.live import queries
from lms.tables import live_sessions
from tests.builders import make_question, signed_in
from tests.test_live_rest import hosted_quiz, stored_game


async def test_a_session_is_opened_with_a_scoring_mode_a_streak_bonus_and_teams(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    url = f"/api/v1/quizzes/{quiz['id']}/live-sessions"
    default = await (await client.post(url, json={}, headers=auth)).json()
    assert default["scoring"] == {"mode": "speed", "streak_bonus": False, "streak_bonus_points": 0}
    assert default["team_count"] is None and default["teams"] == []
    body = {"scoring": "kahoot_like", "streak_bonus": True, "streak_bonus_points": 250, "team_count": 3}
    response = await client.post(url, json=body, headers=auth)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["scoring"] == {"mode": "kahoot_like", "streak_bonus": True, "streak_bonus_points": 250}
    assert created["team_count"] == 3
    assert created["teams"] == [{"team": 1, "name": "Red"}, {"team": 2, "name": "Blue"}, {"team": 3, "name": "Green"}]
    listed = await (await client.get(url, headers=auth)).json()
    assert [s["scoring"]["mode"] for s in listed["items"]] == ["kahoot_like", "speed"]
    assert [len(s["teams"]) for s in listed["items"]] == [3, 0]


@pytest.mark.parametrize(
    "body",
    [
        {"scoring": "kahoot"}, {"scoring": "speed\u0000"}, {"scoring": None}, {"scoring": 1}, {"team_count": 0},
        {"team_count": 1}, {"team_count": 11}, {"team_count": 10**40}, {"team_count": "2"}, {"team_count": -2},
        {"streak_bonus": True, "streak_bonus_points": 0}, {"streak_bonus": True, "streak_bonus_points": -5},
        {"streak_bonus": True, "streak_bonus_points": 10**12}, {"streak_bonus": "true"}, {"teams": 2},
    ],
)  # fmt: skip
async def test_bad_settings_are_422_and_open_nothing(client: Any, db: Database, body: dict[str, Any]) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    url = f"/api/v1/quizzes/{quiz['id']}/live-sessions"
    response = await client.post(url, json=body, headers=auth)
    assert response.status == 422, await response.text()
    assert response.content_type == "application/problem+json"
    assert (await (await client.get(url, headers=auth)).json())["total"] == 0


async def test_double_points_is_authored_over_rest(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    question = {"text": "Sky blue?", "question_type": "true_false", "correct_answer": True, "double_points": True}
    created = await client.post(f"/api/v1/quizzes/{quiz['id']}/questions", json=question, headers=auth)
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["double_points"] is True
    changed = await client.patch(f"/api/v1/questions/{body['id']}", json={"double_points": False}, headers=auth)
    assert changed.status == 200 and (await changed.json())["double_points"] is False
    for bad in (None, "yes", 1):
        refused = await client.patch(f"/api/v1/questions/{body['id']}", json={"double_points": bad}, headers=auth)
        assert refused.status == 422
    plain = {"text": "Plain", "question_type": "true_false", "correct_answer": True}
    assert (await (await client.post(f"/api/v1/quizzes/{quiz['id']}/questions", json=plain, headers=auth)).json())[
        "double_points"
    ] is False


async def test_results_of_an_older_session_say_the_default_speed_mode(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    results = await (await client.get(f"/api/v1/live-sessions/{game['session']['id']}/results", headers=auth)).json()
    assert results["scoring"] == {"mode": "speed", "streak_bonus": False, "streak_bonus_points": 0}
    assert results["teams"] == [] and results["team_count"] is None
    assert {e["team"] for e in results["leaderboard"]} == {None}
    assert [q["double_points"] for q in results["questions"]] == [False, False]  # stored before the field existed


async def test_team_results_average_unequal_teams_in_json_csv_and_xlsx(client: Any, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    await make_question(db, quiz_id=quiz["id"], double_points=True)
    session_id = (await stored_game(db, quiz, teacher["id"]))["session"]["id"]
    now = "2026-01-01T10:00:00+00:00"
    async with db.transaction() as conn:
        await conn.execute(
            update(live_sessions)
            .where(live_sessions.c.id == session_id)
            .values(scoring="accuracy", streak_bonus_points=50, team_count=2)
        )
        rows = await queries.list_players(conn, session_id)
        players = [
            {"id": str(p["id"]), "user_id": None, "nickname": p["nickname"], "joined_at": now, "score": p["score"],
             "rank": p["rank"], "correct_count": p["correct_count"], "kicked_at": None, "team": 1}
            for p in rows
        ]  # fmt: skip
        extra = [
            {"id": str(uuid.uuid4()), "user_id": None, "nickname": name, "joined_at": now, "score": score,
             "rank": None, "correct_count": 0, "kicked_at": kicked, "team": 2}
            for name, score, kicked in [("Cid", 900, None), ("Kicked", 5000, now)]
        ]  # fmt: skip
        await queries.save_players(conn, session_id, players + extra)
    results = await (await client.get(f"/api/v1/live-sessions/{session_id}/results", headers=auth)).json()
    assert results["scoring"] == {"mode": "accuracy", "streak_bonus": True, "streak_bonus_points": 50}
    # Team 1: Alice 1700 and "=cmd()" 0 → 850; team 2: Cid 900 (the kicked player is no member).
    assert results["teams"] == [
        {"team": 2, "name": "Blue", "score": 900, "rank": 1, "members": 1},
        {"team": 1, "name": "Red", "score": 850, "rank": 2, "members": 2},
    ]
    teams_of = {e["nickname"]: e["team"] for e in results["leaderboard"]}
    assert teams_of == {"Alice": 1, "=cmd()": 1, "Cid": 2, "Kicked": 2}

    response = await client.get(f"/api/v1/live-sessions/{session_id}/results.csv", headers=auth)
    table = list(csv.DictReader(io.StringIO(await response.text())))
    alice = [r for r in table if r["nickname"] == "Alice"]
    assert {(r["scoring"], r["streak_bonus_points"], r["team"], r["team_name"], r["team_score"], r["team_rank"])
            for r in alice} == {("accuracy", "50", "1", "Red", "850", "2")}  # fmt: skip
    assert list(table[0])[:9] == [
        "nickname", "user_id", "player_id", "question_index", "question_id", "answer", "correct", "points",
        "response_time_ms",
    ]  # fmt: skip

    response = await client.get(f"/api/v1/live-sessions/{session_id}/results.xlsx", headers=auth)
    book = openpyxl.load_workbook(io.BytesIO(await response.read()))
    assert book.sheetnames == ["Summary", "Teams", "Q1", "Q2"]
    teams = [list(r) for r in book["Teams"].iter_rows(values_only=True)]
    assert teams == [["rank", "team", "name", "score", "members"], [1, 2, "Blue", 900, 1], [2, 1, "Red", 850, 2]]
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if r and isinstance(r[0], str)}
    assert (summary["scoring"], summary["streak_bonus_points"], summary["team_count"]) == ("accuracy", 50, 2)
