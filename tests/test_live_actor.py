"""The session actor without Socket.IO: two runtimes (two "live_instances") on the real Redis and PostgreSQL.

Clients are the edge functions the ``/live`` namespace calls; every event the
owners publish is collected from the real Redis channel by each runtime's
``deliver``. Time is the session's frozen test clock where points or
deadlines are asserted, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import insert, select

from lms.auth.guards import Principal
from lms.config import Settings
from lms.db import Database
from lms.tables import live_answers, live_players, live_sessions
from realtime.live import edge
from realtime.live.actor import SessionActor
from realtime.live.errors import LiveError
from realtime.live.machine import Snapshot
from realtime.live.runtime import LiveRuntime
from tests.builders import make_question, make_quiz, make_quiz_course, make_user
from tests.conftest import Servers, make_config, redis_for
from tests.polling import eventually

T0 = 1_900_000_000_000


log = logging.getLogger("tests.live")


class Instance:
    """A runtime, the players connected to it, and what its deliver() heard on the channel.

    Players join through :meth:`join` and stay connected to this instance
    until they leave: its runtime keeps their presence fresh, as the ``/live``
    namespace does for its connections (``LiveNamespace.local_players``).
    Without that, presence (3 s in tests) ran out in a slow run and a
    question waited for players who seemed gone.
    """

    def __init__(self, config: Settings, db: Database, redis: aioredis.Redis, name: str) -> None:
        self.name = name
        self.redis = redis
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected: dict[str, set[str]] = {}
        self.rt = LiveRuntime(
            config=config, db=db, redis=redis, deliver=self.collect, local_players=self.local_players,
            instance_id=name,
        )  # fmt: skip

    async def collect(self, session_id: str, events: list[dict[str, Any]]) -> None:
        for event in events:
            log.debug("%s heard %s", self.name, event)
        self.events.extend((session_id, e) for e in events)

    async def local_players(self) -> dict[str, list[str]]:
        return {session_id: sorted(players) for session_id, players in self.connected.items() if players}

    async def join(self, who: Principal | None = None, **details: Any) -> edge.JoinResult:
        joined = await edge.join_session(self.rt, who, **details)
        self.connected.setdefault(joined.session_id, set()).add(joined.player_id)
        return joined

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e.get("event") == name]


async def two_instances(servers: Servers, config: Settings, db: Database) -> AsyncIterator[list[Instance]]:
    made = []
    for name in ("a", "b"):
        client = redis_for(servers)
        made.append(Instance(config, db, client, name))
    yield made
    for instance in made:
        await instance.rt.stop()
        await instance.redis.aclose()


@pytest.fixture
async def live_instances(servers: Servers, config: Settings, db: Database) -> AsyncIterator[list[Instance]]:
    async for made in two_instances(servers, config, db):
        yield made


@pytest.fixture
async def brief_presence(servers: Servers, db: Database) -> AsyncIterator[list[Instance]]:
    """Instances whose players' presence (1 s) runs out well before a takeover (up to 1.75 s) is done."""
    async for made in two_instances(servers, make_config(servers, live={"presence_ttl_seconds": 1}), db):
        yield made


@pytest.fixture(autouse=True)
def live_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A failing test shows the runtimes' and actors' log (ownership, takeovers) and every event each heard."""
    caplog.set_level(logging.INFO, logger="realtime.live")
    caplog.set_level(logging.DEBUG, logger="tests.live")


async def watch(instances: list[Instance], game: dict[str, Any]) -> None:
    """Each instance hears the session's channel, as it does while a member of the session is connected to it."""
    for instance in instances:
        await instance.rt.watch(str(game["id"]))


def principal(user: dict[str, Any]) -> Principal:
    return Principal(
        id=user["id"], role=user["role"], email=user["email"], full_name=user["full_name"], jti="t", expires_at=0
    )


async def live_game(db: Database, *, questions: int = 3, allow_guests: bool = True, limit: int = 20) -> dict[str, Any]:
    teacher = await make_user(db, role="instructor")
    course = await make_quiz_course(db, instructor_id=teacher["id"])
    quiz = await make_quiz(db, course_id=course["id"], title="Geography")
    kinds = ["single_choice", "multiple_choice", "true_false", "short_answer"]
    for n in range(questions):
        await make_question(db, quiz_id=quiz["id"], question_type=kinds[n % len(kinds)], points=1)
    async with db.transaction() as conn:
        session = await conn.fetch_one(
            insert(live_sessions)
            .values(
                quiz_id=quiz["id"], host_id=teacher["id"], pin=f"{uuid.uuid4().int % 1_000_000:06d}",
                allow_guests=allow_guests, question_time_limit_seconds=limit, total_questions=questions,
            )
            .returning(live_sessions)
        )  # fmt: skip
    assert session is not None
    return {"teacher": teacher, "quiz": quiz, "session": session, "id": str(session["id"]), "pin": session["pin"]}


async def freeze(redis: aioredis.Redis, runtime: LiveRuntime, session_id: str, ms: int) -> None:
    await redis.set(runtime.store.keys(session_id).clock, ms)


async def command(inst: Instance, game: dict[str, Any], name: str, **args: Any) -> dict[str, Any]:
    return await inst.rt.command(game["id"], name, args, by=str(game["teacher"]["id"]))


async def test_a_full_game_across_two_instances(live_instances: list[Instance], db: Database, redis: Any) -> None:
    a, b = live_instances
    await a.rt.start()
    await b.rt.start()
    game = await live_game(db, questions=3)
    await watch(live_instances, game)
    await freeze(redis, a.rt, game["id"], T0)
    host = await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    assert host["state"] == "lobby" and host["players"] == [] and host["total_questions"] == 3
    assert game["id"] in a.rt.actors  # the first host's instance owns it
    student = await make_user(db, role="student", full_name="Sam Student")
    alice = await a.join(None, pin=game["pin"], nickname="  Alice ", player_token=None)
    bob = await b.join(None, pin=game["pin"], nickname="Bob", player_token=None)
    sam = await b.join(principal(student), pin=game["pin"], nickname=None, player_token=None)
    assert (alice.nickname, sam.nickname) == ("Alice", "Sam Student")
    assert alice.session["state"] == "lobby" and alice.session["me"]["score"] == 0
    await eventually(lambda: len(a.named("player_joined")) == 3)
    await eventually(lambda: any(e["data"]["count"] == 3 for e in a.named("player_count")))

    assert await command(b, game, "start_session") == {"ok": True, "state": "question"}
    started = await eventually(lambda: a.named("question_started"))
    q0 = started[0]["data"]
    assert (q0["index"], q0["total"], q0["question_type"], q0["started_at"]) == (0, 3, "single_choice", T0)
    assert q0["deadline"] == T0 + 20_000 and q0["time_limit_ms"] == 20_000
    assert "correct_answer" not in str(started) and "correct" not in q0

    # Question 0 (single choice, "b" is correct): Alice at once, Bob after 10 s, Sam wrong.
    assert await edge.submit_answer(a.rt, game["id"], alice.player_id, 0, "b") == T0
    await freeze(redis, a.rt, game["id"], T0 + 10_000)
    await edge.submit_answer(b.rt, game["id"], bob.player_id, 0, "b")
    with pytest.raises(LiveError) as twice:
        await edge.submit_answer(b.rt, game["id"], bob.player_id, 0, "a")
    assert twice.value.code == "already_answered"
    await edge.submit_answer(b.rt, game["id"], sam.player_id, 0, "a")
    # Everyone connected answered: the question ends at once, well before its deadline.
    ended = await eventually(lambda: a.named("question_ended"))
    assert ended[0]["data"] == {"index": 0, "correct_answer": "b", "distribution": {"a": 1, "b": 2, "c": 0}}
    results = await eventually(lambda: [e for e in a.events if e[1].get("event") == "answer_result"])
    by_player = results[0][1]["data"]
    assert by_player[alice.player_id] == {
        "index": 0, "correct": True, "points": 1000, "total_score": 1000, "rank": 1, "streak": 1,
    }  # fmt: skip
    assert by_player[bob.player_id] | {} == {
        "index": 0, "correct": True, "points": 750, "total_score": 750, "rank": 2, "streak": 1,
    }  # fmt: skip
    assert by_player[sam.player_id]["points"] == 0 and by_player[sam.player_id]["rank"] == 3

    assert await command(a, game, "next") == {"ok": True, "state": "leaderboard"}
    board = (await eventually(lambda: a.named("leaderboard")))[0]["data"]
    assert [(p["nickname"], p["score"], p["rank"]) for p in board["top"]] == [
        ("Alice", 1000, 1), ("Bob", 750, 2), ("Sam Student", 0, 3),
    ]  # fmt: skip
    assert board["total_players"] == 3

    # Question 1 (multiple choice a+b+d): only Sam is right; the deadline ends it (Bob never answers).
    await freeze(redis, a.rt, game["id"], T0 + 60_000)
    assert await command(b, game, "next") == {"ok": True, "state": "question"}
    await eventually(lambda: len(a.named("question_started")) == 2)
    await edge.submit_answer(a.rt, game["id"], alice.player_id, 1, ["a", "b"])
    await freeze(redis, a.rt, game["id"], T0 + 60_000 + 20_000)
    await edge.submit_answer(b.rt, game["id"], sam.player_id, 1, ["d", "b", "a"])
    await freeze(redis, a.rt, game["id"], T0 + 60_000 + 20_000 + 251)
    second = (await eventually(lambda: len(a.named("question_ended")) == 2 and a.named("question_ended")))[1]["data"]
    assert second["correct_answer"] == ["a", "b", "d"]
    scored = [e for _, e in a.events if e.get("event") == "answer_result"][1]["data"]
    assert scored[sam.player_id]["points"] == 500 and scored[sam.player_id]["total_score"] == 500
    assert scored[bob.player_id] == {
        "index": 1, "correct": False, "points": 0, "total_score": 750, "rank": 2, "streak": 0,
    }  # fmt: skip

    # Question 2 (true/false) then the end: results are in PostgreSQL before session_ended goes out.
    await command(a, game, "next")
    await freeze(redis, a.rt, game["id"], T0 + 120_000)
    await command(a, game, "next")
    await edge.submit_answer(a.rt, game["id"], alice.player_id, 2, "true")
    await edge.submit_answer(a.rt, game["id"], bob.player_id, 2, "true")
    await edge.submit_answer(a.rt, game["id"], sam.player_id, 2, "false")
    await eventually(lambda: len(a.named("question_ended")) == 3)
    assert await command(a, game, "next") == {"ok": True, "state": "leaderboard"}
    assert await command(a, game, "next") == {"ok": True, "state": "ended"}
    final = (await eventually(lambda: a.named("session_ended")))[0]["data"]
    assert [p["nickname"] for p in final["top"]] == ["Alice", "Bob", "Sam Student"]
    assert final["results_url"].endswith(f"/api/v1/live-sessions/{game['id']}/results")
    finals = next(e for _, e in a.events if e.get("event") == "final_result")["data"]
    assert finals[alice.player_id] == {"rank": 1, "score": 2000}
    assert a.events == b.events  # every instance heard the same story, in the same order
    async with db.connection() as conn:
        session = await conn.fetch_one(select(live_sessions).where(live_sessions.c.id == game["session"]["id"]))
        players = await conn.fetch_all(select(live_players).where(live_players.c.session_id == game["id"]))
        answers = await conn.fetch_all(select(live_answers).where(live_answers.c.session_id == game["id"]))
    assert session is not None and session["status"] == "ended" and session["started_at"] is not None
    assert [q["distribution"] for q in session["results"]["questions"]][2] == {"true": 2, "false": 1}
    assert {p["nickname"]: (p["score"], p["rank"]) for p in players} == {
        "Alice": (2000, 1), "Bob": (1750, 2), "Sam Student": (500, 3),
    }  # fmt: skip
    assert {p["nickname"]: p["user_id"] for p in players}["Sam Student"] == student["id"]
    assert len(answers) == 8
    with pytest.raises(LiveError) as late:
        await a.join(None, pin=game["pin"], nickname="Late", player_token=None)
    assert late.value.code == "session_ended"
    await eventually(lambda: game["id"] not in a.rt.actors)


async def test_the_deadline_boundary_is_exact(live_instances: list[Instance], db: Database, redis: Any) -> None:
    a, _ = live_instances
    await a.rt.start()
    game = await live_game(db, questions=1)
    await watch(live_instances, game)
    await freeze(redis, a.rt, game["id"], T0)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    players = [
        await a.join(None, pin=game["pin"], nickname=f"P{n}", player_token=None) for n in range(3)
    ]
    await command(a, game, "start_session")
    await freeze(redis, a.rt, game["id"], T0 + 20_000 + 250)  # deadline + grace: still on time
    await edge.submit_answer(a.rt, game["id"], players[0].player_id, 0, "b")
    await freeze(redis, a.rt, game["id"], T0 + 20_000 + 251)
    with pytest.raises(LiveError) as late:
        await edge.submit_answer(a.rt, game["id"], players[1].player_id, 0, "b")
    assert late.value.code == "too_late"
    results = (await eventually(lambda: [e for _, e in a.events if e.get("event") == "answer_result"]))[0]["data"]
    assert results[players[0].player_id]["points"] == 500
    assert results[players[1].player_id]["points"] == 0


async def test_the_owner_dies_and_another_instance_resumes_the_question(
    live_instances: list[Instance], db: Database, redis: Any
) -> None:
    a, b = live_instances
    await a.rt.start()
    game = await live_game(db, questions=2)
    await watch(live_instances, game)
    await freeze(redis, a.rt, game["id"], T0)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    assert game["id"] in a.rt.actors  # a owns it; b starts after, so its supervisor cannot claim it first
    await b.rt.start()
    players = [await b.join(None, pin=game["pin"], nickname=f"P{n}", player_token=None) for n in range(4)]
    await command(a, game, "start_session")
    for p in players[:2]:
        await edge.submit_answer(b.rt, game["id"], p.player_id, 0, "b")
    await a.rt.crash()  # like SIGKILL: the lease is left to expire
    crashed = len(b.events)
    await edge.submit_answer(b.rt, game["id"], players[2].player_id, 0, "a")  # accepted with no owner at all
    await eventually(lambda: game["id"] in b.rt.actors, what="b taking the session over")
    state = await eventually(
        lambda: [e for _, e in b.events[crashed:] if e.get("op") == "state"], what="the state b publishes on takeover"
    )
    assert state[0]["common"]["state"] == "question"
    # Counted once, by the instance that took it over, whichever way it claimed it (its supervisor or a join).
    assert (a.rt.takeovers, b.rt.takeovers) == (0, 1)
    assert state[0]["me"][players[0].player_id]["answered_current"] is True
    assert state[0]["me"][players[3].player_id]["answered_current"] is False
    await edge.submit_answer(b.rt, game["id"], players[3].player_id, 0, "b")
    # Everyone connected (to b, which keeps their presence) answered: the question ends at once.
    ended = await eventually(lambda: b.named("question_ended"), what="question 0 ending on b")
    assert ended[0]["data"]["distribution"] == {"a": 1, "b": 3, "c": 0}
    assert await command(b, game, "end_session") == {"ok": True, "state": "ended"}
    async with db.connection() as conn:
        answers = await conn.fetch_all(select(live_answers).where(live_answers.c.session_id == game["id"]))
    assert len(answers) == 4


async def test_players_connected_elsewhere_stay_present_through_a_slow_takeover(
    brief_presence: list[Instance], db: Database, redis: Any
) -> None:
    """The cause of this file's old flake: presence ran out during the takeover, and the question waited on."""
    await test_the_owner_dies_and_another_instance_resumes_the_question(brief_presence, db, redis)


@pytest.fixture
async def idle_supervisors(servers: Servers, db: Database) -> AsyncIterator[list[Instance]]:
    """Instances whose supervisors look for orphans once, when they start: then only a join claims one."""
    async for made in two_instances(servers, make_config(servers, live={"supervisor_interval_ms": 600_000}), db):
        yield made


async def test_a_join_that_finds_the_owner_gone_takes_the_session_over(
    idle_supervisors: list[Instance], db: Database, redis: Any
) -> None:
    a, b = idle_supervisors
    await a.rt.start()
    game = await live_game(db)
    await watch(idle_supervisors, game)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    await b.rt.start()
    player = await b.join(None, pin=game["pin"], nickname="P0", player_token=None)
    assert (a.rt.takeovers, b.rt.takeovers) == (0, 0)  # hosting a new session claims it: no takeover
    await a.rt.crash()
    lease = b.rt.store.keys(str(game["id"])).lease

    async def expired() -> bool:
        return await redis.exists(lease) == 0

    await eventually(expired, what="the dead owner's lease expiring")
    assert str(game["id"]) not in b.rt.actors
    back = await b.join(None, pin=game["pin"], nickname=None, player_token=player.player_token)
    assert back.player_id == player.player_id
    assert str(game["id"]) in b.rt.actors
    assert (a.rt.takeovers, b.rt.takeovers) == (0, 1)


async def test_supervisors_leave_the_sessions_their_owners_mark_alone(
    live_instances: list[Instance], db: Database, redis: Any
) -> None:
    """A supervisor tries the lease of a session only once its owner stopped marking it."""
    if not hasattr(redis, "monitor"):
        pytest.skip("MONITOR is per node on a Redis Cluster; the supervisor's rule does not depend on the topology")
    a, b = live_instances
    await a.rt.start()
    await b.rt.start()
    theirs, mine = await live_game(db), await live_game(db)
    await edge.host_session(a.rt, principal(theirs["teacher"]), theirs["id"])
    await edge.host_session(b.rt, principal(mine["teacher"]), mine["id"])
    active = b.rt.store.active_key

    async def marked(session: dict[str, Any]) -> float:
        return float(await redis.zscore(active, str(session["id"])) or 0)

    await eventually(lambda: marked(theirs), what="the owner marking its new session")
    lease = b.rt.store.keys(str(theirs["id"])).lease
    commands: list[str] = []

    async def record() -> None:
        async with redis.monitor() as monitor:
            async for command in monitor.listen():
                commands.append(command["command"])

    recording = asyncio.create_task(record())
    try:
        await eventually(lambda: commands, what="MONITOR recording")
        # b's supervisor has gone round three times: it marked its own session three more times.
        seen = {await marked(mine)}

        async def rounds() -> bool:
            seen.add(await marked(mine))
            return len(seen) >= 4

        await eventually(rounds, what="three rounds of b's supervisor")
    finally:
        recording.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recording
    assert not [c for c in commands if c.startswith("SET ") and lease in c], "a supervisor tried a live owner's lease"
    assert [c for c in commands if c.startswith("ZRANGEBYSCORE ")], "no supervisor round was recorded"


async def test_host_authority_comes_from_the_account(live_instances: list[Instance], db: Database) -> None:
    a, _ = live_instances
    await a.rt.start()
    game = await live_game(db)
    await watch(live_instances, game)
    other = await make_user(db, role="instructor")
    student = await make_user(db, role="student")
    admin = await make_user(db, role="admin")
    for who, code in ((other, "forbidden"), (student, "forbidden"), (None, "unauthorized")):
        with pytest.raises(LiveError) as refused:
            await edge.host_session(a.rt, principal(who) if who else None, game["id"])
        assert refused.value.code == code
    with pytest.raises(LiveError) as missing:
        await edge.host_session(a.rt, principal(admin), str(uuid.uuid4()))
    assert missing.value.code == "not_found"
    assert (await edge.host_session(a.rt, principal(admin), game["id"]))["state"] == "lobby"


async def test_join_rules(live_instances: list[Instance], db: Database) -> None:
    a, _ = live_instances
    await a.rt.start()
    game = await live_game(db, allow_guests=False)
    await watch(live_instances, game)
    student = await make_user(db, role="student", full_name="Stu")
    teacher = game["teacher"]

    async def code(who: Any = None, **kw: Any) -> str:
        kw = {"pin": game["pin"], "nickname": "Nick", "player_token": None} | kw
        with pytest.raises(LiveError) as err:
            await a.join(principal(who) if who else None, **kw)
        return err.value.code

    assert await code() == "guests_not_allowed"
    assert await code(teacher) == "guests_not_allowed"  # hosts are not players
    assert await code(student, pin="999999") in ("not_found",)
    assert await code(student, pin="12") == "not_found"
    assert await code(student, nickname="  ") == "invalid_payload"
    assert await code(student, nickname="x" * 25) == "invalid_payload"
    assert await code(student, nickname="The Admin!") == "nickname_not_allowed"
    joined = await a.join(principal(student), pin=game["pin"], nickname="x" * 24, player_token=None)
    again = await a.join(principal(student), pin=game["pin"], nickname="Other", player_token=None)
    assert again.player_id == joined.player_id and again.nickname == "x" * 24
    assert again.player_token != joined.player_token  # a new device gets its own token
    other = await make_user(db, role="student")
    assert await code(other, nickname="X" * 24) == "nickname_taken"


async def test_kick_lock_and_resume(live_instances: list[Instance], db: Database, redis: Any) -> None:
    a, b = live_instances
    await a.rt.start()
    await b.rt.start()
    game = await live_game(db)
    await watch(live_instances, game)
    await freeze(redis, a.rt, game["id"], T0)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    mallory = await b.join(None, pin=game["pin"], nickname="Mallory", player_token=None)
    alice = await b.join(None, pin=game["pin"], nickname="Alice", player_token=None)
    assert await command(b, game, "lock_session") == {"ok": True, "state": "lobby"}
    with pytest.raises(LiveError) as locked:
        await a.join(None, pin=game["pin"], nickname="Carol", player_token=None)
    assert locked.value.code == "session_locked"
    back = await a.join(None, pin=game["pin"], nickname=None, player_token=alice.player_token)
    assert back.player_id == alice.player_id and back.player_token == alice.player_token
    await command(a, game, "unlock_session")
    await a.join(None, pin=game["pin"], nickname="Carol", player_token=None)

    banned = await command(a, game, "kick_player", player_id=mallory.player_id, ban=True)
    assert banned == {"ok": True, "state": "lobby"}
    kicked = await eventually(lambda: a.named("kicked"))
    assert kicked[0]["to"] == f"player:{mallory.player_id}"
    assert any(e.get("op") == "detach" and e["player_id"] == mallory.player_id for _, e in a.events)
    with pytest.raises(LiveError) as again:
        await a.join(None, pin=game["pin"], nickname=None, player_token=mallory.player_token)
    assert again.value.code == "kicked"
    missing = await command(a, game, "kick_player", player_id=str(uuid.uuid4()))
    assert missing["ok"] is False and missing["error"]["code"] == "not_found"
    assert (await command(a, game, "start_session"))["ok"] is True
    with pytest.raises(LiveError) as gone:
        await edge.submit_answer(a.rt, game["id"], mallory.player_id, 0, "b")
    assert gone.value.code == "not_joined"
    again_start = await command(a, game, "start_session")
    assert again_start["error"]["code"] == "already_started"
    host = await edge.snapshot(a.rt, game["id"], host=True)
    assert sorted(p["nickname"] for p in host["players"]) == ["Alice", "Carol"]
    assert "correct_answer" not in str(await edge.snapshot(a.rt, game["id"], player_id=alice.player_id))


async def test_late_joiners_play_the_open_question_and_results_are_stored_per_question(
    live_instances: list[Instance], db: Database, redis: Any
) -> None:
    a, b = live_instances
    await a.rt.start()
    await b.rt.start()
    game = await live_game(db, questions=2)
    await watch(live_instances, game)
    await freeze(redis, a.rt, game["id"], T0)
    await edge.host_session(a.rt, principal(game["teacher"]), game["id"])
    early = await a.join(None, pin=game["pin"], nickname="Early", player_token=None)
    await command(a, game, "start_session")
    await freeze(redis, a.rt, game["id"], T0 + 5_000)
    late = await b.join(None, pin=game["pin"], nickname="Late", player_token=None)
    assert late.session["state"] == "question" and late.session["question"]["index"] == 0
    assert late.session["me"]["answered_current"] is False
    await edge.submit_answer(b.rt, game["id"], late.player_id, 0, "b")
    await edge.submit_answer(a.rt, game["id"], early.player_id, 0, "a")
    results = (await eventually(lambda: [e for _, e in a.events if e.get("event") == "answer_result"]))[0]["data"]
    assert results[late.player_id]["points"] == 875 and results[late.player_id]["rank"] == 1

    async def stored() -> list[Any]:
        async with db.connection() as conn:
            return await conn.fetch_all(select(live_answers).where(live_answers.c.session_id == game["id"]))

    # Question 0's answers reach PostgreSQL when it ends, before the session does.
    async def both_stored() -> list[Any]:
        rows = await stored()
        return rows if len(rows) == 2 else []

    rows = await eventually(both_stored, what="question 0's two answers in PostgreSQL")
    assert sorted(r["points"] for r in rows) == [0, 875]
    async with db.connection() as conn:
        session = await conn.fetch_one(select(live_sessions).where(live_sessions.c.id == game["id"]))
    assert session is not None and session["status"] == "running"
    assert [q["index"] for q in session["results"]["questions"]] == [0]
    # Joining during the reveal: the next question is theirs.
    later = await a.join(None, pin=game["pin"], nickname="Later", player_token=None)
    assert later.session["state"] == "reveal"
    await command(a, game, "next")
    await command(a, game, "next")
    assert await edge.submit_answer(a.rt, game["id"], later.player_id, 1, ["a", "b", "d"])


async def test_a_due_timer_does_not_wait_for_redis_and_the_read_carries_over(live_instances: list[Instance]) -> None:
    """Redis ends a blocked read only on its own clock (every 100 ms at the default hz), so the actor keeps
    its timers itself: a step whose timer is due returns while the read is still blocked in Redis, and a
    later step takes that read's entries up, each once."""
    rt = live_instances[0].rt
    session_id = str(uuid.uuid4())
    actor = SessionActor(rt, session_id, lease_token="t")
    actor.snap = Snapshot(
        id=session_id, pin="000000", quiz_id=str(uuid.uuid4()), quiz_title="Q", allow_guests=True,
        time_limit_ms=20_000, total_questions=1,
    )  # fmt: skip
    assert await actor._next_mail(5) == []  # the timer came first: the 1 s read is still blocked in Redis
    pending = actor.mail
    assert pending is not None and not pending.done()
    entry = await rt.store.post(actor.keys, {"t": "notice"})
    mail = await actor._next_mail(5_000)
    assert [mid for mid, _ in mail] == [entry]
    assert actor.mail is None and pending.done()
