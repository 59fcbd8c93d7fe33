"""A live game with a slider, an ordering question, a poll and a word cloud, over real Socket.IO clients.

Two app instances share PostgreSQL and Redis; the players sit on different
instances. The session clock is frozen, so points are exact.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from lms.db import Database
from lms.live.scoring import points_for
from lms.quizzes.grading import GradableQuestion, grade
from lms.tables import live_answers, live_sessions
from tests.builders import make_question, make_quiz, make_quiz_course, make_user
from tests.conftest import Instance
from tests.polling import eventually
from tests.test_live_actor import T0
from tests.test_live_protocol import NS, call, code, connect, freeze, player, token_for

SLIDER = {"min": 0, "max": 100, "step": 1, "tolerance": 2, "zero_at": 12}
ITEMS = [{"id": "rome", "text": "Rome"}, {"id": "byz", "text": "Byzantium"}, {"id": "ott", "text": "Ottomans"},
         {"id": "tr", "text": "Turkey"}]  # fmt: skip
ORDER = [i["id"] for i in ITEMS]


async def question_types_game(db: Database, *, count: int = 4) -> dict[str, Any]:
    """A session of a quiz with a slider, an ordering question, a poll and a word cloud (the first ``count``)."""
    teacher = await make_user(db, role="instructor")
    course = await make_quiz_course(db, instructor_id=teacher["id"])
    quiz = await make_quiz(db, course_id=course["id"], title="New types")
    specs: list[dict[str, Any]] = [
        {"question_type": "slider", "options": [], "correct_answer": 88, "settings": SLIDER, "points": 2,
         "time_limit_seconds": 30},
        {"question_type": "ordering", "options": ITEMS, "correct_answer": ORDER, "settings": {"partial_credit": True},
         "points": 4},
        {"question_type": "poll", "correct_answer": None,
         "options": [{"id": "tea", "text": "Tea"}, {"id": "coffee", "text": "Coffee"}]},
        {"question_type": "word_cloud", "options": [], "correct_answer": None},
    ]  # fmt: skip
    made = [await make_question(db, quiz_id=quiz["id"], **spec) for spec in specs[:count]]
    async with db.transaction() as conn:
        session = await conn.fetch_one(
            insert(live_sessions)
            .values(
                quiz_id=quiz["id"], host_id=teacher["id"], pin=f"{uuid.uuid4().int % 1_000_000:06d}",
                allow_guests=True, question_time_limit_seconds=20, total_questions=len(made),
            )
            .returning(live_sessions)
        )  # fmt: skip
    assert session is not None
    return {"teacher": teacher, "questions": made, "id": str(session["id"]), "pin": session["pin"]}


async def test_a_game_with_each_new_question_type(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game = await question_types_game(db)
    host = await connect(live, a, await token_for(a, game["teacher"]))
    assert (await call(host, "host_session", {"session_id": game["id"]}))["ok"]
    await host.next("session_state", NS)
    await freeze(a, game["id"], T0)
    alice, _ = await player(live, a, game["pin"], "Alice")
    bob, _ = await player(live, b, game["pin"], "Bob")
    for _ in range(2):
        await host.next("player_joined", NS)
    frames: list[Any] = []

    # -- slider: the range goes out, never the answer; its own time limit --
    assert (await call(host, "start_session"))["state"] == "question"
    started = await alice.next("question_started", NS)
    frames.append(started)
    assert await bob.next("question_started", NS) == started
    assert started["question_type"] == "slider" and started["options"] == []
    assert started["settings"] == {"min": 0, "max": 100, "step": 1} and started["media"] is None
    assert started["time_limit_ms"] == 30_000 and started["deadline"] == T0 + 30_000
    for bad in (50.5, 101, -1, 1e308, "88", ["88"]):
        assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": bad})) == "invalid_answer", bad
    for bad in (math.nan, math.inf, True, {"v": 88}):
        assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": bad})) == "invalid_payload"
    assert (await call(alice, "submit_answer", {"question_index": 0, "answer": 88}))["ok"]
    assert (await call(bob, "submit_answer", {"question_index": 0, "answer": 93.0}))["ok"]
    ended = await host.next("question_ended", NS)
    assert ended["correct_answer"] == 88
    assert ended["distribution"]["80..90"] == 1 and ended["distribution"]["90..100"] == 1
    assert sum(ended["distribution"].values()) == 2 and len(ended["distribution"]) == 10
    mine, theirs = await alice.next("answer_result", NS), await bob.next("answer_result", NS)
    assert (mine["correct"], mine["points"]) == (True, 2000)
    # 5 off with tolerance 2 and zero at 12: 70 % of the points, scored by time as a correct answer is.
    assert (theirs["correct"], theirs["points"]) == (False, 1400)

    # -- ordering: items shuffled (the same for everyone), partial credit --
    assert (await call(host, "next"))["state"] == "leaderboard"
    assert (await call(host, "next"))["state"] == "question"
    started = await alice.next("question_started", NS)
    frames.append(started)
    assert started["deadline"] == T0 + 20_000  # the session's time limit
    shown = [o["id"] for o in started["options"]]
    assert shown != ORDER and sorted(shown) == sorted(ORDER)
    assert [o["id"] for o in (await bob.next("question_started", NS))["options"]] == shown
    for bad in (ORDER[:3], [*ORDER[:3], ORDER[0]], [*ORDER, "zz"], [*ORDER[:3], "zz"], []):
        assert code(await call(alice, "submit_answer", {"question_index": 1, "answer": bad})) == "invalid_answer"
    assert (await call(alice, "submit_answer", {"question_index": 1, "answer": ORDER}))["ok"]
    swapped = [ORDER[0], ORDER[1], ORDER[3], ORDER[2]]
    assert (await call(bob, "submit_answer", {"question_index": 1, "answer": swapped}))["ok"]
    ended = await host.next("question_ended", NS)
    assert ended["correct_answer"] == ORDER
    assert ended["distribution"] == {"rome": 2, "byz": 2, "ott": 1, "tr": 1}
    mine, theirs = await alice.next("answer_result", NS), await bob.next("answer_result", NS)
    assert (mine["correct"], mine["points"], mine["streak"]) == (True, 4000, 2)
    assert (theirs["correct"], theirs["points"]) == (False, 2000)

    # -- poll: counted, no points, no verdict on the streak --
    assert (await call(host, "next"))["state"] == "leaderboard"
    assert (await call(host, "next"))["state"] == "question"
    frames.append(await alice.next("question_started", NS))
    await bob.next("question_started", NS)
    assert code(await call(alice, "submit_answer", {"question_index": 2, "answer": "milk"})) == "invalid_answer"
    # The same answer sent three times at once (a retry storm) is recorded, and counted, once.
    acks = await asyncio.gather(
        *(call(alice, "submit_answer", {"question_index": 2, "answer": "tea"}) for _ in range(3))
    )
    assert sorted(a["ok"] for a in acks) == [False, False, True]
    # (or refused by the per-connection token bucket, which counts the earlier bad answers too)
    assert {code(a) for a in acks if not a["ok"]} <= {"already_answered", "rate_limited"}
    count = await host.next("answer_count", NS)
    while (count["index"], count["answered"]) != (2, 1):  # earlier questions' counts carry no distribution
        assert ("distribution" in count) is (count["index"] == 2)  # polls only
        count = await host.next("answer_count", NS)
    assert count == {"index": 2, "answered": 1, "players": 2, "distribution": {"tea": 1, "coffee": 0}}
    # A host (re)connecting mid-poll gets the bars so far in its snapshot, on any instance.
    second_screen = await connect(live, b, await token_for(b, game["teacher"]))
    hosted = await call(second_screen, "host_session", {"session_id": game["id"]})
    assert hosted["session"]["distribution"] == {"tea": 1, "coffee": 0}
    await second_screen.close()
    assert (await call(bob, "submit_answer", {"question_index": 2, "answer": "coffee"}))["ok"]
    ended = await host.next("question_ended", NS)
    assert ended == {"index": 2, "correct_answer": None, "distribution": {"tea": 1, "coffee": 1}}
    mine = await alice.next("answer_result", NS)
    assert (mine["correct"], mine["points"], mine["streak"], mine["total_score"]) == (False, 0, 2, 6000)

    # -- word cloud: folded, counted, and the deny-list keeps words from the host --
    assert (await call(host, "next"))["state"] == "leaderboard"
    assert (await call(host, "next"))["state"] == "question"
    frames.append(await alice.next("question_started", NS))
    await bob.next("question_started", NS)
    denied = await call(bob, "submit_answer", {"question_index": 3, "answer": "the ADMIN rocks"})
    assert code(denied) == "answer_not_allowed"
    for bad in ("x" * 41, "   ", "bad\x00word", ["sunny"]):
        assert code(await call(bob, "submit_answer", {"question_index": 3, "answer": bad})) == "invalid_answer"
    assert (await call(alice, "submit_answer", {"question_index": 3, "answer": "  Sunny   Dáy"}))["ok"]
    assert (await call(bob, "submit_answer", {"question_index": 3, "answer": "sunny day"}))["ok"]
    ended = await host.next("question_ended", NS)
    assert ended == {"index": 3, "correct_answer": None, "distribution": {"sunny day": 2}}
    assert "admin" not in json.dumps([data for _, _, data in host.log]).lower()

    # Nothing that went out while a question was open named its answer.
    for frame in frames:
        assert "correct_answer" not in frame and "tolerance" not in json.dumps(frame)
    assert frames[1]["options"] != ITEMS

    # The live verdicts are the self-paced grader's: the same share of the same points.
    questions = [
        GradableQuestion(str(q["id"]), q["question_type"], q["correct_answer"], Decimal(q["points"]),
                         settings=q["settings"])
        for q in game["questions"]
    ]  # fmt: skip
    by_bob = {str(q.id): answer for q, answer in zip(questions, [93.0, swapped, "coffee", "sunny day"], strict=True)}
    self_paced = grade(questions, by_bob, Decimal(50)).results
    assert [r["points_awarded"] for r in self_paced] == ["1.40", "2.00", "0", "0"]
    for result, live_points in zip(self_paced[:2], (1400, 2000), strict=True):
        awarded = Decimal(result["points_awarded"])
        assert points_for(awarded, correct=True, elapsed_ms=0, time_limit_ms=20_000) == live_points

    # What PostgreSQL keeps: every accepted answer, with its verdict and points.
    assert (await call(host, "end_session"))["ok"]
    await host.next("session_ended", NS)

    async def stored() -> list[Any]:
        async with db.connection() as conn:
            return await conn.fetch_all(
                select(live_answers.c.question_index, live_answers.c.answer, live_answers.c.points)
                .where(live_answers.c.session_id == uuid.UUID(game["id"]))
                .order_by(live_answers.c.question_index, live_answers.c.points.desc())
            )

    rows = await _wait_rows(stored, 8)
    assert [(r["question_index"], r["points"]) for r in rows] == [
        (0, 2000), (0, 1400), (1, 4000), (1, 2000), (2, 0), (2, 0), (3, 0), (3, 0),
    ]  # fmt: skip


async def _wait_rows(read: Any, count: int) -> list[Any]:
    rows: list[Any] = []

    async def enough() -> bool:
        rows[:] = await read()
        return len(rows) >= count

    await eventually(enough)
    return rows
