"""Assigned challenges: a live quiz played alone, by a deadline, with the live timers and scoring.

A host (the quiz's course instructor or an admin) assigns a quiz with a
deadline; students enrolled in the course play it on their own devices.
The server starts each question (``question_started_at``, the app's clock,
:mod:`lms.quizzes.clock`) and scores each answer as a live session does:
:func:`lms.quizzes.grading.fraction` for the verdict (the grader's share),
the live :func:`lms.live.scoring.points_for` for the points by server time
(double-points questions doubled, each question's own time limit). A
question whose time (plus the live answer grace) ran out is recorded as
missed and the next one starts; an answer after that is refused (409).
Every play is on one leaderboard per challenge.

One row per student (``challenge_plays``), locked ``FOR UPDATE`` while an
answer is recorded: concurrent or replayed answers to one question give one
score and 409 for the others.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as upsert

from lms.api.endpoint import endpoint, path_uuid
from lms.api.problems import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from lms.appkeys import CONFIG, DB
from lms.auth.guards import Principal, authenticated, current_user, require
from lms.auth.permissions import Permission
from lms.db import Connection, Row
from lms.live import queries, scoring
from lms.live import questions as live_questions
from lms.live.routes import hosted_quiz
from lms.quizzes.access import QuizAccess, quiz_access
from lms.quizzes.clock import now as clock_now
from lms.quizzes.grading import answer_shape_error, fraction
from lms.quizzes.question_types import ORDERING, public_settings
from lms.quizzes.schemas import PlayedAnswer
from lms.tables import challenge_answers, challenge_plays, live_challenges, users

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
TAGS = ["challenges"]


# -- payloads ---------------------------------------------------------------------


class ChallengeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadline: AwareDatetime = Field(description="Answers are accepted until then (ISO 8601 with a zone).")
    # Omitted: the configured default (live.default_question_time_limit_seconds).
    question_time_limit_seconds: int | None = Field(default=None, ge=5, le=600)


class ChallengeOut(BaseModel):
    id: uuid.UUID
    quiz_id: uuid.UUID
    created_by: uuid.UUID
    deadline: datetime
    question_time_limit_seconds: int
    total_questions: int
    created_at: datetime


class ChallengeQuestion(BaseModel):
    index: int
    total: int
    text: str
    question_type: str
    options: list[dict[str, str]]
    settings: dict[str, Any] | None = Field(description="As in the live question_started: a slider's range, else null.")
    media: dict[str, Any] | None = Field(description="As in the live question_started: image_url and video, or null.")
    time_limit_ms: int = Field(description="The question's own time limit, or the challenge's.")
    started_at: datetime = Field(description="When the server started this question for this player.")
    deadline: datetime = Field(description="started_at + the time limit (answers get the live grace on top).")


class ChallengePlay(BaseModel):
    challenge_id: uuid.UUID
    score: int
    correct_count: int
    total_questions: int
    finished: bool
    question: ChallengeQuestion | None = Field(description="The question to answer now; null when finished.")


class ChallengeAnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question_index: StrictInt = Field(ge=0, le=10_000)
    answer: PlayedAnswer


class ChallengeAnswerOut(BaseModel):
    correct: bool
    points: int
    play: ChallengePlay


class LeaderboardRow(BaseModel):
    rank: int
    user_id: uuid.UUID
    full_name: str
    score: int
    correct_count: int
    finished: bool


class ChallengeLeaderboard(BaseModel):
    challenge_id: uuid.UUID
    entries: list[LeaderboardRow]


# -- the rules ----------------------------------------------------------------------


def closed(challenge_id: uuid.UUID) -> Conflict:
    return Conflict(
        "The challenge's deadline has passed.", type_slug="challenge-closed", challenge_id=str(challenge_id)
    )


async def challenge_access(conn: Connection, principal: Principal, challenge_id: uuid.UUID) -> tuple[Row, QuizAccess]:
    """The challenge if the caller manages its quiz or is enrolled in its course (404 for anyone else)."""
    challenge = await conn.fetch_one(select(live_challenges).where(live_challenges.c.id == challenge_id))
    if challenge is None:
        raise NotFound("No such challenge.")
    try:
        access = await quiz_access(conn, principal, challenge["quiz_id"])
    except NotFound:
        raise NotFound("No such challenge.") from None
    return challenge, access


def player_of(access: QuizAccess) -> None:
    if access.enrollment is None:
        raise Forbidden("Only students enrolled in the course play its challenges.")


def present_play(challenge: Row, play: Row, questions: list[Row]) -> dict[str, Any]:
    total = len(questions)
    index = play["current_index"]
    finished = play["finished_at"] is not None or index >= total
    question = None
    if not finished:
        row = questions[index]
        limit = time_limit_ms(challenge, row)
        question = {
            "index": index, "total": total, "text": row["question_text"], "question_type": row["question_type"],
            # What a live question_started shows: ordering items shuffled, a slider's range, media.
            "options": live_questions.public_options(
                str(row["id"]), row["question_type"], row["options"], row["correct_answer"]
            ),
            "settings": public_settings(row["question_type"], row["settings"]),
            "media": live_questions.media(row["image_file_id"], row["video"]),
            "time_limit_ms": limit,
            "started_at": play["question_started_at"],
            "deadline": play["question_started_at"] + timedelta(milliseconds=limit),
        }  # fmt: skip
    return {
        "challenge_id": challenge["id"], "score": play["score"], "correct_count": play["correct_count"],
        "total_questions": total, "finished": finished, "question": question,
    }  # fmt: skip


async def lock_play(conn: Connection, challenge_id: uuid.UUID, user_id: uuid.UUID) -> Row | None:
    return await conn.fetch_one(
        select(challenge_plays)
        .where(challenge_plays.c.challenge_id == challenge_id, challenge_plays.c.user_id == user_id)
        .with_for_update()
    )


async def record(
    conn: Connection, play: Row, questions: list[Row], now: datetime, *, answer: Any, correct: bool, points: int,
    elapsed_ms: int | None,
) -> Row:  # fmt: skip
    """Store the current question's answer (None: missed) and start the next question now."""
    index = play["current_index"]
    await conn.execute(
        insert(challenge_answers).values(
            play_id=play["id"], question_index=index, question_id=questions[index]["id"], answer=answer,
            correct=correct, points=points, elapsed_ms=elapsed_ms, answered_at=now,
        )
    )  # fmt: skip
    done = index + 1 >= len(questions)
    row = await conn.fetch_one(
        update(challenge_plays)
        .where(challenge_plays.c.id == play["id"])
        .values(
            current_index=index + 1, question_started_at=now, score=play["score"] + points,
            correct_count=play["correct_count"] + (1 if correct else 0), finished_at=now if done else None,
        )
        .returning(challenge_plays)
    )  # fmt: skip
    assert row is not None
    return row


def time_limit_ms(challenge: Row, question: Row) -> int:
    """The question's own time limit, as in a live session, else the challenge's."""
    return int(question["time_limit_seconds"] or challenge["question_time_limit_seconds"]) * 1000


def expired(challenge: Row, play: Row, question: Row, now: datetime, grace_ms: int) -> bool:
    limit = timedelta(milliseconds=time_limit_ms(challenge, question) + grace_ms)
    return play["finished_at"] is None and now > play["question_started_at"] + limit


# -- routes -------------------------------------------------------------------------


@routes.post("/api/v1/quizzes/{id}/challenges")
@endpoint(
    summary="Assign a quiz as a self-paced challenge",
    description="The quiz's course instructor or an admin. Students enrolled in the course play it alone "
    "until the deadline, with the live timers and scoring; one leaderboard per challenge.",
    body=ChallengeCreate,
    response=ChallengeOut,
    status=201,
    errors=[403, 404, 409, 422],
    guards=[require(Permission.HOST_LIVE)],
    tags=TAGS,
)
async def create_challenge(request: web.Request, body: ChallengeCreate) -> dict[str, Any]:
    principal = current_user(request)
    now = clock_now(request.app)
    if body.deadline <= now:
        raise ValidationFailed(
            "The deadline must be in the future.",
            errors=[FieldError(field="deadline", message="The deadline must be in the future.")],
        )
    async with request.app[DB].transaction() as conn:
        quiz = await hosted_quiz(conn, principal, path_uuid(request))
        if not quiz["is_published"]:
            raise Conflict("Publish the quiz before assigning it.")
        if quiz["question_count"] == 0:
            raise Conflict("The quiz has no questions.")
        limit = body.question_time_limit_seconds or request.app[CONFIG].live.default_question_time_limit_seconds
        row = await conn.fetch_one(
            insert(live_challenges)
            .values(
                quiz_id=quiz["id"], created_by=principal.id, deadline=body.deadline, question_time_limit_seconds=limit
            )
            .returning(live_challenges)
        )
    assert row is not None
    log.info("challenge %s of quiz %s assigned by %s", row["id"], quiz["id"], principal.id)
    return row | {"total_questions": quiz["question_count"]}


@routes.get("/api/v1/quizzes/{id}/challenges")
@endpoint(
    summary="Challenges of a quiz, newest first",
    description="The quiz's course instructor or an admin (404 for anyone else).",
    response=list[ChallengeOut],
    errors=[404],
    guards=[require(Permission.HOST_LIVE)],
    tags=TAGS,
)
async def list_challenges(request: web.Request) -> list[dict[str, Any]]:
    async with request.app[DB].connection() as conn:
        quiz = await hosted_quiz(conn, current_user(request), path_uuid(request))
        rows = await conn.fetch_all(
            select(live_challenges)
            .where(live_challenges.c.quiz_id == quiz["id"])
            .order_by(live_challenges.c.created_at.desc(), live_challenges.c.id)
        )
    return [row | {"total_questions": quiz["question_count"]} for row in rows]


@routes.get("/api/v1/challenges/{id}")
@endpoint(
    summary="A challenge",
    description="Its host, or a student enrolled in the quiz's course.",
    response=ChallengeOut,
    errors=[404],
    guards=[authenticated],
    tags=TAGS,
)
async def get_challenge(request: web.Request) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        challenge, _ = await challenge_access(conn, current_user(request), path_uuid(request))
        total = len(await queries.list_questions(conn, challenge["quiz_id"]))
    return challenge | {"total_questions": total}


@routes.post("/api/v1/challenges/{id}/play")
@endpoint(
    summary="Start or resume playing a challenge",
    description="Enrolled students. The first call starts question 0 (server time); later calls return "
    "where the play stands. A question whose time ran out unanswered is recorded as missed (0 points) and "
    "the next one starts now. After the deadline: 409 `challenge-closed`.",
    response=ChallengePlay,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def play_challenge(request: web.Request) -> dict[str, Any]:
    principal = current_user(request)
    grace = request.app[CONFIG].live.answer_grace_ms
    async with request.app[DB].transaction() as conn:
        challenge, access = await challenge_access(conn, principal, path_uuid(request))
        player_of(access)
        now = clock_now(request.app)
        questions = await queries.list_questions(conn, challenge["quiz_id"])
        play = await lock_play(conn, challenge["id"], principal.id)
        if play is None:
            if now > challenge["deadline"]:
                raise closed(challenge["id"])
            await conn.execute(  # two first calls at once: one row
                upsert(challenge_plays)
                .values(id=uuid.uuid4(), challenge_id=challenge["id"], user_id=principal.id, question_started_at=now)
                .on_conflict_do_nothing()
            )
            play = await lock_play(conn, challenge["id"], principal.id)
            assert play is not None
        elif play["current_index"] < len(questions) and expired(
            challenge, play, questions[play["current_index"]], now, grace
        ):
            play = await record(conn, play, questions, now, answer=None, correct=False, points=0, elapsed_ms=None)
        return present_play(challenge, play, questions)


@routes.post("/api/v1/challenges/{id}/play/answers")
@endpoint(
    summary="Answer the current question of a challenge",
    description="Scored like a live answer, by the server's time since it started the question. 409: "
    "`challenge-closed` (deadline passed), `answer-too-late` (the question's time ran out: recorded as "
    "missed, the next question starts), `answer-already-recorded` (that question is done: a replay), "
    "`wrong-question`, `challenge-not-started`, `challenge-finished`. 422: an answer of the wrong shape.",
    body=ChallengeAnswerIn,
    response=ChallengeAnswerOut,
    errors=[403, 404, 409, 422],
    guards=[authenticated],
    tags=TAGS,
)
async def answer_challenge(request: web.Request, body: ChallengeAnswerIn) -> dict[str, Any]:
    principal = current_user(request)
    grace = request.app[CONFIG].live.answer_grace_ms
    late = False
    async with request.app[DB].transaction() as conn:
        challenge, access = await challenge_access(conn, principal, path_uuid(request))
        player_of(access)
        now = clock_now(request.app)
        if now > challenge["deadline"]:
            raise closed(challenge["id"])
        play = await lock_play(conn, challenge["id"], principal.id)
        if play is None:
            raise Conflict("Start the challenge first.", type_slug="challenge-not-started")
        questions = await queries.list_questions(conn, challenge["quiz_id"])
        index = play["current_index"]
        if play["finished_at"] is not None or index >= len(questions):
            raise Conflict("This challenge is finished.", type_slug="challenge-finished")
        if body.question_index < index:
            raise Conflict("That question is already done.", type_slug="answer-already-recorded")
        if body.question_index > index:
            raise Conflict(f"The current question is {index}.", type_slug="wrong-question", current_index=index)
        if expired(challenge, play, questions[index], now, grace):
            play = await record(conn, play, questions, now, answer=None, correct=False, points=0, elapsed_ms=None)
            late = True
        else:
            question = questions[index]
            kind = question["question_type"]
            items = [str(o["id"]) for o in question["options"] or []] if kind == ORDERING else []
            problem = answer_shape_error(kind, body.answer, settings=question["settings"], options=items)
            if problem is not None:
                raise ValidationFailed("The answer is not valid.", errors=[FieldError(field="answer", message=problem)])
            elapsed = int((now - play["question_started_at"]).total_seconds() * 1000)
            # As a live session scores it (realtime.live.machine): the grader's share, by time, doubled if marked.
            share = fraction(kind, question["correct_answer"], body.answer, question["settings"])
            correct = share == 1
            points = scoring.points_for(
                Decimal(question["points"]), correct=share > 0, share=share, double=bool(question["double_points"]),
                elapsed_ms=elapsed, time_limit_ms=time_limit_ms(challenge, question),
            )  # fmt: skip
            play = await record(
                conn, play, questions, now, answer=body.answer, correct=correct, points=points, elapsed_ms=elapsed
            )
    if late:  # committed: the question stays missed
        raise Conflict("The question's time ran out; the next one has started.", type_slug="answer-too-late")
    return {"correct": correct, "points": points, "play": present_play(challenge, play, questions)}


@routes.get("/api/v1/challenges/{id}/leaderboard")
@endpoint(
    summary="A challenge's leaderboard",
    description="Every student who started it, best first (competition ranks: equal scores share one). "
    "Its host, or a student enrolled in the course.",
    response=ChallengeLeaderboard,
    errors=[404],
    guards=[authenticated],
    tags=TAGS,
)
async def challenge_leaderboard(request: web.Request) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        challenge, _ = await challenge_access(conn, current_user(request), path_uuid(request))
        rows = await conn.fetch_all(
            select(
                challenge_plays.c.user_id, users.c.full_name, challenge_plays.c.score,
                challenge_plays.c.correct_count, challenge_plays.c.finished_at,
            )
            .join_from(challenge_plays, users, users.c.id == challenge_plays.c.user_id)
            .where(challenge_plays.c.challenge_id == challenge["id"])
            .order_by(challenge_plays.c.score.desc(), func.lower(users.c.full_name), challenge_plays.c.user_id)
        )  # fmt: skip
    ranked = scoring.ranks({str(r["user_id"]): r["score"] for r in rows})
    entries = [
        {
            "rank": ranked[str(r["user_id"])], "user_id": r["user_id"], "full_name": r["full_name"],
            "score": r["score"], "correct_count": r["correct_count"], "finished": r["finished_at"] is not None,
        }
        for r in rows
    ]  # fmt: skip
    return {"challenge_id": challenge["id"], "entries": entries}
