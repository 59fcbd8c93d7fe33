"""Taking quizzes through the API: attempts, grading, limits, deadlines, what students may see."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from lms.app import create_app
from lms.config import Settings
from lms.db import Database, Row
from lms.events import EVENTS, DomainEvent, QuizAttemptSubmitted
from lms.quizzes.clock import CLOCK
from lms.quizzes.service import close_abandoned_attempts
from tests.builders import (
    FakeClock,
    make_question,
    make_quiz,
    make_quiz_course,
    make_quiz_enrollment,
    signed_in,
)

Client = TestClient  # type: ignore[type-arg]

# What must never reach a student before grading: the short answers, the
# explanations, and any key that could carry a correct answer.
SECRETS = ("Ulan Bator", "Ulaanbaatar", "EXPLANATION-", '"correct_answer"', '"explanation"')


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> list[DomainEvent]:
    return []


@pytest.fixture
def app(config: Settings, clock: FakeClock, events: list[DomainEvent]) -> web.Application:
    app = create_app(config)
    app[CLOCK] = clock

    async def record(event: DomainEvent) -> None:
        events.append(event)

    app[EVENTS].subscribe(record)
    return app


@dataclass
class World:
    owner: dict[str, str]
    student: dict[str, str]
    student_row: Row
    course: Row
    quiz: Row
    questions: dict[str, Row]


async def world(client: Client, db: Database, **quiz: Any) -> World:
    """A course with one quiz holding one question of each type, and an enrolled student."""
    owner_row, owner = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner_row["id"])
    quiz_row = await make_quiz(db, course_id=course["id"], **quiz)
    questions = {}
    for kind, points in [("single_choice", 1), ("multiple_choice", 2), ("true_false", 1), ("short_answer", 2)]:
        questions[kind] = await make_question(
            db, quiz_id=quiz_row["id"], question_type=kind, points=points, explanation=f"EXPLANATION-{kind}"
        )
    student_row, student = await signed_in(client, db, role="student", full_name="Ada Student")
    await make_quiz_enrollment(db, student_id=student_row["id"], course_id=course["id"])
    return World(owner, student, student_row, course, quiz_row, questions)


async def another_student(client: Client, db: Database, w: World) -> dict[str, str]:
    row, headers = await signed_in(client, db, role="student")
    await make_quiz_enrollment(db, student_id=row["id"], course_id=w.course["id"])
    return headers


async def start(client: Client, w: World, headers: dict[str, str] | None = None) -> tuple[int, str]:
    response = await client.post(f"/api/v1/quizzes/{w.quiz['id']}/attempts", headers=headers or w.student)
    return response.status, await response.text()


def answers(w: World, **by_type: Any) -> dict[str, Any]:
    return {"answers": [{"question_id": str(w.questions[k]["id"]), "answer": v} for k, v in by_type.items()]}


ALL_RIGHT = {
    "single_choice": "b",
    "multiple_choice": ["d", "a", "b"],
    "true_false": True,
    "short_answer": " ulaanBAATAR ",
}


def assert_no_secrets(raw: str) -> None:
    for secret in SECRETS:
        assert secret not in raw, secret


# -- starting --------------------------------------------------------------------


async def test_an_attempt_starts_with_questions_and_no_answers(client: Client, db: Database) -> None:
    w = await world(client, db)
    status, raw = await start(client, w)
    assert status == 201, raw
    assert_no_secrets(raw)
    attempt = json.loads(raw)
    assert attempt["status"] == "in_progress"
    assert attempt["attempt_number"] == 1
    assert attempt["deadline"] is None
    assert attempt["score"] is None and attempt["results"] is None
    assert attempt["answers"] == []
    assert [q["id"] for q in attempt["questions"]] == [str(q["id"]) for q in w.questions.values()]
    single = attempt["questions"][0]
    assert set(single) == {"id", "text", "question_type", "options", "points"}
    assert single["options"] == [{"id": "a", "text": "Lyon"}, {"id": "b", "text": "Paris"}, {"id": "c", "text": "Nice"}]
    assert attempt["questions"][3]["options"] == []


async def test_nothing_a_student_reads_before_submitting_holds_an_answer(client: Client, db: Database) -> None:
    w = await world(client, db, time_limit_seconds=600)
    _, raw = await start(client, w)
    attempt_id = json.loads(raw)["id"]
    reads = [
        await client.get(f"/api/v1/attempts/{attempt_id}", headers=w.student),
        await client.put(
            f"/api/v1/attempts/{attempt_id}/answers", json=answers(w, single_choice="a"), headers=w.student
        ),
        await client.get(f"/api/v1/quizzes/{w.quiz['id']}", headers=w.student),
        await client.get(f"/api/v1/quizzes/{w.quiz['id']}/attempts/mine", headers=w.student),
        await client.get(f"/api/v1/courses/{w.course['id']}/quizzes", headers=w.student),
        await client.get(f"/api/v1/quizzes/{w.quiz['id']}/questions", headers=w.student),  # 403
    ]
    for response in reads:
        assert response.status in (200, 403), await response.text()
        assert_no_secrets(await response.text())


async def test_a_timed_attempt_has_a_deadline_from_the_apps_clock(
    client: Client, db: Database, clock: FakeClock
) -> None:
    w = await world(client, db, time_limit_seconds=90)
    _, raw = await start(client, w)
    attempt = json.loads(raw)
    started = clock.current
    assert datetime.fromisoformat(attempt["started_at"]) == started
    assert datetime.fromisoformat(attempt["deadline"]) == started + timedelta(seconds=90)
    assert datetime.fromisoformat(attempt["server_now"]) == started
    assert attempt["deadline"].endswith("+00:00") or attempt["deadline"].endswith("Z")


async def test_who_may_start_an_attempt(client: Client, db: Database) -> None:
    w = await world(client, db)
    stranger = (await signed_in(client, db, role="student"))[1]
    dropped_row, dropped = await signed_in(client, db, role="student")
    await make_quiz_enrollment(db, student_id=dropped_row["id"], course_id=w.course["id"], status="dropped")
    assert (await start(client, w, stranger))[0] == 404
    assert (await start(client, w, dropped))[0] == 404
    assert (await start(client, w, w.owner))[0] == 403  # sees the quiz, takes no attempts
    draft = await make_quiz(db, course_id=w.course["id"], is_published=False)
    await make_question(db, quiz_id=draft["id"])
    response = await client.post(f"/api/v1/quizzes/{draft['id']}/attempts", headers=w.student)
    assert response.status == 404
    response = await client.post(f"/api/v1/quizzes/{w.quiz['id']}/attempts")
    assert response.status == 401


async def test_a_second_attempt_waits_for_the_first(client: Client, db: Database) -> None:
    w = await world(client, db)
    first = json.loads((await start(client, w))[1])
    status, raw = await start(client, w)
    assert status == 409
    assert json.loads(raw)["attempt_id"] == first["id"]


# -- shuffling -------------------------------------------------------------------


async def test_shuffled_order_is_drawn_per_attempt_and_stays_put(client: Client, db: Database) -> None:
    owner_row, _ = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner_row["id"])
    quiz = await make_quiz(db, course_id=course["id"], shuffle_questions=True, shuffle_options=True)
    options = [{"id": f"o{j}", "text": f"option {j}"} for j in range(6)]
    authored = [
        str((await make_question(db, quiz_id=quiz["id"], options=options, correct_answer="o0"))["id"]) for _ in range(8)
    ]
    tf = await make_question(db, quiz_id=quiz["id"], question_type="true_false")
    w = World({}, {}, {}, course, quiz, {})
    orders = []
    for _ in range(3):
        row, headers = await signed_in(client, db, role="student")
        await make_quiz_enrollment(db, student_id=row["id"], course_id=course["id"])
        started = json.loads((await start(client, w, headers))[1])
        again = await (await client.get(f"/api/v1/attempts/{started['id']}", headers=headers)).json()
        assert again["questions"] == started["questions"]  # the same order on every read
        ids = [q["id"] for q in started["questions"]]
        assert sorted(ids) == sorted([*authored, str(tf["id"])])
        for question in started["questions"]:
            if question["question_type"] == "true_false":
                assert [o["id"] for o in question["options"]] == ["true", "false"]
        orders.append((ids, [[o["id"] for o in q["options"]] for q in started["questions"]]))
    # 9! question orders and 6! option orders per question: all three unshuffled is ~impossible.
    assert any(ids != [*authored, str(tf["id"])] for ids, _ in orders)
    assert any(opts != [o["id"] for o in options] for _, per_q in orders for opts in per_q if len(opts) == 6)


# -- submitting and grading --------------------------------------------------------


async def test_submitting_grades_every_type_and_shows_answers_when_the_quiz_does(
    client: Client, db: Database, clock: FakeClock, events: list[DomainEvent]
) -> None:
    w = await world(client, db, passing_score=50)
    attempt = json.loads((await start(client, w))[1])
    clock.advance(42)
    response = await client.post(
        f"/api/v1/attempts/{attempt['id']}/submit",
        json=answers(w, single_choice="b", multiple_choice=["a", "b"], true_false="true", short_answer="ulan  BATOR"),
        headers=w.student,
    )
    assert response.status == 200, await response.text()
    graded = await response.json()
    assert graded["status"] == "graded"
    assert (graded["score"], graded["max_score"], graded["percentage"]) == (4, 6, 66.67)
    assert graded["is_passed"] is True
    assert graded["time_taken_seconds"] == 42
    assert graded["timed_out"] is False
    results = {r["question_id"]: r for r in graded["results"]}
    multiple = results[str(w.questions["multiple_choice"]["id"])]
    assert multiple["is_correct"] is False  # two of three: no partial credit
    assert multiple["points_awarded"] == 0 and multiple["points"] == 2
    assert multiple["answer"] == ["a", "b"]
    assert multiple["correct_answer"] == ["a", "b", "d"]
    assert multiple["explanation"] == "EXPLANATION-multiple_choice"
    assert results[str(w.questions["short_answer"]["id"])]["is_correct"] is True

    [event] = [e for e in events if isinstance(e, QuizAttemptSubmitted)]
    assert event == QuizAttemptSubmitted(
        course_id=w.course["id"],
        quiz_id=w.quiz["id"],
        attempt_id=uuid.UUID(attempt["id"]),
        student_id=w.student_row["id"],
        percentage=Decimal("66.67"),
        is_passed=True,
    )


async def test_correct_answers_stay_hidden_after_grading_when_the_quiz_says_so(client: Client, db: Database) -> None:
    w = await world(client, db, show_correct_answers=False)
    attempt = json.loads((await start(client, w))[1])
    response = await client.post(f"/api/v1/attempts/{attempt['id']}/submit", json=answers(w), headers=w.student)
    raw = await response.text()
    assert response.status == 200, raw
    assert_no_secrets(raw)
    assert all("is_correct" in r for r in json.loads(raw)["results"])
    raw = await (await client.get(f"/api/v1/attempts/{attempt['id']}", headers=w.student)).text()
    assert_no_secrets(raw)
    # The course's owner reviews with the answers.
    review = await (await client.get(f"/api/v1/attempts/{attempt['id']}", headers=w.owner)).json()
    assert all("correct_answer" in r for r in review["results"])


async def test_empty_and_unknown_answers_score_nothing(client: Client, db: Database) -> None:
    w = await world(client, db)
    attempt = json.loads((await start(client, w))[1])
    response = await client.post(
        f"/api/v1/attempts/{attempt['id']}/submit",
        json=answers(w, single_choice="zz-unknown", multiple_choice=[], true_false=None, short_answer="   "),
        headers=w.student,
    )
    graded = await response.json()
    assert response.status == 200, graded
    assert (graded["score"], graded["percentage"], graded["is_passed"]) == (0, 0, False)
    assert not any(r["is_correct"] for r in graded["results"])


async def test_all_right_is_full_marks(client: Client, db: Database) -> None:
    w = await world(client, db, passing_score=100)
    attempt = json.loads((await start(client, w))[1])
    response = await client.post(
        f"/api/v1/attempts/{attempt['id']}/submit", json=answers(w, **ALL_RIGHT), headers=w.student
    )
    graded = await response.json()
    assert (graded["score"], graded["percentage"], graded["is_passed"]) == (6, 100, True)


async def test_saved_answers_count_and_submitted_ones_win(client: Client, db: Database) -> None:
    w = await world(client, db)
    attempt = json.loads((await start(client, w))[1])
    url = f"/api/v1/attempts/{attempt['id']}"
    saved = await client.put(f"{url}/answers", json=answers(w, single_choice="a", true_false=True), headers=w.student)
    assert saved.status == 200
    assert len((await saved.json())["answers"]) == 2
    response = await client.post(f"{url}/submit", json=answers(w, single_choice="b"), headers=w.student)
    graded = await response.json()
    assert graded["score"] == 2  # single choice corrected at submit, true/false kept from the save


async def test_malformed_answers_are_422_and_change_nothing(client: Client, db: Database) -> None:
    w = await world(client, db)
    attempt = json.loads((await start(client, w))[1])
    url = f"/api/v1/attempts/{attempt['id']}/submit"
    single = str(w.questions["single_choice"]["id"])
    for body, field in [
        ({"answers": [{"question_id": str(uuid.uuid4()), "answer": "a"}]}, "answers.0.question_id"),
        (
            {"answers": [{"question_id": single, "answer": "a"}, {"question_id": single, "answer": "b"}]},
            "answers.1.question_id",
        ),
        (answers(w, multiple_choice="a"), "answers.0.answer"),
        (answers(w, short_answer=3), "answers.0.answer"),
        ({"answers": [{"question_id": "nope", "answer": "a"}]}, "answers.0.question_id"),
        ({}, "answers"),
    ]:
        response = await client.post(url, json=body, headers=w.student)
        assert response.status == 422, body
        assert field in [e["field"] for e in (await response.json())["errors"]], body
    current = await (await client.get(f"/api/v1/attempts/{attempt['id']}", headers=w.student)).json()
    assert current["status"] == "in_progress"


async def test_an_attempt_is_graded_once(client: Client, db: Database) -> None:
    w = await world(client, db)
    attempt = json.loads((await start(client, w))[1])
    url = f"/api/v1/attempts/{attempt['id']}"
    responses = await asyncio.gather(
        *[client.post(f"{url}/submit", json=answers(w, **ALL_RIGHT), headers=w.student) for _ in range(5)]
    )
    assert sorted(r.status for r in responses) == [200, 409, 409, 409, 409]
    assert (await client.put(f"{url}/answers", json=answers(w), headers=w.student)).status == 409


async def test_only_the_student_answers_and_others_do_not_see_the_attempt(client: Client, db: Database) -> None:
    w = await world(client, db)
    attempt = json.loads((await start(client, w))[1])
    classmate = await another_student(client, db, w)
    _, admin = await signed_in(client, db, role="admin")
    url = f"/api/v1/attempts/{attempt['id']}"
    assert (await client.get(url, headers=classmate)).status == 404
    assert (await client.post(f"{url}/submit", json=answers(w), headers=classmate)).status == 404
    assert (await client.get(url, headers=w.owner)).status == 200
    assert (await client.get(url, headers=admin)).status == 200
    assert (await client.post(f"{url}/submit", json=answers(w), headers=w.owner)).status == 403
    assert (await client.get(f"/api/v1/attempts/{uuid.uuid4()}", headers=w.student)).status == 404


# -- limits ----------------------------------------------------------------------


async def test_max_attempts_is_enforced(client: Client, db: Database) -> None:
    w = await world(client, db, max_attempts=2)
    for number in (1, 2):
        status, raw = await start(client, w)
        attempt = json.loads(raw)
        assert (status, attempt["attempt_number"]) == (201, number)
        await client.post(f"/api/v1/attempts/{attempt['id']}/submit", json=answers(w), headers=w.student)
    status, raw = await start(client, w)
    assert status == 409
    assert json.loads(raw)["max_attempts"] == 2
    mine = await (await client.get(f"/api/v1/quizzes/{w.quiz['id']}/attempts/mine", headers=w.student)).json()
    assert mine["total"] == 2
    assert [a["attempt_number"] for a in mine["items"]] == [2, 1]
    assert all(a["status"] == "graded" for a in mine["items"])
    # Attempts are counted per student.
    assert (await start(client, w, await another_student(client, db, w)))[0] == 201


async def test_concurrent_starts_open_one_attempt(client: Client, db: Database) -> None:
    w = await world(client, db, max_attempts=1)
    results = await asyncio.gather(*[start(client, w) for _ in range(8)])
    assert sorted(status for status, _ in results) == [201] + [409] * 7
    async with db.connection() as conn:
        count = await conn.fetch_val("SELECT count(*) FROM quiz_attempts")
    assert count == 1


# -- deadlines -------------------------------------------------------------------


async def test_submitting_within_the_grace_is_accepted(client: Client, db: Database, clock: FakeClock) -> None:
    w = await world(client, db, time_limit_seconds=60)
    attempt = json.loads((await start(client, w))[1])
    clock.advance(60 + 5)  # deadline plus the default grace of 5 s: still in time
    response = await client.post(
        f"/api/v1/attempts/{attempt['id']}/submit", json=answers(w, **ALL_RIGHT), headers=w.student
    )
    graded = await response.json()
    assert response.status == 200, graded
    assert (graded["percentage"], graded["timed_out"], graded["time_taken_seconds"]) == (100, False, 65)


async def test_submitting_after_the_deadline_is_409_and_grades_what_was_saved(
    client: Client, db: Database, clock: FakeClock, events: list[DomainEvent]
) -> None:
    w = await world(client, db, time_limit_seconds=60)
    attempt = json.loads((await start(client, w))[1])
    url = f"/api/v1/attempts/{attempt['id']}"
    clock.advance(30)
    saved = await client.put(f"{url}/answers", json=answers(w, single_choice="b"), headers=w.student)
    assert saved.status == 200
    clock.advance(36)  # 66 s: past the deadline and the grace
    response = await client.post(f"{url}/submit", json=answers(w, **ALL_RIGHT), headers=w.student)
    assert response.status == 409
    problem = await response.json()
    assert problem["attempt_id"] == attempt["id"]
    assert problem["type"].endswith("/attempt-deadline-passed")

    graded = await (await client.get(url, headers=w.student)).json()
    assert graded["status"] == "graded"
    assert graded["timed_out"] is True
    assert graded["submitted_at"] is None
    assert graded["score"] == 1  # only what was saved in time
    assert graded["time_taken_seconds"] == 60
    assert [e.attempt_id for e in events if isinstance(e, QuizAttemptSubmitted)] == [uuid.UUID(attempt["id"])]
    # Saving late is refused the same way, now as "already graded".
    assert (await client.put(f"{url}/answers", json=answers(w), headers=w.student)).status == 409


async def test_a_timed_out_attempt_is_closed_when_the_next_starts(
    client: Client, db: Database, clock: FakeClock
) -> None:
    w = await world(client, db, time_limit_seconds=60, max_attempts=2)
    first = json.loads((await start(client, w))[1])
    clock.advance(600)
    status, raw = await start(client, w)
    assert status == 201, raw
    assert json.loads(raw)["attempt_number"] == 2
    closed = await (await client.get(f"/api/v1/attempts/{first['id']}", headers=w.student)).json()
    assert (closed["status"], closed["timed_out"], closed["score"]) == ("graded", True, 0)


async def test_the_closer_grades_abandoned_timed_attempts_once(client: Client, db: Database, clock: FakeClock) -> None:
    w = await world(client, db, time_limit_seconds=60)
    timed = json.loads((await start(client, w))[1])
    await client.put(
        f"/api/v1/attempts/{timed['id']}/answers", json=answers(w, short_answer="Ulan Bator"), headers=w.student
    )
    untimed_quiz = await make_quiz(db, course_id=w.course["id"])
    await make_question(db, quiz_id=untimed_quiz["id"])
    untimed = await (await client.post(f"/api/v1/quizzes/{untimed_quiz['id']}/attempts", headers=w.student)).json()

    assert await close_abandoned_attempts(db, clock.advance(60), grace_seconds=5) == []  # not yet
    closed = await close_abandoned_attempts(db, clock.advance(6), grace_seconds=5)
    assert [c.attempt_id for c in closed] == [uuid.UUID(timed["id"])]
    assert closed[0].percentage == Decimal("33.33") and closed[0].timed_out
    assert closed[0].student_email == w.student_row["email"]
    assert await close_abandoned_attempts(db, clock.advance(3600), grace_seconds=5) == []

    graded = await (await client.get(f"/api/v1/attempts/{timed['id']}", headers=w.student)).json()
    assert (graded["status"], graded["score"], graded["timed_out"]) == ("graded", 2, True)
    still_open = await (await client.get(f"/api/v1/attempts/{untimed['id']}", headers=w.student)).json()
    assert still_open["status"] == "in_progress"


async def test_the_closer_works_in_batches(client: Client, db: Database, clock: FakeClock) -> None:
    w = await world(client, db, time_limit_seconds=10)
    students = [w.student] + [await another_student(client, db, w) for _ in range(4)]
    for headers in students:
        assert (await start(client, w, headers))[0] == 201
    closed = await close_abandoned_attempts(db, clock.advance(100), batch_size=2)
    assert len(closed) == 5
    assert len({c.attempt_id for c in closed}) == 5
