"""Live sessions in Redis: the answer and join scripts, the owner's tick and fenced writes, and scoring.

The scripts run on the real test Redis. Deadline boundaries use the session's
frozen test clock (``live.test_clock``), so they are exact to the millisecond.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest

from lms.config import Settings
from lms.live import scoring
from lms.quizzes import grading
from realtime.live.errors import LiveError
from realtime.live.store import LiveStore

DEADLINE = 1_800_000_000_000
GRACE = 250


@pytest.fixture
def store(redis: Any, config: Settings) -> LiveStore:
    return LiveStore(redis, config.live)


async def open_question(
    store: LiveStore, *, qtype: str = "single_choice", options: tuple[str, ...] = ("a", "b", "c"), **gate: Any
) -> Any:
    keys = store.keys(uuid.uuid4())
    fields = {
        "status": "question", "qi": 0, "deadline": DEADLINE, "qtype": qtype, "opts": list(options), "locked": 0,
    } | gate  # fmt: skip
    fields["opts"] = json.dumps(fields["opts"])
    await store.initialize(keys, fields, {"state": fields["status"], "question_index": fields["qi"]})
    await store.redis.set(keys.clock, DEADLINE - 5000)
    return keys


async def refused(coro: Any) -> str:
    with pytest.raises(LiveError) as err:
        await coro
    return err.value.code


async def test_an_answer_is_recorded_once_with_the_time_redis_accepted_it(store: LiveStore) -> None:
    keys = await open_question(store)
    accepted = await store.submit_answer(keys, "p1", 0, "b")
    assert accepted == DEADLINE - 5000
    assert await refused(store.submit_answer(keys, "p1", 0, "a")) == "already_answered"
    recorded = await store.answers(keys, 0)
    assert recorded["p1"].answer == "b" and recorded["p1"].accepted_at == accepted
    assert await store.redis.pttl(keys.answers(0)) > 0


async def test_the_deadline_plus_grace_is_the_last_accepted_millisecond(store: LiveStore) -> None:
    keys = await open_question(store)
    assert store.config.answer_grace_ms == GRACE
    await store.redis.set(keys.clock, DEADLINE + GRACE)
    assert await store.submit_answer(keys, "on-time", 0, "a") == DEADLINE + GRACE
    await store.redis.set(keys.clock, DEADLINE + GRACE + 1)
    assert await refused(store.submit_answer(keys, "late", 0, "a")) == "too_late"
    assert set(await store.answers(keys, 0)) == {"on-time"}


async def test_answers_to_another_question_or_outside_a_question_are_refused(store: LiveStore) -> None:
    keys = await open_question(store, qi=2)
    assert await refused(store.submit_answer(keys, "p", 1, "a")) == "wrong_question"
    assert await refused(store.submit_answer(keys, "p", 3, "a")) == "wrong_question"
    await store.redis.hset(keys.gate, "status", "reveal")
    assert await refused(store.submit_answer(keys, "p", 2, "a")) == "too_late"
    assert await refused(store.submit_answer(keys, "p", 3, "a")) == "wrong_question"
    for status in ("lobby", "ended"):
        await store.redis.hset(keys.gate, "status", status)
        assert await refused(store.submit_answer(keys, "p", 2, "a")) == "not_in_question"
    assert await refused(store.submit_answer(store.keys(uuid.uuid4()), "p", 0, "a")) == "not_in_question"


@pytest.mark.parametrize(
    ("qtype", "options", "good", "bad"),
    [
        ("single_choice", ("a", "b"), ["a", "b"], ["z", ["a"], 1, None, {"a": 1}, ""]),
        ("true_false", ("true", "false"), ["true", "false"], [True, "yes", ["true"]]),
        ("multiple_choice", ("a", "b", "c"), [["a"], ["c", "a"], ["a", "b", "c"]],
         [[], "a", ["a", "a"], ["a", "z"], [1], {"1": "a"}, None]),
        ("short_answer", (), ["Paris", " paris "], ["", ["Paris"], 3, None]),
    ],
)  # fmt: skip
async def test_answers_must_fit_the_question(
    store: LiveStore, qtype: str, options: tuple[str, ...], good: list[Any], bad: list[Any]
) -> None:
    keys = await open_question(store, qtype=qtype, options=options)
    for n, answer in enumerate(bad):
        assert await refused(store.submit_answer(keys, f"bad{n}", 0, answer)) == "invalid_answer", answer
    for n, answer in enumerate(good):
        await store.submit_answer(keys, f"good{n}", 0, answer)
    recorded = await store.answers(keys, 0)
    assert sorted(recorded) == [f"good{n}" for n in range(len(good))]
    assert [recorded[f"good{n}"].answer for n in range(len(good))] == good


async def test_a_turns_answers_are_one_redis_call_and_each_gets_its_own_result(store: LiveStore) -> None:
    quiz, poll = await open_question(store), await open_question(store, qtype="poll")
    await store.redis.sadd(poll.kicked, "kicked")

    async def turn(player: str) -> list[Any]:
        calls = [
            store.submit_answer(quiz, player, 0, "b"),
            store.submit_answer(quiz, player, 0, "a"),  # after the first, in the same call
            store.submit_answer(poll, player, 0, "x"),
            store.submit_answer(poll, "kicked", 0, "a"),
            store.submit_answer(poll, player, 0, "c"),
            store.submit_answer(quiz, player, 1, "a"),
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        return [r.code if isinstance(r, LiveError) else r for r in results]

    expected = [DEADLINE - 5000, "already_answered", "invalid_answer", "not_joined", DEADLINE - 5000, "wrong_question"]
    before = (await store.redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert await turn("p1") == expected
    assert (await store.redis.info("commandstats"))["cmdstat_evalsha"]["calls"] == before + 1
    assert {k: v.answer for k, v in (await store.answers(poll, 0)).items()} == {"p1": "c"}
    assert await store.redis.hgetall(poll.base + "tallies:0") == {b"c": b"1"}
    await store.redis.script_flush()  # as after a Redis restart: the script is loaded again
    assert await turn("p2") == expected


async def test_a_kicked_player_cannot_answer(store: LiveStore) -> None:
    keys = await open_question(store)
    await store.redis.sadd(keys.kicked, "p")
    assert await refused(store.submit_answer(keys, "p", 0, "a")) == "not_joined"


async def join(store: LiveStore, keys: Any, nickname: str, **kw: Any) -> Any:
    kw.setdefault("presented_token", None)
    kw.setdefault("new_token", uuid.uuid4().hex)
    kw.setdefault("user_id", None)
    kw.setdefault("new_player_id", str(uuid.uuid4()))
    return await store.join(
        keys, nickname=nickname, player={"nickname": nickname}, presence_expiry_ms=DEADLINE * 2, **kw
    )


async def test_players_join_and_come_back_with_their_token_or_account(store: LiveStore) -> None:
    keys = await open_question(store, status="lobby")
    alice = await join(store, keys, "Alice", new_token="alice-token")
    assert not alice.resumed
    assert await refused(join(store, keys, "ALICE")) == "nickname_taken"
    again = await join(store, keys, "ignored", presented_token="alice-token")
    assert (again.player_id, again.resumed, again.how) == (alice.player_id, True, "token")
    assert again.player == {"nickname": "Alice"}
    user = str(uuid.uuid4())
    bob = await join(store, keys, "Bob", user_id=user)
    second_device = await join(store, keys, "Bobby", user_id=user, new_token="bob-2")
    assert (second_device.player_id, second_device.how) == (bob.player_id, "user")
    by_new_token = await join(store, keys, "x", presented_token="bob-2")
    assert by_new_token.player_id == bob.player_id
    unknown_token = await join(store, keys, "Carol", presented_token="nonsense")
    assert not unknown_token.resumed
    mailbox = await store.read_mailbox(keys, "0", block_ms=None)
    assert [m["t"] for _, m in mailbox] == ["joined", "rejoined", "joined", "rejoined", "rejoined", "joined"]
    assert await store.redis.zcard(keys.online) == 3


async def test_locked_full_ended_and_unknown_sessions_refuse_new_players(store: LiveStore) -> None:
    keys = await open_question(store, status="lobby")
    await join(store, keys, "Alice", new_token="t")
    await store.redis.hset(keys.gate, "locked", 1)
    assert await refused(join(store, keys, "Bob")) == "session_locked"
    assert (await join(store, keys, "", presented_token="t")).resumed  # coming back is not joining
    await store.redis.hset(keys.gate, "locked", 0)
    small = LiveStore(store.redis, store.config.model_copy(update={"max_players": 2}))
    await join(small, keys, "Bob")
    assert await refused(join(small, keys, "Carol")) == "session_full"
    await store.redis.hset(keys.gate, "status", "ended")
    assert await refused(join(store, keys, "Dave")) == "session_ended"
    assert await refused(join(store, store.keys(uuid.uuid4()), "Eve")) == "not_found"


async def test_a_kicked_player_joins_anew_and_a_banned_one_cannot_come_back(store: LiveStore) -> None:
    keys = await open_question(store, status="lobby")
    user = str(uuid.uuid4())
    player = await join(store, keys, "Mallory", new_token="m", user_id=user)
    await store.redis.sadd(keys.kicked, player.player_id)
    # Kicked: its token and its account no longer resume it; they join as a new player.
    assert await refused(join(store, keys, "", presented_token="m", resume_only=True)) == "nickname_required"
    again = await join(store, keys, "Mallory2", presented_token="m", new_token="m2", user_id=user)
    assert not again.resumed and again.player_id != player.player_id
    # Banned: refused by token and by account, whatever the nickname.
    await store.redis.sadd(keys.kicked, again.player_id)
    await store.redis.sadd(keys.banned, again.player_id)
    assert await refused(join(store, keys, "x", presented_token="m2")) == "kicked"
    assert await refused(join(store, keys, "Mallory3", user_id=user)) == "kicked"


async def test_names_assigned_by_the_host_refuse_a_chosen_nickname(store: LiveStore) -> None:
    keys = await open_question(store, status="lobby")
    await store.redis.hset(keys.gate, "names", "assigned")
    assert await refused(join(store, keys, "Chosen")) == "names_assigned"
    assert not (await join(store, keys, "BraveOtter", generated=True)).resumed


async def test_the_tick_sees_when_every_connected_player_answered(store: LiveStore) -> None:
    keys = await open_question(store)
    now = DEADLINE - 5000
    assert (await store.tick(keys, 0)).everyone_answered is False  # nobody connected: no early end
    real = int(time.time() * 1000)  # presence expiries are real time, even with a frozen clock
    await store.redis.zadd(keys.online, {"p1": real + 60_000, "p2": real + 60_000, "gone": real - 1})
    await store.submit_answer(keys, "p1", 0, "a")
    tick = await store.tick(keys, 0)
    assert (tick.now, tick.answered, tick.connected, tick.everyone_answered) == (now, 1, 2, False)
    await store.submit_answer(keys, "gone", 0, "a")
    assert (await store.tick(keys, 0)).everyone_answered is False  # two answers, but not p2's
    await store.submit_answer(keys, "p2", 0, "b")
    assert (await store.tick(keys, 0)).everyone_answered is True


async def test_owner_writes_are_fenced_by_the_lease(store: LiveStore) -> None:
    keys = store.keys(uuid.uuid4())
    assert await store.acquire(keys, "owner-a")
    assert not await store.acquire(keys, "owner-b")
    assert await store.fenced(keys, "owner-a", [["HSET", keys.gate, "status", "reveal"], ["SET", keys.snap, "{}"]])
    assert await store.redis.hget(keys.gate, "status") == b"reveal"
    assert not await store.fenced(keys, "owner-b", [["HSET", keys.gate, "status", "ended"]])
    assert await store.redis.hget(keys.gate, "status") == b"reveal"
    assert await store.renew(keys, "owner-a")
    assert not await store.renew(keys, "owner-b")
    assert not await store.release(keys, "owner-b")
    assert await store.release(keys, "owner-a")
    assert await store.acquire(keys, "owner-b")
    assert not await store.fenced(keys, "owner-a", [["HSET", keys.gate, "status", "ended"]])


# -- scoring ---------------------------------------------------------------


def test_points_fall_from_full_to_half_over_the_time_limit() -> None:
    def points(elapsed: int, correct: bool = True, value: Any = 1) -> int:
        return scoring.points_for(value, correct=correct, elapsed_ms=elapsed, time_limit_ms=20_000)

    assert points(0) == 1000
    assert points(10_000) == 750
    assert points(20_000) == 500
    assert points(20_250) == 500  # inside the grace: still half
    assert points(1) == 1000  # 999.975 rounds up
    assert points(2) == 1000  # 999.95: halves round up
    assert points(3) == 1000  # 999.925
    assert points(30) == 999  # 999.25
    assert points(5000, value=Decimal("2.5")) == 2188  # 2187.5 rounds up
    assert points(0, correct=False) == 0


def test_equal_scores_share_a_rank() -> None:
    assert scoring.ranks({"a": 10, "b": 30, "c": 10, "d": 0, "e": 30}) == {"a": 3, "b": 1, "c": 3, "d": 5, "e": 1}
    assert scoring.ranks({}) == {}


def test_correctness_per_question_type() -> None:
    assert grading.is_correct("single_choice", "b", "b")
    assert not grading.is_correct("single_choice", "b", "a")
    assert grading.is_correct("true_false", True, "true")
    assert grading.is_correct("true_false", False, "false")
    assert not grading.is_correct("true_false", True, "false")
    assert grading.is_correct("multiple_choice", ["a", "b", "d"], ["d", "a", "b"])
    assert not grading.is_correct("multiple_choice", ["a", "b", "d"], ["a", "b"])
    assert not grading.is_correct("multiple_choice", ["a", "b", "d"], ["a", "b", "c", "d"])
    assert grading.is_correct("short_answer", ["Ulan Bator", "Ulaanbaatar"], "  ulan   BATOR ")
    assert grading.is_correct("short_answer", "Paris", "PARIS")
    assert not grading.is_correct("short_answer", ["Paris"], "")
    assert not grading.is_correct("single_choice", "b", None)


def test_the_revealed_answer_and_distribution_use_option_ids() -> None:
    assert scoring.revealed_answer("true_false", True) == "true"
    assert scoring.revealed_answer("multiple_choice", ["d", "a"]) == ["a", "d"]
    assert scoring.revealed_answer("short_answer", "Paris") == ["Paris"]
    options = scoring.public_options("true_false", [])
    assert [o["id"] for o in options] == ["true", "false"]
    assert scoring.distribution("true_false", options, ["true", "true", "false"]) == {"true": 2, "false": 1}
    multi = [{"id": i, "text": i} for i in "abc"]
    assert scoring.distribution("multiple_choice", multi, [["a", "b"], ["a"]]) == {"a": 2, "b": 1, "c": 0}
    assert scoring.distribution("short_answer", [], ["Paris", "paris ", "Lyon"]) == {"paris": 2, "lyon": 1}
    assert scoring.public_options("short_answer", [{"id": "x", "text": "y"}]) == []
