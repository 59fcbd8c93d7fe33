"""Abandoned live sessions are ended and stored by the scheduled task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from jobs.tasks import all_specs
from lms.config import Settings
from lms.db import Database
from lms.tables import live_answers, live_players, live_sessions
from realtime.live import edge
from realtime.live.abandoned import end_abandoned_sessions
from tests.polling import eventually
from tests.test_live_actor import T0, Instance, command, freeze, live_game, live_instances, live_logs, principal

__all__ = ["live_instances", "live_logs"]  # fixtures, used by name

HOURS = 3 * 3600 * 1000


async def age(db: Database, session_id: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            update(live_sessions)
            .where(live_sessions.c.id == session_id)
            .values(
                created_at=live_sessions.c.created_at - timedelta(milliseconds=HOURS),
                started_at=live_sessions.c.started_at - timedelta(milliseconds=HOURS),
            )
        )


async def test_a_session_whose_owner_died_is_ended_with_what_redis_recorded(
    live_instances: list[Instance], db: Database, redis: Any, config: Settings
) -> None:
    a, _ = live_instances
    await a.rt.start()
    game = await live_game(db, questions=2)
    await freeze(redis, a.rt, game["id"], T0)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    alice = await a.join(None, pin=game["pin"], nickname="Alice", player_token=None)
    await a.join(None, pin=game["pin"], nickname="Bob", player_token=None)
    await command(a, game, "start_session")
    await edge.submit_answer(a.rt, game["id"], alice.player_id, 0, "b")
    await a.rt.crash()
    keys = a.rt.store.keys(game["id"])
    await until_lease_gone(redis, keys.lease)
    await age(db, game["id"])
    # Nobody took it over; its snapshot is quiet for hours (by the session clock).
    assert await end_abandoned_sessions(config=config, db=db, redis=redis) == []  # still recent
    await freeze(redis, a.rt, game["id"], T0 + HOURS)
    assert await end_abandoned_sessions(config=config, db=db, redis=redis) == [game["id"]]
    async with db.connection() as conn:
        session = await conn.fetch_one(select(live_sessions).where(live_sessions.c.id == game["id"]))
        players = await conn.fetch_all(select(live_players).where(live_players.c.session_id == game["id"]))
        answers = await conn.fetch_all(select(live_answers).where(live_answers.c.session_id == game["id"]))
    assert session is not None and session["status"] == "ended"
    assert session["results"]["ended_reason"] == "abandoned"
    assert {p["nickname"]: p["score"] for p in players} == {"Alice": 1000, "Bob": 0}
    assert [(a["answer"], a["points"]) for a in answers] == [("b", 1000)]
    assert await end_abandoned_sessions(config=config, db=db, redis=redis) == []


async def until_lease_gone(redis: Any, key: str) -> None:
    holder = None

    async def gone() -> bool:
        nonlocal holder
        holder = await redis.get(key)
        return holder is None

    try:
        await eventually(gone, what="the crashed owner's lease expiring")
    except AssertionError as err:
        raise AssertionError(f"{err}: held by {holder!r}, {await redis.pttl(key)} ms left") from None


async def test_owned_and_recent_sessions_are_left_alone_and_lost_ones_are_closed(
    live_instances: list[Instance], db: Database, redis: Any, config: Settings
) -> None:
    a, _ = live_instances
    await a.rt.start()
    owned = await live_game(db)
    await edge.host_session(a.rt, principal(owned["teacher"]), owned["id"])
    gone = await live_game(db)  # "running" in PostgreSQL, nothing in Redis (expired)
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == gone["id"]).values(status="running"))
    fresh = await live_game(db)
    for game in (owned, gone):
        await age(db, game["id"])
    assert await end_abandoned_sessions(config=config, db=db, redis=redis) == [gone["id"]]
    async with db.connection() as conn:
        rows = await conn.fetch_all(select(live_sessions.c.id, live_sessions.c.status))
    assert {str(r["id"]): r["status"] for r in rows} == {
        owned["id"]: "lobby", gone["id"]: "ended", fresh["id"]: "lobby",
    }  # fmt: skip


def test_the_task_is_registered_with_its_schedule(config: Settings) -> None:
    spec = all_specs()["end_abandoned_live_sessions"]
    assert spec.schedule == "abandoned_live_sessions_cron"
    assert getattr(config.jobs, spec.schedule) == "*/10 * * * *"
