"""Live sessions across two real ``lms serve`` processes: the JavaScript client, reconnects, SIGKILL failover.

Clients are python-socketio's AsyncClient and the official JavaScript client
(``node tests/js/live_player.js``). The owner of a session is killed with
SIGKILL mid-question; the other process takes the session over and every
acknowledged answer must be in the stored results.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from lms.config import Settings
from lms.db import Database
from lms.devservers import free_port
from lms.live.keys import session_keys
from lms.tables import live_answers, live_players
from tests.builders import PASSWORD
from tests.conftest import LiveClient, LmsProcess, Servers, lms_environment
from tests.node import NodeScript
from tests.polling import eventually
from tests.test_live_actor import live_game
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.slow

NS = "/live"
log = logging.getLogger(__name__)


@dataclass
class Server:
    url: str
    process: LmsProcess


@pytest.fixture
def two_servers(servers: Servers) -> Iterator[list[Server]]:
    started = []
    for _ in range(2):
        port = free_port()
        process = LmsProcess(["serve", "--host", "127.0.0.1", "--port", str(port)], lms_environment(servers))
        started.append(Server(f"http://127.0.0.1:{port}", process))
    try:
        for server in started:
            server.process.wait_for_output("live sessions: instance", timeout=60)
        yield started
    finally:
        for server in started:
            server.process.close()


async def until_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:

        async def up() -> bool:
            try:
                async with http.get(url + "/api/v1/health") as response:
                    return response.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(up, what=f"{url} up")


async def token(url: str, email: str) -> str:
    body = {"email": email, "password": PASSWORD}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/v1/auth/login", json=body) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["access_token"])


async def connect(url: str, access_token: str | None = None) -> LiveClient:
    return await LiveClient().connect(url, access_token, NS)


async def call(client: LiveClient, event: str, payload: Any = None) -> Any:
    return await client.call(event, {} if payload is None else payload, namespace=NS, timeout=20)


async def gather_limited(coros: list[Any], limit: int = 40) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def while_running(step: Any, scripts: list[NodeScript]) -> Any:
    """``step``'s result; fails at once, with their stderr, if one of the scripts ends first."""
    task = asyncio.ensure_future(step)
    exits = {asyncio.ensure_future(script.process.wait()): script for script in scripts}
    try:
        done, _ = await asyncio.wait([task, *exits], return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            task.cancel()
            ended = next(exits[e] for e in done if e in exits)
            raise AssertionError(f"a JavaScript player ended mid-game: {ended.report()}")
        return task.result()
    finally:
        for waiting in exits:
            waiting.cancel()


async def test_javascript_players_play_a_game_across_two_processes(two_servers: list[Server], db: Database) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=2)
    host = await connect(a.url, await token(a.url, game["teacher"]["email"]))
    # Host first: a player who joined before the host's room existed would send a player_joined nobody sees.
    assert (await call(host, "host_session", {"session_id": game["id"]}))["ok"]
    players = [await NodeScript.start("live_player.js", s.url, game["pin"], f"JS {n}") for n, s in enumerate((a, b))]
    try:
        for _ in players:
            await while_running(host.next("player_joined", NS, timeout=30), players)
        assert (await call(host, "start_session"))["ok"]
        for index in range(2):
            ended = await while_running(host.next("question_ended", NS, timeout=30), players)  # both answered
            assert ended["index"] == index and sum(ended["distribution"].values()) == 2
            assert (await call(host, "next"))["state"] == "leaderboard"
            assert (await call(host, "next"))["state"] in ("question", "ended")
        for player in players:
            assert await player.finish(60) == 0, player.report()
        for player in players:
            check_transcript(player)
    except BaseException as err:
        reports = "\n".join(p.report() for p in players)
        raise AssertionError(f"{err}\n{reports}") from err
    finally:
        await host.close()
        for player in players:
            await player.close()


def check_transcript(player: NodeScript) -> None:
    lines = [json.loads(line) for line in player.lines]
    acks = {(line["ack"], json.dumps(line["data"])) for line in lines if "ack" in line}
    assert all(json.loads(data)["ok"] for _, data in acks), acks
    events = [line["event"] for line in lines if "event" in line]
    for name in ("session_state", "question_started", "question_ended", "answer_result", "leaderboard"):
        assert name in events, events
    assert events[-2:] == ["session_ended", "final_result"]
    for line in lines:
        if line.get("event") == "question_started":
            assert "correct" not in json.dumps(line["data"])


def instance_id(server: Server) -> str:
    line = next(x for x in server.process.lines if "live sessions: instance" in x)
    return line.split("live sessions: instance", 1)[1].split()[0]


async def test_sigkill_of_the_owner_mid_question_loses_no_acknowledged_answer(
    two_servers: list[Server], db: Database, redis: Any, config: Settings
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=2, limit=300)
    teacher_token = await token(a.url, game["teacher"]["email"])
    host = await connect(a.url, teacher_token)
    clients: list[LiveClient] = [host]
    try:
        assert (await call(host, "host_session", {"session_id": game["id"]}))["ok"]

        async def join(n: int) -> tuple[LiveClient, dict[str, Any], Server]:
            server = a if n % 2 == 0 else b
            client = await connect(server.url)
            clients.append(client)
            ack = await call(client, "join_session", {"pin": game["pin"], "nickname": f"Player {n}"})
            assert ack["ok"], ack
            return client, ack, server

        players = await gather_limited([join(n) for n in range(220)])
        assert (await call(host, "start_session"))["ok"]
        for client, _, _ in players:
            await client.next("question_started", NS, timeout=30)
        answering, silent = players[:200], players[200:]

        async def answer(entry: tuple[LiveClient, dict[str, Any], Server]) -> str:
            ack = await call(entry[0], "submit_answer", {"question_index": 0, "answer": "b"})
            assert ack["ok"], ack
            return str(entry[1]["player_id"])

        acknowledged = set(await gather_limited([answer(p) for p in answering]))
        assert len(acknowledged) == 200
        lease = session_keys(config.live.redis_prefix, game["id"]).lease
        assert (await redis.get(lease)).decode().startswith(instance_id(a) + ":")

        a.process.process.send_signal(signal.SIGKILL)  # the owner: its host connected there first
        a.process.process.wait()
        killed_at = time.monotonic()
        # With no owner at all, the edge still records answers.
        on_b = [p for p in silent if p[2] is b]
        acknowledged |= set(await gather_limited([answer(p) for p in on_b[:5]]))
        # The survivor takes over and tells its clients where the game stands.
        state = await on_b[0][0].next("session_state", NS, timeout=30)
        while state["state"] != "question":
            state = await on_b[0][0].next("session_state", NS, timeout=30)
        log.info("takeover after %.2f s", time.monotonic() - killed_at)
        assert state["question_index"] == 0

        # Players of the dead process come back on the other one with their token.
        async def resume(entry: tuple[LiveClient, dict[str, Any], Server]) -> dict[str, Any]:
            client = await connect(b.url)
            clients.append(client)
            ack = await call(client, "join_session", {"pin": game["pin"], "player_token": entry[1]["player_token"]})
            assert ack["ok"] and ack["player_id"] == entry[1]["player_id"], ack
            return dict(ack)

        moved = [p for p in players if p[2] is a]
        resumed = await gather_limited([resume(p) for p in moved])
        for entry, ack in zip(moved, resumed, strict=True):
            assert ack["session"]["me"]["answered_current"] is (entry[1]["player_id"] in acknowledged)

        host = await connect(b.url, teacher_token)
        clients.append(host)
        assert (await call(host, "host_session", {"session_id": game["id"]}))["ok"]
        assert (await call(host, "next"))["state"] == "reveal"
        assert (await call(host, "end_session"))["state"] == "ended"
        assert instance_id(b) in b.process.output.split("taken over by", 1)[1].split("\n", 1)[0]
        # Counted once, whether the survivor's supervisor or a returning player's join claimed it.
        assert value(await scrape(f"{b.url}/metrics"), "lms_live_takeovers_total") == 1
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    async with db.connection() as conn:
        stored = await conn.fetch_all(
            select(live_answers.c.player_id, live_answers.c.points).where(live_answers.c.session_id == game["id"])
        )
        players_rows = await conn.fetch_all(select(live_players).where(live_players.c.session_id == game["id"]))
    assert {str(r["player_id"]) for r in stored} == acknowledged
    assert all(r["points"] > 0 for r in stored)
    assert len(players_rows) == 220
