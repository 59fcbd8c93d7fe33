"""Moderation and joining on ``/live`` with real Socket.IO clients against two instances.

Assigned nicknames, the profanity check at join, kick (may rejoin) versus
ban (may not: token, account, connection), bans across a takeover, the
lock on a running game, late joiners, and the answer-buttons player view.
"""

from __future__ import annotations

import asyncio
import re
import signal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lms.config import Settings
from lms.db import Database
from lms.live.keys import session_keys
from realtime.live.namespace import KickPlayer, SetSessionOptions
from realtime.live.setup import LIVE
from tests.builders import make_user
from tests.conftest import Instance
from tests.polling import eventually
from tests.test_live_actor import live_game
from tests.test_live_processes import Server, instance_id, two_servers, until_up
from tests.test_live_processes import call as process_call
from tests.test_live_processes import connect as process_connect
from tests.test_live_processes import token as process_token
from tests.test_live_protocol import NS, call, code, connect, freeze, hosted, player, token_for

__all__ = ["two_servers"]  # the fixture, used by name

GENERATED = re.compile(r"[A-Z][a-z]+[A-Z][a-z]+[0-9]*")


async def test_the_host_assigns_names_and_chosen_nicknames_are_ignored(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    # Free nicknames (the default): the chosen one; a guest who sends none is given one.
    _, chosen = await player(live, a, game["pin"], "Freddie")
    assert chosen["nickname"] == chosen["session"]["me"]["nickname"] == "Freddie"
    nameless = await connect(live, b)
    given_one = await call(nameless, "join_session", {"pin": game["pin"]})
    assert given_one["ok"] and GENERATED.fullmatch(given_one["nickname"]), given_one

    assert await call(host, "set_session_options", {"free_nicknames": False}) == {"ok": True, "state": "lobby"}
    assert (await call(host, "sync"))["session"]["free_nicknames"] is False
    joined = []
    for n in range(12):
        client = await connect(live, instances[n % 2])
        ack = await call(client, "join_session", {"pin": game["pin"], "nickname": f"Chosen {n}"})
        assert ack["ok"], ack
        joined.append(ack)
    names = [ack["nickname"] for ack in joined]
    assert all(GENERATED.fullmatch(n) for n in names) and len({n.lower() for n in names}) == len(names)
    # A returning player keeps the name it has (chosen before the change).
    back = await connect(live, b)
    again = await call(back, "join_session", {"pin": game["pin"], "player_token": chosen["player_token"]})
    assert again["ok"] and again["nickname"] == "Freddie"
    listed = {p["nickname"] for p in (await call(host, "sync"))["session"]["players"]}
    assert {"Freddie", given_one["nickname"], *names} == listed


async def test_generated_names_stay_unique_under_concurrent_joins(
    instances: list[Instance], live: Any, db: Database
) -> None:
    game, host = await hosted(live, instances, db)
    assert (await call(host, "set_session_options", {"free_nicknames": False}))["ok"]
    clients = [await connect(live, instances[n % 2]) for n in range(40)]
    acks = await asyncio.gather(*(call(c, "join_session", {"pin": game["pin"], "nickname": "Same"}) for c in clients))
    assert all(ack["ok"] for ack in acks), acks
    assert len({ack["nickname"].lower() for ack in acks}) == 40


async def test_disguised_profanity_is_refused_at_join(instances: list[Instance], live: Any, db: Database) -> None:
    game, _ = await hosted(live, instances, db)
    guest = await connect(live, instances[1])
    for disguised in ("ｆｕｃｋ", "f.u.c.k", "sh\u200b1t", "Ѕhit", "b1tch", "p0rn star", "xXdickXx"):
        assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": disguised})) == (
            "nickname_not_allowed"
        ), disguised
    for ordinary in ("Scunthorpe", "Cassandra"):
        client = await connect(live, instances[0])
        assert (await call(client, "join_session", {"pin": game["pin"], "nickname": ordinary}))["ok"]


async def test_a_kicked_player_may_rejoin_as_a_new_player(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    bob, first = await player(live, b, game["pin"], "Bob")
    assert await call(host, "kick_player", {"player_id": first["player_id"]}) == {"ok": True, "state": "lobby"}
    assert (await bob.next("kicked", NS)) == {"reason": "The host removed you from this session.", "banned": False}
    assert code(await call(bob, "submit_answer", {"question_index": 0, "answer": "a"})) == "not_joined"
    # The same connection, the same nickname (freed by the kick): a new player.
    again = await call(bob, "join_session", {"pin": game["pin"], "nickname": "Bob"})
    assert again["ok"] and again["player_id"] != first["player_id"], again
    # The old token, on the other instance: a new player too (score starts over), never the kicked one.
    elsewhere = await connect(live, a)
    ack = await call(
        elsewhere, "join_session", {"pin": game["pin"], "nickname": "Bob2", "player_token": first["player_token"]}
    )
    assert ack["ok"] and ack["player_id"] not in (first["player_id"], again["player_id"])
    players = {p["player_id"] for p in (await call(host, "sync"))["session"]["players"]}
    assert players == {again["player_id"], ack["player_id"]}


async def test_a_banned_player_may_not_come_back(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    mallory, ack = await player(live, b, game["pin"], "Mallory")
    ban = {"player_id": ack["player_id"], "ban": True}
    assert await call(host, "kick_player", ban) == {"ok": True, "state": "lobby"}
    assert (await mallory.next("kicked", NS))["banned"] is True
    # Not from the same connection, whatever the nickname.
    assert code(await call(mallory, "join_session", {"pin": game["pin"], "nickname": "Eve"})) == "banned"
    # Not with the player token, from another connection on either instance, with or without a new nickname.
    for instance in (a, b):
        client = await connect(live, instance)
        for join in ({"player_token": ack["player_token"]}, {"player_token": ack["player_token"], "nickname": "Eve"}):
            assert code(await call(client, "join_session", {"pin": game["pin"], **join})) == "banned"
    # Banning a player already banned (or kicked) again is accepted; an unknown one is not found.
    assert (await call(host, "kick_player", ban))["ok"]
    assert code(await call(host, "kick_player", {"player_id": game["id"], "ban": True})) == "not_found"

    # An account banned stays banned whatever nickname, on any connection.
    student = await make_user(db, role="student", full_name="Stu Dent")
    token = await token_for(a, student)
    stu, stu_ack = await player(live, a, game["pin"], "Stu", token)
    assert (await call(host, "kick_player", {"player_id": stu_ack["player_id"], "ban": True}))["ok"]
    await stu.next("kicked", NS)
    for instance, nickname in ((a, "Somebody"), (b, None)):
        client = await connect(live, instance, token)
        join = {"pin": game["pin"]} | ({"nickname": nickname} if nickname else {})
        assert code(await call(client, "join_session", join)) == "banned"
    assert [p["nickname"] for p in (await call(host, "sync"))["session"]["players"]] == []


async def test_a_kicked_player_banned_afterwards_may_not_come_back(
    instances: list[Instance], live: Any, db: Database
) -> None:
    game, host = await hosted(live, instances, db)
    _, ack = await player(live, instances[1], game["pin"], "Trudy")
    assert (await call(host, "kick_player", {"player_id": ack["player_id"]}))["ok"]
    assert code(await call(host, "kick_player", {"player_id": ack["player_id"]})) == "not_found"
    assert (await call(host, "kick_player", {"player_id": ack["player_id"], "ban": True}))["ok"]
    client = await connect(live, instances[0])
    assert code(await call(client, "join_session", {"pin": game["pin"], "player_token": ack["player_token"]})) == (
        "banned"
    )


async def test_bans_survive_a_reconnect_and_the_owner_dying(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)  # the host connected to a first: a runs the session
    assert game["id"] in a.app[LIVE].actors
    _, banned = await player(live, b, game["pin"], "Oscar")
    _, kept = await player(live, b, game["pin"], "Ella")
    assert (await call(host, "kick_player", {"player_id": banned["player_id"], "ban": True}))["ok"]
    assert (await call(host, "start_session"))["ok"]
    await a.app[LIVE].crash()  # like SIGKILL: no more writes from a, its lease left to expire
    await eventually(lambda: game["id"] in b.app[LIVE].actors, what="b taking the session over", timeout=20)
    for _ in range(2):  # a reconnect, then another: the ban is in Redis with the session
        client = await connect(live, b)
        assert code(
            await call(client, "join_session", {"pin": game["pin"], "player_token": banned["player_token"]})
        ) == ("banned")
    client = await connect(live, b)
    back = await call(client, "join_session", {"pin": game["pin"], "player_token": kept["player_token"]})
    assert back["ok"] and back["player_id"] == kept["player_id"]
    new_host = await connect(live, b, await token_for(b, game["teacher"]))
    hosted_again = await call(new_host, "host_session", {"session_id": game["id"]})
    assert [p["nickname"] for p in hosted_again["session"]["players"]] == ["Ella"]
    assert (await call(new_host, "kick_player", {"player_id": banned["player_id"], "ban": True}))["ok"]


async def test_the_lock_holds_on_a_running_game_across_instances(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db, limit=300)
    _, early = await player(live, b, game["pin"], "Early")
    assert (await call(host, "start_session"))["ok"]
    assert (await call(host, "lock_session"))["ok"]
    assert (await call(host, "sync"))["session"]["locked"] is True
    for instance in (a, b):
        late = await connect(live, instance)
        assert code(await call(late, "join_session", {"pin": game["pin"], "nickname": "Late"})) == "session_locked"
    # A returning player is not a new one: the lock lets it back in.
    back = await connect(live, a)
    ack = await call(back, "join_session", {"pin": game["pin"], "player_token": early["player_token"]})
    assert ack["ok"] and ack["player_id"] == early["player_id"]
    assert (await call(host, "unlock_session"))["ok"]
    late = await connect(live, b)
    assert (await call(late, "join_session", {"pin": game["pin"], "nickname": "Late"}))["ok"]


async def test_a_late_joiner_plays_the_current_question_until_its_deadline(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    t0 = 1_900_000_000_000
    await freeze(a, game["id"], t0)
    await player(live, a, game["pin"], "OnTime")
    assert (await call(host, "start_session"))["ok"]
    late, ack = await player(live, b, game["pin"], "Late")
    question = ack["session"]["question"]
    assert ack["session"]["state"] == "question" and question["index"] == 0
    assert ack["session"]["deadline"] == t0 + 20_000 and ack["session"]["me"]["answered_current"] is False
    assert question["options"] and "correct_answer" not in question
    answered = await call(late, "submit_answer", {"question_index": 0, "answer": question["options"][0]["id"]})
    assert answered == {"ok": True, "accepted_at": t0}
    assert (await call(late, "sync"))["session"]["me"]["answered_current"] is True
    # Past the deadline (and its grace), a later joiner sees the question but may no longer answer it.
    await freeze(a, game["id"], t0 + 20_000 + 251)
    later, later_ack = await player(live, a, game["pin"], "Later")
    assert later_ack["session"]["question_index"] == 0
    assert code(await call(later, "submit_answer", {"question_index": 0, "answer": question["options"][0]["id"]})) == (
        "too_late"
    )


async def test_the_buttons_view_sends_players_only_the_buttons(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    alice, _ = await player(live, b, game["pin"], "Alice")
    assert (await call(host, "set_session_options", {"player_view": "buttons"}))["ok"]
    assert (await call(host, "start_session"))["ok"]
    for_host = await host.next("question_started", NS)
    for_player = await alice.next("question_started", NS)
    assert for_host["text"] and all(o["text"] for o in for_host["options"]) and "player_view" not in for_host
    assert "text" not in for_player and for_player["player_view"] == "buttons"
    assert [o["id"] for o in for_player["options"]] == [o["id"] for o in for_host["options"]]
    assert [o["label"] for o in for_player["options"]] == ["A", "B", "C"]
    assert all(set(o) == {"id", "label", "colour", "shape"} for o in for_player["options"])
    assert for_player["deadline"] == for_host["deadline"] and for_player["index"] == 0
    # Snapshots say the same: a player's sync and a late joiner's ack.
    synced = (await call(alice, "sync"))["session"]
    assert synced["player_view"] == "buttons" and "text" not in synced["question"]
    _, late = await player(live, a, game["pin"], "Bea")
    assert "text" not in late["session"]["question"]
    assert (await call(host, "sync"))["session"]["question"]["text"] == for_host["text"]
    # Answers are the same option ids.
    assert (await call(alice, "submit_answer", {"question_index": 0, "answer": for_player["options"][1]["id"]}))["ok"]


BAD_OPTIONS: list[Any] = [
    {"free_nicknames": "no"}, {"free_nicknames": 0}, {"player_view": "text"}, {"player_view": "buttons\x00"},
    {"player_view": "b" * 60_000}, {"player_view": None, "free_nicknames": []}, [], "x", 7,
]  # fmt: skip
BAD_KICKS: list[Any] = [
    {"player_id": "nope"}, {"player_id": "\x00"}, {"ban": True}, {"player_id": None},
    {"player_id": "00000000-0000-0000-0000-000000000000", "ban": "yes"},
    {"player_id": "00000000-0000-0000-0000-000000000000", "ban": 1}, {"player_id": "a" * 60_000},
]  # fmt: skip


async def test_malformed_and_unauthorised_moderation_events(instances: list[Instance], live: Any, db: Database) -> None:
    game, host = await hosted(live, instances, db)
    guest, ack = await player(live, instances[1], game["pin"], "Guest")
    for payload in BAD_OPTIONS:
        assert code(await call(host, "set_session_options", payload)) == "invalid_payload", payload
    for payload in BAD_KICKS:
        assert code(await call(host, "kick_player", payload)) == "invalid_payload", payload
    for event, payload in (
        ("set_session_options", {"player_view": "buttons"}),
        ("kick_player", {"player_id": ack["player_id"], "ban": True}),
    ):
        assert code(await call(guest, event, payload)) == "forbidden"
    # Replayed: the same option twice, the same ban twice, are no-ops that succeed.
    for _ in range(2):
        assert (await call(host, "set_session_options", {"player_view": "buttons"}))["ok"]
    session = (await call(host, "sync"))["session"]
    assert session["player_view"] == "buttons" and session["free_nicknames"] is True
    assert (await call(guest, "sync"))["ok"]  # the guest's connection is unharmed


@pytest.mark.no_services
@given(
    st.dictionaries(
        st.sampled_from(["free_nicknames", "player_view", "ban", "x"]),
        st.none() | st.booleans() | st.text(max_size=8) | st.integers(),
    )
)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_option_payloads_validate_exactly(data: dict[str, Any]) -> None:
    try:
        parsed = SetSessionOptions.model_validate(data)
    except ValidationError:
        valid = (  # unknown fields are ignored, as in every payload (realtime/protocol.py)
            data.get("free_nicknames") in (None, True, False)
            and type(data.get("free_nicknames")) in (type(None), bool)
            and data.get("player_view") in (None, "full", "buttons")
        )
        assert not valid, data
    else:
        known = {"free_nicknames", "player_view"}
        assert parsed.model_dump(exclude_none=True) == {k: v for k, v in data.items() if k in known and v is not None}


@pytest.mark.no_services
@given(st.uuids(), st.none() | st.booleans() | st.integers() | st.text(max_size=4))
def test_kick_payloads_validate_exactly(player_id: Any, ban: Any) -> None:
    data: dict[str, Any] = {"player_id": str(player_id)} | ({} if ban is None else {"ban": ban})
    try:
        parsed = KickPlayer.model_validate(data)
    except ValidationError:
        assert not isinstance(ban, bool) and ban is not None
    else:
        assert parsed.ban is (ban is True)


@pytest.mark.slow
async def test_a_ban_holds_after_sigkill_of_the_process_running_the_session(
    two_servers: list[Server], db: Database, redis: Any, config: Settings
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=1, limit=300)
    host = await process_connect(a.url, await process_token(a.url, game["teacher"]["email"]))
    clients = [host]
    try:
        assert (await process_call(host, "host_session", {"session_id": game["id"]}))["ok"]
        lease = session_keys(config.live.redis_prefix, game["id"]).lease
        assert (await redis.get(lease)).decode().startswith(instance_id(a) + ":")
        banned = await process_connect(b.url)
        clients.append(banned)
        ack = await process_call(banned, "join_session", {"pin": game["pin"], "nickname": "Grace"})
        assert ack["ok"], ack
        assert (await process_call(host, "kick_player", {"player_id": ack["player_id"], "ban": True}))["ok"]
        assert (await banned.next("kicked", NS, timeout=20))["banned"] is True

        a.process.process.send_signal(signal.SIGKILL)
        a.process.process.wait()

        async def b_runs_it() -> bool:  # the lease expired and b's supervisor took the session over
            holder = await redis.get(lease)
            return holder is not None and holder.decode().startswith(instance_id(b) + ":")

        await eventually(b_runs_it, what="b running the session", timeout=30)
        for nickname in (None, "Grace2"):
            client = await process_connect(b.url)
            clients.append(client)
            join = {"pin": game["pin"], "player_token": ack["player_token"]} | (
                {"nickname": nickname} if nickname else {}
            )
            assert code(await process_call(client, "join_session", join)) == "banned"
        assert code(await process_call(banned, "join_session", {"pin": game["pin"], "nickname": "Other"})) == "banned"
        new_host = await process_connect(b.url, await process_token(b.url, game["teacher"]["email"]))
        clients.append(new_host)
        hosted_again = await process_call(new_host, "host_session", {"session_id": game["id"]})
        assert hosted_again["ok"] and hosted_again["session"]["players"] == []
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
