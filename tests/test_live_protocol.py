"""The ``/live`` namespace with real Socket.IO clients against two app instances on real ports.

Instances share PostgreSQL and Redis as they would behind a load balancer;
players are spread over both. Deadlines are judged on the session's frozen
test clock where a boundary matters.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest
import socketio

from lms.db import Database
from realtime.live.setup import LIVE
from tests.builders import login, make_user
from tests.conftest import Instance, LiveClient
from tests.polling import eventually
from tests.test_live_actor import T0, live_game

NS = "/live"


async def token_for(instance: Instance, user: dict[str, Any]) -> str:
    return str((await login(instance.http, user["email"]))["access_token"])


async def connect(live: Any, instance: Instance, token: str | None = None) -> LiveClient:
    client: LiveClient = live()
    return await client.connect(instance.url, token, NS)


async def call(client: LiveClient, event: str, payload: Any = None) -> Any:
    return await client.call(event, {} if payload is None else payload, namespace=NS)


def code(ack: Any) -> str:
    assert ack["ok"] is False, ack
    return str(ack["error"]["code"])


async def freeze(instance: Instance, session_id: str, ms: int) -> None:
    runtime = instance.app[LIVE]
    await runtime.redis.set(runtime.store.keys(session_id).clock, ms)


async def hosted(live: Any, instances: list[Instance], db: Database, **game: Any) -> tuple[dict[str, Any], LiveClient]:
    info = await live_game(db, **game)
    host = await connect(live, instances[0], await token_for(instances[0], info["teacher"]))
    ack = await call(host, "host_session", {"session_id": info["id"]})
    assert ack["ok"], ack
    await host.next("session_state", NS)
    return info, host


async def player(live: Any, instance: Instance, pin: str, nickname: str, token: str | None = None) -> Any:
    client = await connect(live, instance, token)
    ack = await call(client, "join_session", {"pin": pin, "nickname": nickname})
    assert ack["ok"], ack
    await client.next("session_state", NS)
    return client, ack


class RawPlayer:
    """A player speaking Socket.IO v5 by hand over a websocket, to see the exact frames the server sends."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self._http = aiohttp.ClientSession()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, base_url: str) -> None:
        self._ws = await self._http.ws_connect(base_url + "/socket.io/?EIO=4&transport=websocket")
        opened = await self._ws.receive_str()
        assert opened.startswith("0")
        await self._ws.send_str("40/live,")
        while not (await self._ws.receive_str()).startswith("40/live,"):
            pass
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            text = message.data
            if text == "2":
                await self._ws.send_str("3")
                continue
            self.frames.append(text)
            if text.startswith("43/live,"):
                body = text[len("43/live,") :]
                digits = len(body) - len(body.lstrip("0123456789"))
                self._acks[int(body[:digits])].set_result(json.loads(body[digits:])[0])

    async def call(self, event: str, payload: Any) -> Any:
        assert self._ws is not None
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._acks[self._next_id] = future
        await self._ws.send_str(f"42/live,{self._next_id}" + json.dumps([event, payload]))
        return await asyncio.wait_for(future, 10)

    def events(self) -> list[tuple[str, Any, str]]:
        out = []
        for frame in self.frames:
            if frame.startswith("42/live,"):
                name, *args = json.loads(frame[len("42/live,") :])
                out.append((name, args[0] if args else None, frame))
        return out

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()
        await self._http.close()


@pytest.fixture
async def raw_players() -> Any:
    made: list[RawPlayer] = []

    def make() -> RawPlayer:
        made.append(RawPlayer())
        return made[-1]

    yield make
    for raw in made:
        await raw.close()


async def test_a_full_game_with_players_on_both_instances(
    instances: list[Instance], live: Any, db: Database, raw_players: Any
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db, questions=3)
    await freeze(a, game["id"], T0)
    student = await make_user(db, role="student", full_name="Sam")
    alice, _ = await player(live, a, game["pin"], "Alice")
    bob, _ = await player(live, b, game["pin"], "Bob")
    sam, sam_ack = await player(live, b, game["pin"], "", await token_for(b, student))
    assert sam_ack["session"]["me"]["nickname"] == "Sam"
    raw = raw_players()
    await raw.connect(b.url)
    raw_ack = await raw.call("join_session", {"pin": game["pin"], "nickname": "Raw"})
    assert raw_ack["ok"] and raw_ack["player_token"]
    joined = [await host.next("player_joined", NS) for _ in range(4)]
    assert {j["nickname"] for j in joined} == {"Alice", "Bob", "Sam", "Raw"}
    counts = []
    while not counts or counts[-1] != 4:
        counts.append((await alice.next("player_count", NS))["count"])

    assert await call(host, "start_session") == {"ok": True, "state": "question"}
    for client in (host, alice, bob, sam):
        started = await client.next("question_started", NS)
        assert started["index"] == 0 and started["deadline"] == T0 + 20_000
    answers = {alice: "b", bob: "b", sam: "a"}
    for client, answer in answers.items():
        ack = await call(client, "submit_answer", {"question_index": 0, "answer": answer})
        assert ack == {"ok": True, "accepted_at": T0}
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": "a"})) == "already_answered"
    count = await host.next("answer_count", NS)
    assert count["index"] == 0 and count["players"] == 4
    assert (await raw.call("submit_answer", {"question_index": 0, "answer": "c"}))["ok"]
    ended = await bob.next("question_ended", NS)  # everyone connected answered: no wait for the deadline
    assert ended == {"index": 0, "correct_answer": "b", "distribution": {"a": 1, "b": 2, "c": 1}}
    result = await alice.next("answer_result", NS)
    assert result == {"index": 0, "correct": True, "points": 1000, "total_score": 1000, "rank": 1, "streak": 1}
    assert (await sam.next("answer_result", NS))["correct"] is False

    for index in (1, 2):
        assert (await call(host, "next"))["state"] == "leaderboard"
        board = await alice.next("leaderboard", NS)
        assert board["total_players"] == 4 and board["top"][0]["nickname"] == "Alice"
        assert (await call(host, "next"))["state"] == "question"
        started = await bob.next("question_started", NS)
        assert started["index"] == index
        options = [o["id"] for o in started["options"]]
        for client in (alice, bob, sam):
            choice: Any = options[:1] if started["question_type"] == "multiple_choice" else options[0]
            assert (await call(client, "submit_answer", {"question_index": index, "answer": choice}))["ok"]
        assert (await call(host, "next"))["state"] == "reveal"  # ends the timer early
        await alice.next("question_ended", NS)
    assert (await call(host, "next"))["state"] == "leaderboard"
    assert (await call(host, "next"))["state"] == "ended"
    final = await sam.next("session_ended", NS)
    assert final["results_url"].endswith(f"/live-sessions/{game['id']}/results")
    mine = await sam.next("final_result", NS)
    assert set(mine) == {"rank", "score"}

    # No player-facing frame carried a correct answer before its question ended.
    seen_end: set[int] = set()
    for name, data, frame in raw.events():
        if name == "question_ended":
            seen_end.add(data["index"])
        elif name in ("question_started", "session_state") and data.get("question_index", data.get("index")) not in (
            seen_end
        ):
            assert "correct" not in frame, frame
    assert [n for n, _, _ in raw.events()].count("question_started") == 3

    teacher_auth = {"Authorization": "Bearer " + await token_for(a, game["teacher"])}
    results = await (await a.http.get(f"/api/v1/live-sessions/{game['id']}/results", headers=teacher_auth)).json()
    assert results["status"] == "ended" and results["questions_asked"] == 3
    assert {p["nickname"] for p in results["leaderboard"]} == {"Alice", "Bob", "Sam", "Raw"}
    sam_row = next(p for p in results["leaderboard"] if p["nickname"] == "Sam")
    assert sam_row["user_id"] == str(student["id"])


async def test_join_errors(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db, allow_guests=True)
    guest = await connect(live, b)
    assert code(await call(guest, "join_session", {"pin": "000001", "nickname": "X"})) == "not_found"
    assert code(await call(guest, "join_session", {"pin": "abc", "nickname": "X"})) == "not_found"
    assert code(await call(guest, "join_session", {"nickname": "X"})) == "invalid_payload"
    assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": " "})) == "invalid_payload"
    await player(live, a, game["pin"], "Alice")
    assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": "alice"})) == "nickname_taken"
    assert (await call(host, "lock_session"))["ok"]
    assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": "Bob"})) == "session_locked"
    assert (await call(host, "unlock_session"))["ok"]
    bob, bob_ack = await player(live, b, game["pin"], "Bob")
    banned = {"player_id": bob_ack["player_id"], "ban": True}
    assert (await call(host, "kick_player", banned)) == {"ok": True, "state": "lobby"}
    assert (await bob.next("kicked", NS))["reason"]
    again = {"pin": game["pin"], "nickname": "Bobby", "player_token": bob_ack["player_token"]}
    assert code(await call(bob, "join_session", again)) == "banned"
    assert code(await call(bob, "submit_answer", {"question_index": 0, "answer": "a"})) == "not_joined"

    no_guests, _ = await hosted(live, instances, db, allow_guests=False)
    assert code(await call(guest, "join_session", {"pin": no_guests["pin"], "nickname": "G"})) == "guests_not_allowed"

    assert (await call(host, "end_session"))["state"] == "ended"
    assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": "Late"})) == "session_ended"


async def test_a_full_session_refuses_more_players(instances: list[Instance], live: Any, db: Database) -> None:
    a, _ = instances
    game, _ = await hosted(live, instances, db)
    runtime = a.app[LIVE]
    runtime.store.config = runtime.store.config.model_copy(update={"max_players": 1})
    await player(live, a, game["pin"], "Only")
    late = await connect(live, a)
    assert code(await call(late, "join_session", {"pin": game["pin"], "nickname": "Two"})) == "session_full"


async def test_answer_errors_and_the_deadline_boundary(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db, questions=2)
    await freeze(a, game["id"], T0)
    alice, _ = await player(live, a, game["pin"], "Alice")
    bob, _ = await player(live, b, game["pin"], "Bob")
    carol, _ = await player(live, b, game["pin"], "Carol")
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": "b"})) == "not_in_question"
    await call(host, "start_session")
    await alice.next("question_started", NS)
    assert code(await call(alice, "submit_answer", {"question_index": 1, "answer": "b"})) == "wrong_question"
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": "zz"})) == "invalid_answer"
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": ["b"]})) == "invalid_answer"
    # A number is an answer's shape since sliders: to a choice question it is a wrong kind of answer.
    assert code(await call(alice, "submit_answer", {"question_index": 0, "answer": 3})) == "invalid_answer"
    for bad in ({"question_index": "0", "answer": "b"}, {"question_index": 0}, {"question_index": 0, "answer": True}):
        assert code(await call(alice, "submit_answer", bad)) == "invalid_payload"
    assert code(await alice.call("submit_answer", "garbage", namespace=NS)) == "invalid_payload"
    await freeze(a, game["id"], T0 + 20_000 + 250)  # deadline + grace: the last accepted millisecond
    assert await call(bob, "submit_answer", {"question_index": 0, "answer": "b"}) == {
        "ok": True, "accepted_at": T0 + 20_250,
    }  # fmt: skip
    await freeze(a, game["id"], T0 + 20_000 + 251)
    assert code(await call(carol, "submit_answer", {"question_index": 0, "answer": "b"})) == "too_late"
    assert (await bob.next("answer_result", NS))["points"] == 500
    assert (await carol.next("answer_result", NS))["points"] == 0
    assert code(await call(carol, "submit_answer", {"question_index": 0, "answer": "b"})) == "too_late"
    assert (await call(alice, "sync"))["session"]["state"] == "reveal"


async def test_players_cannot_use_host_events(instances: list[Instance], live: Any, db: Database) -> None:
    a, _ = instances
    game, host = await hosted(live, instances, db)
    alice, ack = await player(live, a, game["pin"], "Alice")
    for event, payload in (
        ("start_session", {}), ("next", {}), ("lock_session", {}), ("unlock_session", {}), ("end_session", {}),
        ("kick_player", {"player_id": ack["player_id"]}),
    ):  # fmt: skip
        assert code(await call(alice, event, payload)) == "forbidden"
    outsider = await connect(live, a, await token_for(a, await make_user(db, role="instructor")))
    assert code(await call(outsider, "host_session", {"session_id": game["id"]})) == "forbidden"
    assert code(await call(outsider, "start_session")) == "forbidden"
    anonymous = await connect(live, a)
    assert code(await call(anonymous, "host_session", {"session_id": game["id"]})) == "unauthorized"
    assert code(await call(anonymous, "host_session", {"session_id": "nope"})) == "not_found"
    assert code(await call(anonymous, "sync")) == "not_joined"
    assert code(await call(anonymous, "no_such_event")) == "unknown_event"
    clock = await call(anonymous, "clock")
    assert clock["ok"] and clock["server_now"] > 1_600_000_000_000
    host_view = (await call(host, "sync"))["session"]
    assert [p["nickname"] for p in host_view["players"]] == ["Alice"] and host_view["players"][0]["connected"]


async def test_several_hosts_share_a_session(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    game, first = await hosted(live, instances, db)
    admin = await make_user(db, role="admin")
    second = await connect(live, b, await token_for(b, admin))
    assert (await call(second, "host_session", {"session_id": game["id"]}))["ok"]
    await player(live, a, game["pin"], "Alice")
    assert (await first.next("player_joined", NS))["nickname"] == "Alice"
    assert (await second.next("player_joined", NS))["nickname"] == "Alice"
    assert (await call(second, "start_session"))["ok"]
    assert (await first.next("question_started", NS))["index"] == 0


async def test_bad_tokens_are_refused_at_connect_and_guests_connect_without(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, _ = instances
    client = live()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(a.url, "not-a-token", NS)
    assert client.refusals[NS]["message"]
    user = await make_user(db, role="student")
    tokens = await login(a.http, user["email"])
    await a.http.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    revoked = live()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await revoked.connect(a.url, tokens["access_token"], NS)
    assert "revoked" in revoked.refusals[NS]["message"]
    guest = await connect(live, a)
    assert (await call(guest, "clock"))["ok"]


async def test_a_player_reconnects_on_the_other_instance_with_score_and_answer_intact(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db, questions=2)
    await freeze(a, game["id"], T0)
    alice, ack = await player(live, a, game["pin"], "Alice")
    await player(live, b, game["pin"], "Bob")
    await call(host, "start_session")
    assert (await call(alice, "submit_answer", {"question_index": 0, "answer": "b"}))["ok"]
    await alice.close()
    assert (await host.next("player_left", NS))["player_id"] == ack["player_id"]
    back = await connect(live, b)
    resumed = await call(back, "join_session", {"pin": game["pin"], "player_token": ack["player_token"]})
    assert resumed["ok"] and resumed["player_id"] == ack["player_id"]
    assert resumed["player_token"] == ack["player_token"]
    me = resumed["session"]["me"]
    assert me["nickname"] == "Alice" and me["answered_current"] is True
    assert resumed["session"]["state"] == "question" and resumed["session"]["question"]["index"] == 0
    assert code(await call(back, "submit_answer", {"question_index": 0, "answer": "a"})) == "already_answered"
    await call(host, "next")
    result = await back.next("answer_result", NS)
    assert result["points"] == 1000
    await back.close()
    again = await connect(live, a)
    resumed = await call(again, "join_session", {"pin": game["pin"], "player_token": ack["player_token"]})
    assert resumed["session"]["me"]["score"] == 1000 and resumed["session"]["me"]["rank"] == 1
    stranger = await connect(live, b)
    unknown = await call(stranger, "join_session", {"pin": game["pin"], "player_token": uuid.uuid4().hex})
    assert code(unknown) == "invalid_payload"  # an unknown token and no nickname


# -- one connection, one player; capacity; pin guessing (issue 10) -------------------


async def test_one_connection_is_at_most_one_player(instances: list[Instance], live: Any, db: Database) -> None:
    a = instances[0]
    game, host = await hosted(live, instances, db)
    other, _ = await hosted(live, instances, db)
    guest, first = await player(live, a, game["pin"], "Mallory")
    for n in range(12):  # within the per-connection event budget (20 at once)
        ack = await call(guest, "join_session", {"pin": game["pin"], "nickname": f"Mallory{n}"})
        assert code(ack) == "already_joined"
    assert code(await call(guest, "join_session", {"pin": other["pin"], "nickname": "Elsewhere"})) == "already_joined"
    # The same join again (a retry after a lost ack) is the same player.
    again = await call(guest, "join_session", {"pin": game["pin"], "nickname": "mallory "})
    assert again["ok"] and (again["player_id"], again["player_token"]) == (first["player_id"], first["player_token"])
    players = (await call(host, "sync"))["session"]["players"]
    assert [p["nickname"] for p in players] == ["Mallory"]
    # Banned, the connection cannot come back as someone new.
    assert (await call(host, "kick_player", {"player_id": first["player_id"], "ban": True}))["ok"]
    await guest.next("kicked", NS)
    assert code(await call(guest, "join_session", {"pin": game["pin"], "nickname": "Eve"})) == "banned"


async def test_capacity_counts_connected_players_and_those_who_may_resume(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    game, host = await hosted(live, instances, db)
    for instance in instances:
        runtime = instance.app[LIVE]
        runtime.store.config = runtime.store.config.model_copy(update={"max_players": 2, "resume_grace_seconds": 2})
    alice, _ = await player(live, a, game["pin"], "Alice")
    bob, bob_ack = await player(live, b, game["pin"], "Bob")
    await bob.close()
    # Bob left but may still come back with his token: his seat is kept.
    newcomer = await connect(live, a)
    assert code(await call(newcomer, "join_session", {"pin": game["pin"], "nickname": "Carol"})) == "session_full"
    back = await connect(live, b)
    resumed = await call(back, "join_session", {"pin": game["pin"], "player_token": bob_ack["player_token"]})
    assert resumed["ok"] and resumed["player_id"] == bob_ack["player_id"]
    # A kicked player's seat is free at once.
    assert (await call(host, "kick_player", {"player_id": bob_ack["player_id"]}))["ok"]
    await player(live, a, game["pin"], "Carol")
    # One who left and did not come back within the grace frees the seat.
    await alice.close()
    dave = await connect(live, b)

    async def dave_joins() -> bool:
        ack = await call(dave, "join_session", {"pin": game["pin"], "nickname": "Dave"})
        assert ack["ok"] or ack["error"]["code"] == "session_full", ack
        return bool(ack["ok"])

    await eventually(dave_joins, timeout=15, what="a seat freed after the resume grace")


async def test_pin_guessing_is_limited_per_address_across_connections_and_instances(
    aiohttp_client: Any, servers: Any, live: Any, db: Database
) -> None:
    from lms.app import create_app
    from tests.conftest import make_config

    config = make_config(servers, live={"pin_failures_per_address": 3, "test_clock": True})
    instances = [Instance(app, await aiohttp_client(app)) for app in (create_app(config), create_app(config))]
    a, b = instances
    game, _ = await hosted(live, instances, db)
    # Successes are never limited per address (a classroom shares one).
    for n in range(5):
        await player(live, (a, b)[n % 2], game["pin"], f"Student{n}")
    first, second = await connect(live, a), await connect(live, b)
    for client, pin in ((first, "000001"), (first, "000002"), (second, "000003")):
        assert code(await call(client, "join_session", {"pin": pin, "nickname": "Guess"})) == "not_found"
    # Past the limit, even the right pin is refused (else guessing would go on), on any connection.
    late = await connect(live, b)
    ack = await call(late, "join_session", {"pin": game["pin"], "nickname": "Late"})
    assert code(ack) == "rate_limited" and "wrong pins" in ack["error"]["message"]



