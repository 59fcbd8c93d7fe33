"""Assigned challenges (lms/live/challenges.py): a live quiz played alone by a deadline, scored like live.

Real PostgreSQL; the app's quiz clock (:mod:`lms.quizzes.clock`) is moved by hand,
so the timers are judged exactly.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lms.app import create_app
from lms.config import Settings
from lms.db import Database
from lms.live.challenges import ChallengeAnswerIn, ChallengeCreate
from lms.live.scoring import points_for
from lms.quizzes.clock import CLOCK
from tests.builders import FakeClock, make_question, make_quiz, make_quiz_course, make_quiz_enrollment, signed_in
from tests.test_live_question_types import ITEMS, ORDER, SLIDER

Client = Any


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(config: Settings, clock: FakeClock) -> web.Application:
    app = create_app(config)
    app[CLOCK] = clock
    return app


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> Client:
    return await aiohttp_client(app)


async def setup(client: Client, db: Database, *, students: int = 1) -> dict[str, Any]:
    owner_row, owner = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner_row["id"])
    quiz = await make_quiz(db, course_id=course["id"])
    for kind in ("single_choice", "true_false", "multiple_choice"):
        await make_question(db, quiz_id=quiz["id"], question_type=kind, points=1)
    players = []
    for n in range(students):
        row, headers = await signed_in(client, db, role="student", full_name=f"Student {n}")
        await make_quiz_enrollment(db, student_id=row["id"], course_id=course["id"])
        players.append(headers)
    return {"owner": owner, "course": course, "quiz": quiz, "students": players}


async def post(client: Client, path: str, headers: dict[str, str] | None, body: Any = None) -> tuple[int, Any]:
    response = await client.post(path, json=body, headers=headers or {})
    return response.status, await response.json()


async def assign(client: Client, w: dict[str, Any], clock: FakeClock, **body: Any) -> dict[str, Any]:
    payload = {"deadline": (clock() + timedelta(days=1)).isoformat()} | body
    status, data = await post(client, f"/api/v1/quizzes/{w['quiz']['id']}/challenges", w["owner"], payload)
    assert status == 201, data
    return dict(data)


def answer_path(challenge: dict[str, Any]) -> str:
    return f"/api/v1/challenges/{challenge['id']}/play/answers"


async def test_a_challenge_is_played_alone_with_the_live_timers_and_scoring(
    client: Client, db: Database, clock: FakeClock
) -> None:
    w = await setup(client, db, students=2)
    challenge = await assign(client, w, clock)
    assert challenge["total_questions"] == 3 and challenge["question_time_limit_seconds"] == 20
    ada, bob = w["students"]
    status, play = await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    assert status == 200, play
    question = play["question"]
    assert question["index"] == 0 and question["time_limit_ms"] == 20_000 and "correct_answer" not in question
    assert [o["id"] for o in question["options"]] == ["a", "b", "c"]
    # Resuming is the same question, started when the server first started it.
    assert (await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada))[1] == play

    clock.advance(5)
    status, result = await post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "b"})
    assert status == 200, result
    assert result["correct"] is True
    assert result["points"] == points_for(1, correct=True, elapsed_ms=5000, time_limit_ms=20_000) == 875
    assert result["play"]["question"]["index"] == 1  # started now, by the server
    clock.advance(2)
    status, result = await post(client, answer_path(challenge), ada, {"question_index": 1, "answer": "false"})
    assert status == 200 and result["correct"] is False and result["points"] == 0
    status, result = await post(client, answer_path(challenge), ada, {"question_index": 2, "answer": ["a", "b", "d"]})
    assert status == 200 and result["correct"] is True and result["points"] == 1000
    assert result["play"]["finished"] is True and result["play"]["question"] is None
    assert result["play"]["score"] == 1875 and result["play"]["correct_count"] == 2

    await post(client, f"/api/v1/challenges/{challenge['id']}/play", bob)
    clock.advance(1)
    await post(client, answer_path(challenge), bob, {"question_index": 0, "answer": "a"})
    for viewer in (w["owner"], ada, bob):
        response = await client.get(f"/api/v1/challenges/{challenge['id']}/leaderboard", headers=viewer)
        board = await response.json()
        assert response.status == 200
        assert [(e["full_name"], e["score"], e["rank"], e["finished"]) for e in board["entries"]] == [
            ("Student 0", 1875, 1, True),
            ("Student 1", 0, 2, False),
        ]


async def test_timers_replays_and_the_deadline(client: Client, db: Database, clock: FakeClock) -> None:
    w = await setup(client, db)
    challenge = await assign(client, w, clock, deadline=(clock() + timedelta(minutes=5)).isoformat())
    (ada,) = w["students"]
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "b"})
    assert status == 409 and data["type"].endswith("challenge-not-started")
    await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    clock.advance(20.25)  # the limit plus the live grace (250 ms): still in time, half the points
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "b"})
    assert status == 200 and data["points"] == 500
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "b"})  # replayed
    assert status == 409 and data["type"].endswith("answer-already-recorded")
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 2, "answer": ["a"]})
    assert status == 409 and data["type"].endswith("wrong-question") and data["current_index"] == 1
    clock.advance(20.251)  # question 1's time ran out
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 1, "answer": "true"})
    assert status == 409 and data["type"].endswith("answer-too-late")
    status, play = await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    assert play["question"]["index"] == 2 and play["score"] == 500  # question 1 missed, question 2 started now
    clock.advance(25)  # and question 2 ran out too, unanswered: resuming records it as missed
    status, play = await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    assert status == 200 and play["finished"] is True and play["score"] == 500
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 2, "answer": ["a"]})
    assert status == 409 and data["type"].endswith("challenge-finished")

    late = await setup(client, db)
    other = await assign(client, late, clock, deadline=(clock() + timedelta(seconds=30)).isoformat())
    await post(client, f"/api/v1/challenges/{other['id']}/play", late["students"][0])
    clock.advance(31)
    status, data = await post(client, answer_path(other), late["students"][0], {"question_index": 0, "answer": "b"})
    assert status == 409 and data["type"].endswith("challenge-closed")
    _, newcomer = await signed_in(client, db, role="student")
    await make_quiz_enrollment(db, student_id=(await me(client, newcomer))["id"], course_id=late["course"]["id"])
    status, data = await post(client, f"/api/v1/challenges/{other['id']}/play", newcomer)
    assert status == 409 and data["type"].endswith("challenge-closed")


async def me(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/api/v1/users/me", headers=headers)
    assert response.status == 200
    return dict(await response.json())


async def test_concurrent_answers_to_one_question_score_once(client: Client, db: Database, clock: FakeClock) -> None:
    w = await setup(client, db)
    challenge = await assign(client, w, clock)
    (ada,) = w["students"]
    starts = await asyncio.gather(
        *(post(client, f"/api/v1/challenges/{challenge['id']}/play", ada) for _ in range(5))
    )
    assert {s for s, _ in starts} == {200} and len({p["question"]["started_at"] for _, p in starts}) == 1
    clock.advance(2)
    results = await asyncio.gather(
        *(post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "b"}) for _ in range(8))
    )
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] + [409] * 7, results
    _, play = await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    assert play["score"] == points_for(1, correct=True, elapsed_ms=2000, time_limit_ms=20_000)


async def test_least_privilege(client: Client, db: Database, clock: FakeClock) -> None:
    w = await setup(client, db)
    (ada,) = w["students"]
    body = {"deadline": (clock() + timedelta(days=1)).isoformat()}
    quiz_path = f"/api/v1/quizzes/{w['quiz']['id']}/challenges"
    assert (await post(client, quiz_path, ada, body))[0] == 403  # students do not host
    _, stranger = await signed_in(client, db, role="instructor")
    assert (await post(client, quiz_path, stranger, body))[0] == 404  # another course's instructor
    assert (await post(client, quiz_path, None, body))[0] == 401
    challenge = await assign(client, w, clock)
    listed = await client.get(quiz_path, headers=w["owner"])
    assert listed.status == 200 and [c["id"] for c in await listed.json()] == [challenge["id"]]
    assert (await client.get(quiz_path, headers=stranger)).status == 404
    assert (await client.get(quiz_path, headers=ada)).status == 403
    _, outsider = await signed_in(client, db, role="student")
    for path in (f"/api/v1/challenges/{challenge['id']}", f"/api/v1/challenges/{challenge['id']}/leaderboard"):
        assert (await client.get(path, headers=outsider)).status == 404
        assert (await client.get(path, headers=stranger)).status == 404
        assert (await client.get(path, headers=ada)).status == 200
        assert (await client.get(path)).status == 401
    play = f"/api/v1/challenges/{challenge['id']}/play"
    assert (await post(client, play, outsider))[0] == 404
    assert (await post(client, play, w["owner"]))[0] == 403  # the host does not play
    assert (await client.get("/api/v1/challenges/not-a-uuid", headers=ada)).status == 404


async def test_malformed_input_is_refused_with_422(client: Client, db: Database, clock: FakeClock) -> None:
    w = await setup(client, db)
    (ada,) = w["students"]
    quiz_path = f"/api/v1/quizzes/{w['quiz']['id']}/challenges"
    for body in (
        {}, {"deadline": "tomorrow"}, {"deadline": "2030-01-01T00:00:00"},  # no zone
        {"deadline": (clock() - timedelta(seconds=1)).isoformat()},  # past
        {"deadline": (clock() + timedelta(days=1)).isoformat(), "question_time_limit_seconds": 4},
        {"deadline": (clock() + timedelta(days=1)).isoformat(), "extra": 1}, {"deadline": "\x00"}, [], "x",
    ):  # fmt: skip
        status, data = await post(client, quiz_path, w["owner"], body)
        assert status == 422, (body, data)
    challenge = await assign(client, w, clock)
    await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    for body in (
        {"question_index": 0}, {"question_index": -1, "answer": "b"}, {"question_index": "0", "answer": "b"},
        {"question_index": 0, "answer": ["b"]},  # single choice takes one option id
        {"question_index": 0, "answer": "x" * 10_000}, {"question_index": 0, "answer": 5},
        {"question_index": 0, "answer": "b", "again": True}, {"question_index": 0, "answer": ["a"] * 1000},
        {"question_index": 0, "answer": "b\x00"},
    ):  # fmt: skip
        status, data = await post(client, answer_path(challenge), ada, body)
        assert status == 422, (body, data)
    # Nothing was recorded: the question is still open and answerable.
    status, data = await post(client, answer_path(challenge), ada, {"question_index": 0, "answer": "a"})
    assert status == 200 and data["correct"] is False


@pytest.mark.no_services
@given(st.integers(-5, 20_000), st.one_of(st.text(max_size=50), st.lists(st.text(max_size=5), max_size=40)))
def test_answer_payloads_validate_exactly(index: int, answer: Any) -> None:
    try:
        ChallengeAnswerIn.model_validate({"question_index": index, "answer": answer})
    except ValidationError:
        assert index < 0 or index > 10_000 or (isinstance(answer, list) and len(answer) > 100)
    else:
        assert 0 <= index <= 10_000


@pytest.mark.no_services
@given(st.integers(-10, 1000))
def test_time_limits_validate_exactly(seconds: int) -> None:
    try:
        ChallengeCreate.model_validate({"deadline": "2030-01-01T00:00+00:00", "question_time_limit_seconds": seconds})
    except ValidationError:
        assert not 5 <= seconds <= 600
    else:
        assert 5 <= seconds <= 600


async def test_new_question_types_are_shown_and_scored_as_live(client: Client, db: Database, clock: FakeClock) -> None:
    """A slider with its own time limit (partial credit), a shuffled ordering question, a double-points question."""
    w = await setup(client, db)
    quiz_id = w["quiz"]["id"]
    await make_question(
        db, quiz_id=quiz_id, question_type="slider", options=[], correct_answer=88, settings=SLIDER, points=2,
        time_limit_seconds=30,
    )  # fmt: skip
    await make_question(
        db, quiz_id=quiz_id, question_type="ordering", options=ITEMS, correct_answer=ORDER,
        settings={"partial_credit": True}, points=4,
    )  # fmt: skip
    await make_question(db, quiz_id=quiz_id, question_type="single_choice", points=1, double_points=True)
    challenge = await assign(client, w, clock)
    (ada,) = w["students"]
    await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    for index, answer in enumerate(("b", "true", ["a", "b", "d"])):  # the three questions of setup()
        assert (await post(client, answer_path(challenge), ada, {"question_index": index, "answer": answer}))[0] == 200

    status, play = await post(client, f"/api/v1/challenges/{challenge['id']}/play", ada)
    slider = play["question"]
    assert slider["question_type"] == "slider" and slider["options"] == [] and slider["time_limit_ms"] == 30_000
    assert slider["settings"] == {"min": 0, "max": 100, "step": 1} and slider["media"] is None
    assert 88 not in slider["settings"].values()
    for bad in (50.5, 101, "88"):
        status, problem = await post(client, answer_path(challenge), ada, {"question_index": 3, "answer": bad})
        assert status == 422, (bad, problem)
    clock.advance(25)  # past the challenge's 20 s, within the slider's own 30 s
    status, result = await post(client, answer_path(challenge), ada, {"question_index": 3, "answer": 93})
    assert status == 200, result
    # 5 off with tolerance 2 and zero at 12: 70 % of the points, scored by time like a correct answer.
    share = Decimal("0.7")
    assert result["correct"] is False
    assert result["points"] == points_for(2, correct=True, share=share, elapsed_ms=25_000, time_limit_ms=30_000)

    ordering = result["play"]["question"]
    assert ordering["question_type"] == "ordering"
    shown = [o["id"] for o in ordering["options"]]
    assert shown != ORDER and sorted(shown) == sorted(ORDER)  # the answer is not given away
    status, result = await post(client, answer_path(challenge), ada, {"question_index": 4, "answer": ORDER})
    assert status == 200 and result["correct"] is True and result["points"] == 4000

    status, result = await post(client, answer_path(challenge), ada, {"question_index": 5, "answer": "b"})
    assert status == 200 and result["correct"] is True
    assert result["points"] == points_for(1, correct=True, double=True, elapsed_ms=0, time_limit_ms=20_000) == 2000
