"""Live sessions in PostgreSQL: plain async queries taking a connection (callers own transactions).

Bulk writes (every player's score, every answer of a question) go as one
statement each: the rows travel as one JSON document expanded by
``jsonb_to_recordset``, so a question answered by thousands is three
statements, whatever the count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Integer, Text, and_, bindparam, cast, column, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.types import Boolean, DateTime

from lms.db import Connection, Row
from lms.tables import courses, live_answers, live_players, live_sessions, quiz_questions, quizzes

OPEN_PIN_INDEX = "uq_live_sessions_open_pin"


async def get_quiz_for_hosting(conn: Connection, quiz_id: uuid.UUID) -> Row | None:
    """The quiz, its course's instructor and how many questions it has."""
    count = (
        select(func.count())
        .select_from(quiz_questions)
        .where(quiz_questions.c.quiz_id == quizzes.c.id)
        .scalar_subquery()
    )
    return await conn.fetch_one(
        select(
            quizzes.c.id, quizzes.c.title, quizzes.c.is_published, quizzes.c.course_id,
            courses.c.instructor_id, count.label("question_count"),
        )
        .join_from(quizzes, courses, courses.c.id == quizzes.c.course_id)
        .where(quizzes.c.id == quiz_id)
    )  # fmt: skip


async def insert_session(
    conn: Connection,
    *,
    quiz_id: uuid.UUID,
    host_id: uuid.UUID,
    pin: str,
    allow_guests: bool,
    question_time_limit_seconds: int,
    total_questions: int,
    scoring: str = "speed",
    streak_bonus_points: int = 0,
    team_count: int | None = None,
) -> Row:
    row = await conn.fetch_one(
        insert(live_sessions)
        .values(
            quiz_id=quiz_id, host_id=host_id, pin=pin, allow_guests=allow_guests,
            question_time_limit_seconds=question_time_limit_seconds, total_questions=total_questions,
            scoring=scoring, streak_bonus_points=streak_bonus_points, team_count=team_count,
        )
        .returning(live_sessions)
    )  # fmt: skip
    assert row is not None
    return row


def _session_with_quiz() -> Any:
    return select(
        live_sessions, quizzes.c.title.label("quiz_title"), quizzes.c.course_id, courses.c.instructor_id
    ).select_from(
        live_sessions.join(quizzes, quizzes.c.id == live_sessions.c.quiz_id).join(
            courses, courses.c.id == quizzes.c.course_id
        )
    )


async def get_session(conn: Connection, session_id: uuid.UUID) -> Row | None:
    """The session with its quiz's title, course and the course's instructor."""
    return await conn.fetch_one(_session_with_quiz().where(live_sessions.c.id == session_id))


async def get_open_session_by_pin(conn: Connection, pin: str) -> Row | None:
    return await conn.fetch_one(
        _session_with_quiz().where(and_(live_sessions.c.pin == pin, live_sessions.c.status != "ended"))
    )


async def get_latest_session_by_pin(conn: Connection, pin: str) -> Row | None:
    """The open session with this pin, else the last one that had it (to tell "ended" from "unknown")."""
    return await conn.fetch_one(
        _session_with_quiz()
        .where(live_sessions.c.pin == pin)
        .order_by((live_sessions.c.status == "ended").asc(), live_sessions.c.created_at.desc())
        .limit(1)
    )


async def list_sessions(
    conn: Connection, *, quiz_id: uuid.UUID, status: str | None, limit: int, offset: int
) -> tuple[list[Row], int]:
    condition = live_sessions.c.quiz_id == quiz_id
    if status is not None:
        condition = and_(condition, live_sessions.c.status == status)
    players = (
        select(func.count())
        .select_from(live_players)
        .where(live_players.c.session_id == live_sessions.c.id)
        .scalar_subquery()
    )
    rows = await conn.fetch_all(
        select(live_sessions, players.label("player_count"))
        .where(condition)
        .order_by(live_sessions.c.created_at.desc(), live_sessions.c.id)
        .limit(limit)
        .offset(offset)
    )
    total = await conn.fetch_val(select(func.count()).select_from(live_sessions).where(condition))
    return rows, int(total)


async def list_questions(conn: Connection, quiz_id: uuid.UUID) -> list[Row]:
    return await conn.fetch_all(
        select(
            quiz_questions.c.id, quiz_questions.c.question_text, quiz_questions.c.question_type,
            quiz_questions.c.options, quiz_questions.c.correct_answer, quiz_questions.c.points,
            quiz_questions.c.settings, quiz_questions.c.time_limit_seconds, quiz_questions.c.image_file_id,
            quiz_questions.c.video,
            quiz_questions.c.double_points,
        )
        .where(quiz_questions.c.quiz_id == quiz_id)
        .order_by(quiz_questions.c.position, quiz_questions.c.created_at, quiz_questions.c.id)
    )  # fmt: skip


async def list_players(conn: Connection, session_id: uuid.UUID) -> list[Row]:
    """Every player, best first (kicked players last)."""
    return await conn.fetch_all(
        select(live_players)
        .where(live_players.c.session_id == session_id)
        .order_by(
            live_players.c.kicked_at.is_not(None),
            live_players.c.rank.asc().nulls_last(),
            live_players.c.score.desc(),
            func.lower(live_players.c.nickname),
        )
    )


async def list_answers(conn: Connection, session_id: uuid.UUID) -> list[Row]:
    return await conn.fetch_all(
        select(live_answers)
        .where(live_answers.c.session_id == session_id)
        .order_by(live_answers.c.question_index, live_answers.c.answered_at)
    )


async def mark_running(conn: Connection, session_id: uuid.UUID) -> None:
    await conn.execute(
        update(live_sessions)
        .where(and_(live_sessions.c.id == session_id, live_sessions.c.status == "lobby"))
        .values(status="running", started_at=func.now())
    )


async def set_team_count(conn: Connection, session_id: uuid.UUID, team_count: int | None) -> None:
    await conn.execute(update(live_sessions).where(live_sessions.c.id == session_id).values(team_count=team_count))


def _recordset(name: str, *columns: Any) -> Any:
    return (
        func.jsonb_to_recordset(cast(bindparam(name, type_=Text), JSONB))
        .table_valued(*columns)
        .render_derived(name="r", with_types=True)
    )


def _recordset_json(rows: Sequence[dict[str, Any]]) -> str:
    """Rows for ``json_to_recordset``: orjson (a session's 5,000 players are stored after every question,
    on the owner's event loop); stdlib json for what orjson refuses (a lone surrogate in an answer)."""
    try:
        return orjson.dumps(list(rows), default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(list(rows), default=str)


async def save_players(conn: Connection, session_id: uuid.UUID, players: Sequence[dict[str, Any]]) -> None:
    """Insert new players and set everyone's score, rank, correct count and kick time.

    Each player: ``id, user_id, nickname, joined_at, score, rank, correct_count, kicked_at`` and
    optionally ``team`` (ids as strings, times as ISO 8601 or None).
    """
    if not players:
        return
    rows = _recordset(
        "players",
        column("id", UUID), column("user_id", UUID), column("nickname", Text), column("joined_at", DateTime(True)),
        column("score", Integer), column("rank", Integer), column("correct_count", Integer),
        column("kicked_at", DateTime(True)), column("team", Integer),
    )  # fmt: skip
    payload = {"players": _recordset_json(players)}
    await conn.execute(
        pg_insert(live_players)
        .from_select(
            ["id", "session_id", "user_id", "nickname", "joined_at"],
            select(rows.c.id, literal(session_id, UUID), rows.c.user_id, rows.c.nickname, rows.c.joined_at),
        )
        .on_conflict_do_nothing(),
        payload,
    )
    await conn.execute(
        update(live_players)
        .where(and_(live_players.c.id == rows.c.id, live_players.c.session_id == session_id))
        .values(
            score=rows.c.score,
            rank=rows.c.rank,
            correct_count=rows.c.correct_count,
            kicked_at=rows.c.kicked_at,
            team=rows.c.team,
        ),
        payload,
    )


async def save_answers(conn: Connection, session_id: uuid.UUID, answers: Sequence[dict[str, Any]]) -> None:
    """Insert a question's answers once (a second save of the same question changes nothing).

    Each answer: ``player_id, question_id, question_index, answer, is_correct, points, response_time_ms, answered_at``.
    """
    if not answers:
        return
    rows = _recordset(
        "answers",
        column("player_id", UUID), column("question_id", UUID), column("question_index", Integer),
        column("answer", JSONB), column("is_correct", Boolean), column("points", Integer),
        column("response_time_ms", Integer), column("answered_at", DateTime(True)),
    )  # fmt: skip
    known = select(live_players.c.id).where(live_players.c.session_id == session_id)
    await conn.execute(
        pg_insert(live_answers)
        .from_select(
            [
                "id", "session_id", "player_id", "question_id", "question_index", "answer", "is_correct", "points",
                "response_time_ms", "answered_at",
            ],
            select(
                func.gen_random_uuid(), literal(session_id, UUID), rows.c.player_id, rows.c.question_id,
                rows.c.question_index, rows.c.answer, rows.c.is_correct, rows.c.points, rows.c.response_time_ms,
                rows.c.answered_at,
            ).where(rows.c.player_id.in_(known)),
        )
        .on_conflict_do_nothing(),
        {"answers": _recordset_json(answers)},
    )  # fmt: skip


async def save_results(
    conn: Connection, session_id: uuid.UUID, results: dict[str, Any], *, ended: bool = False
) -> None:
    """Store the results document (questions asked so far, final leaderboard); ``ended`` closes the session."""
    values: dict[str, Any] = {"results": results}
    if ended:
        values |= {"status": "ended", "ended_at": func.now()}
    await conn.execute(update(live_sessions).where(live_sessions.c.id == session_id).values(**values))


async def list_stale_open_sessions(conn: Connection, *, older_than_minutes: int) -> list[Row]:
    """Open sessions created (or started) longer ago than this: candidates for the abandoned-session job."""
    since = func.now() - func.make_interval(0, 0, 0, 0, 0, literal(older_than_minutes, Integer))
    return await conn.fetch_all(
        select(live_sessions.c.id, live_sessions.c.status)
        .where(
            and_(
                live_sessions.c.status != "ended",
                func.coalesce(live_sessions.c.started_at, live_sessions.c.created_at) < since,
            )
        )
        .order_by(live_sessions.c.created_at)
    )
