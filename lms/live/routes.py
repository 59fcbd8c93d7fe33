"""Live quiz session routes (the game itself is the ``/live`` Socket.IO namespace: realtime/README.md)."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import time
import uuid
from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page
from lms.api.problems import Conflict, NotFound, ServiceUnavailable
from lms.api.spreadsheets import cell, xlsx_bytes
from lms.appkeys import CONFIG, DB, REDIS
from lms.auth.guards import Principal, current_user, require
from lms.auth.permissions import Permission
from lms.courses.access import manages
from lms.db import Connection, IntegrityViolation, Row
from lms.live import queries, scoring
from lms.live.keys import session_keys
from lms.live.schemas import (
    LiveResults,
    LiveSessionCreate,
    LiveSessionListQuery,
    LiveSessionLookup,
    LiveSessionOut,
    LiveSessionSummary,
)

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
TAGS = ["live sessions"]
host_live = require(Permission.HOST_LIVE)

PIN_ATTEMPTS = 20


def new_pin() -> str:
    """Six random digits: no sequence to guess from the pins of other sessions."""
    return f"{secrets.randbelow(1_000_000):06d}"


async def hosted_quiz(conn: Connection, principal: Principal, quiz_id: uuid.UUID) -> Row:
    """The quiz if the caller owns its course (or is an admin); anyone else does not see it: 404."""
    quiz = await queries.get_quiz_for_hosting(conn, quiz_id)
    if quiz is None or not manages(principal, quiz):
        raise NotFound("No such quiz.")
    return quiz


async def hosted_session(conn: Connection, principal: Principal, session_id: uuid.UUID) -> Row:
    """The live session if the caller owns its quiz's course (or is an admin); otherwise 404."""
    session = await queries.get_session(conn, session_id)
    if session is None or not manages(principal, session):
        raise NotFound("No such live session.")
    return session


def settings_of(session: Row) -> dict[str, Any]:
    """How the session scores and its teams, as REST shows them (``scoring``, ``teams``)."""
    return {
        "scoring": scoring.ScoringRules.of(session).public(),
        "teams": scoring.teams_of(session["team_count"]),
    }


def present(request: web.Request, session: Row) -> dict[str, Any]:
    base = request.app[CONFIG].http.public_base_url.rstrip("/")
    links = {"host_url": f"{base}/host/{session['id']}", "join_url": f"{base}/play?pin={session['pin']}"}
    return session | settings_of(session) | links


@routes.post("/api/v1/quizzes/{id}/live-sessions")
@endpoint(
    summary="Open a live session of a quiz",
    description="The quiz must be published and have questions. The pin is six random digits, unique among "
    "sessions that have not ended. Hosts then connect to the `/live` Socket.IO namespace (`host_session`).",
    body=LiveSessionCreate,
    body_required=False,
    response=LiveSessionOut,
    status=201,
    errors=[404, 409],
    guards=[host_live],
    tags=TAGS,
)
async def create_live_session(request: web.Request, body: LiveSessionCreate) -> dict[str, Any]:
    principal = current_user(request)
    config = request.app[CONFIG].live
    async with request.app[DB].transaction() as conn:
        quiz = await hosted_quiz(conn, principal, path_uuid(request))
        if not quiz["is_published"]:
            raise Conflict("Publish the quiz before hosting it live.")
        if quiz["question_count"] == 0:
            raise Conflict("The quiz has no questions.")
        for _ in range(PIN_ATTEMPTS):
            try:
                async with conn.transaction():
                    session = await queries.insert_session(
                        conn,
                        quiz_id=quiz["id"],
                        host_id=principal.id,
                        pin=new_pin(),
                        allow_guests=body.allow_guests,
                        question_time_limit_seconds=body.question_time_limit_seconds
                        or config.default_question_time_limit_seconds,
                        total_questions=quiz["question_count"],
                        scoring=body.scoring,
                        streak_bonus_points=body.stored_streak_bonus(),
                        team_count=body.team_count,
                    )
                break
            except IntegrityViolation as err:
                if err.constraint != queries.OPEN_PIN_INDEX:
                    raise
        else:
            log.error("no free live-session pin after %d attempts", PIN_ATTEMPTS)
            raise ServiceUnavailable("Too many open live sessions; try again later.")
    log.info("live session %s opened for quiz %s by %s", session["id"], quiz["id"], principal.id)
    return present(request, session)


@routes.get("/api/v1/quizzes/{id}/live-sessions")
@endpoint(
    summary="Live sessions of a quiz, newest first",
    query=LiveSessionListQuery,
    response=Page[LiveSessionSummary],
    errors=[404],
    guards=[host_live],
    tags=TAGS,
)
async def list_live_sessions(request: web.Request, query: LiveSessionListQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        quiz = await hosted_quiz(conn, current_user(request), path_uuid(request))
        rows, total = await queries.list_sessions(
            conn, quiz_id=quiz["id"], status=query.status, limit=query.limit, offset=query.offset
        )
    return page([row | settings_of(row) for row in rows], total, query)


@routes.get("/api/v1/live-sessions/{pin}")
@endpoint(
    summary="Look up an open live session by its pin (join screen)",
    response=LiveSessionLookup,
    errors=[404],
    tags=TAGS,
)
async def lookup_live_session(request: web.Request) -> dict[str, Any]:
    pin = request.match_info["pin"]
    if not (len(pin) == 6 and pin.isascii() and pin.isdigit()):
        raise NotFound("No open live session has this pin.")
    async with request.app[DB].connection() as conn:
        session = await queries.get_open_session_by_pin(conn, pin)
    if session is None:
        raise NotFound("No open live session has this pin.")
    keys = session_keys(request.app[CONFIG].live.redis_prefix, session["id"])
    connected = await request.app[REDIS].zcount(keys.online, int(time.time() * 1000), "+inf")
    return {
        "quiz_title": session["quiz_title"],
        "status": session["status"],
        "player_count": int(connected),
        "allow_guests": session["allow_guests"],
    }


def team_standings(session: Row, players: list[Row]) -> list[dict[str, Any]]:
    """The team leaderboard from the stored players (kicked ones are no team's members)."""
    members = [(p["team"], p["score"]) for p in players if p["kicked_at"] is None]
    return scoring.team_standings(session["team_count"], members)


async def load_results(conn: Connection, session: Row) -> dict[str, Any]:
    players = await queries.list_players(conn, session["id"])
    stored = session["results"] or {}
    questions = stored.get("questions", [])
    return {
        **{k: session[k] for k in ("id", "quiz_id", "quiz_title", "pin", "status", "total_questions")},
        **{k: session[k] for k in ("created_at", "started_at", "ended_at", "team_count")},
        "scoring": scoring.ScoringRules.of(session).public(),
        "questions_asked": len(questions),
        "leaderboard": [
            {
                "player_id": p["id"], "nickname": p["nickname"], "user_id": p["user_id"], "score": p["score"],
                "rank": p["rank"], "correct_count": p["correct_count"], "kicked": p["kicked_at"] is not None,
                "team": p["team"],
            }
            for p in players
        ],
        "teams": team_standings(session, players),
        "questions": questions,
    }  # fmt: skip


@routes.get("/api/v1/live-sessions/{id}/results")
@endpoint(
    summary="Results of a live session: final leaderboard and per-question answer distribution",
    description="Read from PostgreSQL: complete once the session has ended, the questions so far before.",
    response=LiveResults,
    errors=[404],
    guards=[host_live],
    tags=TAGS,
)
async def live_results(request: web.Request) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        session = await hosted_session(conn, current_user(request), path_uuid(request))
        return await load_results(conn, session)


CSV_COLUMNS = [
    "nickname", "user_id", "player_id", "question_index", "question_id", "answer", "correct", "points",
    "response_time_ms",
    # Added with scoring modes and teams (after the original columns, so readers by position keep working).
    "double_points", "scoring", "streak_bonus_points", "team", "team_name", "team_score", "team_rank",
]  # fmt: skip
CSV_DESCRIPTION = (
    "Columns: " + ", ".join(CSV_COLUMNS) + ". A question a player did not answer has an empty answer. "
    "`points` include the streak bonus and double points; `scoring` and `streak_bonus_points` (0: no bonus) "
    "repeat the session's scoring on every row; the team columns are empty without team mode (`team_score`: "
    "the team's average, `team_rank`: its place on the team leaderboard)."
)


@routes.get("/api/v1/live-sessions/{id}/results.csv")
@endpoint(
    summary="Results of a live session as CSV: one row per player and question",
    description=CSV_DESCRIPTION,
    errors=[404],
    guards=[host_live],
    tags=TAGS,
    response_content_type="text/csv",
)
async def live_results_csv(request: web.Request) -> web.Response:
    async with request.app[DB].connection() as conn:
        session = await hosted_session(conn, current_user(request), path_uuid(request))
        players = await queries.list_players(conn, session["id"])
        answers = await queries.list_answers(conn, session["id"])
    asked = (session["results"] or {}).get("questions", [])
    by_key = {(a["player_id"], a["question_index"]): a for a in answers}
    rules = scoring.ScoringRules.of(session)
    standings = {t["team"]: t for t in team_standings(session, players)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for player in players:
        for question in asked:
            answer = by_key.get((player["id"], question["index"]))
            writer.writerow(
                [
                    cell(player["nickname"]), cell(player["user_id"]), cell(player["id"]),
                    question["index"], cell(question.get("question_id")),
                    cell(answer["answer"] if answer else None),
                    cell(answer["is_correct"] if answer else False),
                    answer["points"] if answer else 0,
                    cell(answer["response_time_ms"] if answer else None),
                    cell(bool(question.get("double_points"))), rules.mode, rules.streak_bonus_points,
                    *_team_cells(player, standings),
                ]
            )  # fmt: skip
    filename = f"live-session-{session['pin']}-{session['id']}.csv"
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _team_cells(player: Row, standings: dict[int, dict[str, Any]]) -> list[Any]:
    """``team, team_name, team_score, team_rank`` of a player (empty without a team)."""
    standing = standings.get(player["team"]) if player["team"] is not None else None
    if standing is None:
        return ["", "", "", ""]
    return [standing["team"], cell(standing["name"]), standing["score"], standing["rank"]]


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SUMMARY_COLUMNS = ["rank", "nickname", "user_id", "player_id", "score", "correct_count", "kicked"]
TEAM_COLUMNS = ["rank", "team", "name", "score", "members"]
QUESTION_COLUMNS = ["nickname", "user_id", "player_id", "answer", "correct", "points", "response_time_ms"]


def results_sheets(session: Row, players: list[Row], answers: list[Row]) -> list[tuple[str, list[list[Any]]]]:
    """The workbook's sheets: ``Summary`` (the session, then the leaderboard) and ``Q1``.. (one per question asked)."""
    asked = (session["results"] or {}).get("questions", [])
    by_key = {(a["player_id"], a["question_index"]): a for a in answers}
    rules = scoring.ScoringRules.of(session)
    summary: list[list[Any]] = [
        ["quiz", session["quiz_title"]], ["pin", session["pin"]], ["status", session["status"]],
        ["started_at", session["started_at"]], ["ended_at", session["ended_at"]],
        ["questions_asked", len(asked)], ["players", len(players)], [],
        SUMMARY_COLUMNS + (["team"] if session["team_count"] else []),
    ]  # fmt: skip
    for p in players:
        row = [
            p["rank"],
            p["nickname"],
            p["user_id"],
            p["id"],
            p["score"],
            p["correct_count"],
            p["kicked_at"] is not None,
        ]
        summary.append(row + ([p["team"]] if session["team_count"] else []))
    # How the session scored: after the leaderboard, so that the rows above keep their places.
    summary += [
        [], ["scoring", rules.mode], ["streak_bonus", rules.streak_bonus_points > 0],
        ["streak_bonus_points", rules.streak_bonus_points], ["team_count", session["team_count"]],
    ]  # fmt: skip
    sheets = [("Summary", summary)]
    standings = team_standings(session, players)
    if standings:
        teams: list[list[Any]] = [TEAM_COLUMNS]
        teams += [[t["rank"], t["team"], t["name"], t["score"], t["members"]] for t in standings]
        sheets.append(("Teams", teams))
    for question in asked:
        rows: list[list[Any]] = [
            ["question", question.get("text")], ["question_type", question.get("question_type")],
            ["correct_answer", question.get("correct_answer")], ["answered", question.get("answered")],
            ["correct", question.get("correct")], [], QUESTION_COLUMNS,
        ]  # fmt: skip
        for player in players:
            answer = by_key.get((player["id"], question["index"]))
            rows.append([
                player["nickname"], player["user_id"], player["id"], answer["answer"] if answer else None,
                bool(answer and answer["is_correct"]), answer["points"] if answer else 0,
                answer["response_time_ms"] if answer else None,
            ])  # fmt: skip
        # Added after the rows, so that those above keep their places.
        rows += [[], ["double_points", bool(question.get("double_points"))]]
        sheets.append((f"Q{question['index'] + 1}", rows))
    return sheets


@routes.get("/api/v1/live-sessions/{id}/results.xlsx")
@endpoint(
    summary="Results of a live session as an xlsx workbook: a summary sheet and one sheet per question",
    description="Sheet `Summary`: the session (quiz, pin, status, times, counts), then the leaderboard ("
    + ", ".join(SUMMARY_COLUMNS)
    + ", and `team` in team mode), then how it scored (rows `scoring`, `streak_bonus`, `streak_bonus_points`, "
    "`team_count`). "
    "Sheet `Teams` (team mode only): the team leaderboard ("
    + ", ".join(TEAM_COLUMNS)
    + "). Sheets `Q1`, `Q2` ..: the question, then one row per player ("
    + ", ".join(QUESTION_COLUMNS)
    + "), then a `double_points` row. The same data and access as `results.csv`; text that a spreadsheet would "
    "run as a formula is prefixed with `'`.",
    errors=[404],
    guards=[host_live],
    tags=TAGS,
    response_content_type=XLSX_TYPE,
)
async def live_results_xlsx(request: web.Request) -> web.Response:
    async with request.app[DB].connection() as conn:
        session = await hosted_session(conn, current_user(request), path_uuid(request))
        players = await queries.list_players(conn, session["id"])
        answers = await queries.list_answers(conn, session["id"])
    body = await asyncio.to_thread(xlsx_bytes, results_sheets(session, players, answers))
    filename = f"live-session-{session['pin']}-{session['id']}.xlsx"
    return web.Response(
        body=body, content_type=XLSX_TYPE, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
