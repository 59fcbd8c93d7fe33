"""`lms seed-demo` / `lms up --demo`: content to click through, known accounts, idempotent."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from lms.config import Settings
from lms.db import Database
from lms.demo import ACCOUNTS, PASSWORD, seed_demo
from lms.tables import live_sessions, metadata
from tests.builders import PRODUCTION_ENV, bearer, login
from tests.conftest import Instance, Servers
from tests.test_cli import run_lms
from tests.test_live_protocol import NS, call, connect, player


async def row_counts(db: Database) -> dict[str, int]:
    async with db.connection() as conn:
        return {t.name: int(await conn.fetch_val(select(func.count()).select_from(t))) for t in metadata.sorted_tables}


async def test_a_second_seed_adds_nothing(config: Settings, db: Database) -> None:
    first = await seed_demo(config)
    after_first = await row_counts(db)
    second = await seed_demo(config)
    assert first.added > 0 and second.added == 0
    assert await row_counts(db) == after_first
    assert (second.course_id, second.session_id, second.pin) == (first.course_id, first.session_id, first.pin)


async def test_two_seeds_at_once_make_one_set(config: Settings, db: Database) -> None:
    results = await asyncio.gather(seed_demo(config), seed_demo(config))
    assert sorted(r.added > 0 for r in results) == [False, True]
    counts = await row_counts(db)
    assert counts["users"] == len(ACCOUNTS) and counts["courses"] == 1 and counts["live_sessions"] == 1


async def test_the_demo_is_what_a_newcomer_needs(config: Settings, client: TestClient) -> None:  # type: ignore[type-arg]
    demo = await seed_demo(config)
    sessions = {a.role: await login(client, a.email, PASSWORD) for a in ACCOUNTS}
    assert {s["user"]["role"] for s in sessions.values()} == {"admin", "instructor", "student"}

    course = await (await client.get(f"/api/v1/courses/{demo.course_id}")).json()
    assert course["is_published"] and course.get("price") is None
    lessons = await (await client.get(f"/api/v1/courses/{demo.course_id}/lessons")).json()
    assert sorted(lesson["content_type"] for lesson in lessons) == ["document", "quiz", "text", "video"]

    teacher = bearer(sessions["instructor"]["access_token"])
    mine = await (await client.get("/api/v1/courses/mine", headers=teacher)).json()
    assert [c["id"] for c in mine["items"]] == [str(demo.course_id)]
    enrolled = await (await client.get(f"/api/v1/courses/{demo.course_id}/enrollments", headers=teacher)).json()
    progress = sorted(float(e["progress_percentage"]) for e in enrolled["items"])
    assert progress == [0.0, 25.0, 50.0]

    quiz = await (await client.get(f"/api/v1/quizzes/{demo.quiz_id}", headers=teacher)).json()
    assert quiz["is_published"]
    questions = await (await client.get(f"/api/v1/quizzes/{demo.quiz_id}/questions", headers=teacher)).json()
    types = sorted(q["question_type"] for q in questions["items"])
    assert types == ["multiple_choice", "short_answer", "single_choice", "true_false"]

    lobby = await (await client.get(f"/api/v1/live-sessions/{demo.pin}")).json()
    assert lobby == {"quiz_title": "LMS basics", "status": "lobby", "player_count": 0, "allow_guests": True}


async def test_guests_join_the_demo_lobby_and_the_instructor_hosts_it(
    config: Settings, instances: list[Instance], live: Any
) -> None:
    demo = await seed_demo(config)
    _guest, ack = await player(live, instances[1], demo.pin, "Visitor")
    assert ack["ok"]
    instructor = next(a for a in ACCOUNTS if a.role == "instructor")
    token = (await login(instances[0].http, instructor.email, PASSWORD))["access_token"]
    host = await connect(live, instances[0], token)
    hosting = await call(host, "host_session", {"session_id": str(demo.session_id)})
    assert hosting["ok"], hosting
    state = await host.next("session_state", NS)
    assert [p["nickname"] for p in state["players"]] == ["Visitor"]


async def test_an_ended_demo_session_is_replaced_by_a_new_lobby(config: Settings, db: Database) -> None:
    first = await seed_demo(config)
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).values(status="ended", ended_at=func.now()))
    again = await seed_demo(config)
    assert again.added == 1 and again.session_id != first.session_id


def test_seed_demo_command_prints_the_block_and_refuses_production(servers: Servers) -> None:
    result = run_lms(servers, "seed-demo")
    assert result.returncode == 0, result.stderr
    for text in ["admin@example.com", "instructor@example.com", PASSWORD, "Live quiz pin", "/play?pin=", "/host/"]:
        assert text in result.stdout
    again = run_lms(servers, "seed-demo")
    assert "nothing added" in again.stdout

    production = run_lms(
        servers, "seed-demo",
        env={"LMS_ENV": "production", **PRODUCTION_ENV},
    )  # fmt: skip
    assert production.returncode == 2 and "production refuses" in production.stderr
