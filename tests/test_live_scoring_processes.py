"""Scoring modes and teams over real Socket.IO clients on two real ``lms serve`` processes.

A game per scoring mode (players on both processes), and a team game whose
owner is killed with SIGKILL between two questions: the survivor takes the
session over with its teams, streaks and double points intact. The results
(REST, CSV, xlsx) say how the session was scored and list the teams.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
from typing import Any

import aiohttp
import pytest
from openpyxl import load_workbook

from lms.db import Database
from tests.builders import bearer, make_question, make_quiz, make_quiz_course, make_user
from tests.conftest import LiveClient
from tests.node import NodeScript
from tests.test_live_processes import Server, call, connect, token, two_servers, until_up, while_running

pytestmark = pytest.mark.slow

NS = "/live"
__all__ = ["two_servers"]  # the fixture, shared with tests/test_live_processes.py


async def quiz_of(db: Database, *, points: list[int], double: list[bool]) -> dict[str, Any]:
    teacher = await make_user(db, role="instructor")
    course = await make_quiz_course(db, instructor_id=teacher["id"])
    quiz = await make_quiz(db, course_id=course["id"], title="Scoring")
    for weight, doubled in zip(points, double, strict=True):
        await make_question(db, quiz_id=quiz["id"], points=weight, double_points=doubled)  # "b" is right
    return {"teacher": teacher, "quiz": quiz}


async def open_session(server: Server, access: str, quiz_id: Any, **settings: Any) -> dict[str, Any]:
    body = {"allow_guests": True, "question_time_limit_seconds": 60, **settings}
    url = f"{server.url}/api/v1/quizzes/{quiz_id}/live-sessions"
    async with aiohttp.ClientSession(headers=bearer(access)) as http, http.post(url, json=body) as response:
        assert response.status == 201, await response.text()
        return dict(await response.json())


async def rest(server: Server, access: str, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession(headers=bearer(access)) as http, http.get(server.url + path) as response:
        return response.status, await response.read()


async def join(server: Server, pin: str, nickname: str, **extra: Any) -> tuple[LiveClient, dict[str, Any]]:
    client = await connect(server.url)
    ack = await call(client, "join_session", {"pin": pin, "nickname": nickname, **extra})
    assert ack["ok"], ack
    return client, ack


async def test_a_game_per_scoring_mode_over_real_clients(two_servers: list[Server], db: Database) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await quiz_of(db, points=[2], double=[False])
    access = await token(a.url, game["teacher"]["email"])
    clients: list[LiveClient] = []
    try:
        for mode, low, high in [("speed", 1000, 2000), ("kahoot_like", 500, 1000), ("accuracy", 2000, 2000)]:
            session = await open_session(b, access, game["quiz"]["id"], scoring=mode)
            assert session["scoring"] == {"mode": mode, "streak_bonus": False, "streak_bonus_points": 0}
            assert session["teams"] == [] and session["team_count"] is None
            host = await connect(a.url, access)
            clients.append(host)
            hosted = await call(host, "host_session", {"session_id": session["id"]})
            assert hosted["ok"] and hosted["session"]["scoring"]["mode"] == mode
            players = [await join(server, session["pin"], f"{mode} {n}") for n, server in enumerate((a, b))]
            clients += [client for client, _ in players]
            assert players[0][1]["session"]["scoring"]["mode"] == mode
            if mode == "kahoot_like":  # teams can also be set in the lobby, by the host only
                refusal = await call(players[0][0], "set_teams", {"team_count": 2})
                assert refusal["ok"] is False and refusal["error"]["code"] == "forbidden"
                for bad in (1, 11, "2", None):
                    refusal = await call(host, "set_teams", {"team_count": bad} if bad is not None else {})
                    assert refusal["error"]["code"] == "invalid_payload", refusal
                assert (await call(host, "set_teams", {"team_count": 2})) == {"ok": True, "state": "lobby"}
                for client, _ in players:
                    changed = await client.next("teams_changed", NS, timeout=30)
                    assert changed == {
                        "team_count": 2,
                        "teams": [{"team": 1, "name": "Red"}, {"team": 2, "name": "Blue"}],
                    }
                picked = [(await call(client, "sync"))["session"]["me"]["team"] for client, _ in players]
                assert sorted(picked) == [1, 2]
            assert (await call(host, "start_session"))["ok"]
            for client, _ in players:
                await client.next("question_started", NS, timeout=30)
            right, wrong = players
            assert (await call(right[0], "submit_answer", {"question_index": 0, "answer": "b"}))["ok"]
            assert (await call(wrong[0], "submit_answer", {"question_index": 0, "answer": "a"}))["ok"]
            right_result = await right[0].next("answer_result", NS, timeout=30)
            wrong_result = await wrong[0].next("answer_result", NS, timeout=30)
            assert low <= right_result["points"] <= high, (mode, right_result)
            assert "streak_bonus" not in right_result and wrong_result["points"] == 0
            assert (await call(host, "end_session"))["ok"]
            await right[0].next("session_ended", NS, timeout=30)

            status, raw = await rest(a, access, f"/api/v1/live-sessions/{session['id']}/results")
            assert status == 200
            results = json.loads(raw)
            assert results["scoring"]["mode"] == mode
            if mode == "kahoot_like":
                assert results["team_count"] == 2
                by_team = {t["team"]: t for t in results["teams"]}
                assert by_team[picked[0]]["score"] == right_result["points"] and by_team[picked[1]]["score"] == 0
            else:
                assert results["teams"] == [] and results["team_count"] is None
            scores = {e["nickname"]: e["score"] for e in results["leaderboard"]}
            assert scores == {f"{mode} 0": right_result["points"], f"{mode} 1": 0}
            status, raw = await rest(b, access, f"/api/v1/live-sessions/{session['id']}/results.csv")
            rows = list(csv.DictReader(io.StringIO(raw.decode())))
            assert status == 200 and {r["scoring"] for r in rows} == {mode}
            assert {r["team"] for r in rows} == ({"1", "2"} if mode == "kahoot_like" else {""})
            assert {r["double_points"] for r in rows} == {"false"}
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def test_a_team_game_across_two_instances_survives_the_owner_dying(
    two_servers: list[Server], db: Database
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await quiz_of(db, points=[1, 1], double=[False, True])
    access = await token(b.url, game["teacher"]["email"])
    session = await open_session(
        b, access, game["quiz"]["id"], scoring="accuracy", streak_bonus=True, streak_bonus_points=100, team_count=2
    )
    assert session["teams"] == [{"team": 1, "name": "Red"}, {"team": 2, "name": "Blue"}]
    assert session["scoring"] == {"mode": "accuracy", "streak_bonus": True, "streak_bonus_points": 100}
    host = await connect(a.url, access)  # the host's instance owns the session: a
    clients: list[LiveClient] = [host]
    try:
        assert (await call(host, "host_session", {"session_id": session["id"]}))["ok"]
        pin = session["pin"]
        # Bad team choices are refused and lose nothing.
        refused = await connect(b.url)
        clients.append(refused)
        for bad in (0, 3, 11, "1", None, True, 10**30):
            ack = await call(refused, "join_session", {"pin": pin, "nickname": "Zed", "team": bad})
            if bad is None:  # null is "no choice"
                assert ack["ok"], ack
                continue
            assert ack["ok"] is False and ack["error"]["code"] in ("invalid_payload", "no_teams"), (bad, ack)

        # Zed (no choice: the smallest team) is in team 1; p0 picks team 1; p1, p2 and p3 are balanced
        # (2, 2, then 1); p3 then picks team 2 in the lobby: 2 members in team 1, 3 in team 2.
        placed: list[tuple[LiveClient, dict[str, Any], Server]] = []
        for n, (server, pick) in enumerate([(a, 1), (b, None), (b, None), (a, None)]):
            client, ack = await join(server, pin, f"Player {n}", **({"team": pick} if pick else {}))
            clients.append(client)
            placed.append((client, ack, server))
        # The join's ack names the team; so does every snapshot after it.
        assert [ack["session"]["me"]["team"] for _, ack, _ in placed] == [1, 2, 2, 1]
        teams = [await call(c, "sync") for c, _, _ in placed]
        assert [t["session"]["me"]["team"] for t in teams] == [1, 2, 2, 1]
        p3 = placed[3][0]
        assert await call(p3, "choose_team", {"team": 2}) == {"ok": True, "team": 2}
        changed = await p3.next("team_assigned", NS, timeout=30)
        while changed["team"] != 2:  # the one sent on arrival may have come first
            changed = await p3.next("team_assigned", NS, timeout=30)
        assert changed == {"player_id": placed[3][1]["player_id"], "team": 2, "name": "Blue"}
        for bad in (0, 3, "x\x00", None):
            refusal = await call(p3, "choose_team", {"team": bad})
            assert refusal["ok"] is False and refusal["error"]["code"] == "invalid_payload", refusal
        assert (await call(p3, "sync"))["session"]["me"]["team"] == 2
        host_view = (await call(host, "sync"))["session"]
        assert sorted(p["team"] for p in host_view["players"]) == [1, 1, 2, 2, 2]

        # Question 0: p0 and p1 right, p2 wrong, p3 and Zed silent.
        assert (await call(host, "start_session"))["ok"]
        for client, _, _ in placed:
            await client.next("question_started", NS, timeout=30)
        for n, answer in [(0, "b"), (1, "b"), (2, "a")]:
            assert (await call(placed[n][0], "submit_answer", {"question_index": 0, "answer": answer}))["ok"]
        assert (await call(host, "next"))["state"] == "reveal"
        first = [await c.next("answer_result", NS, timeout=30) for c, _, _ in placed]
        assert [r["points"] for r in first] == [1000, 1000, 0, 0]
        assert [r["team"] for r in first] == [1, 2, 2, 2]
        assert (await call(host, "next"))["state"] == "leaderboard"
        board = await placed[0][0].next("leaderboard", NS, timeout=30)
        # Team 1: p0 1000, Zed 0 → 500; team 2: p1 1000, p2 0, p3 0 → 333.
        assert [(t["team"], t["score"], t["rank"], t["members"]) for t in board["teams"]] == [
            (1, 500, 1, 2),
            (2, 333, 2, 3),
        ]
        assert {e["nickname"]: e["team"] for e in board["top"]}["Zed"] == 1

        # The owner dies; the survivor takes over with the teams.
        a.process.process.send_signal(signal.SIGKILL)
        a.process.process.wait()
        on_b = placed[1][0]
        # The teams are in the session's state in Redis (what any instance reads); the takeover itself is
        # proven below, when the host on b moves the game on.
        state = (await call(on_b, "sync"))["session"]
        assert state["state"] == "leaderboard"
        assert state["me"]["team"] == 2 and state["teams"] == session["teams"]
        assert [(t["team"], t["score"]) for t in state["leaderboard"]["teams"]] == [(1, 500), (2, 333)]
        for n, team in ((0, 1), (3, 2)):
            client = await connect(b.url)
            clients.append(client)
            ack = await call(client, "join_session", {"pin": pin, "player_token": placed[n][1]["player_token"]})
            assert ack["ok"] and ack["session"]["me"]["team"] == team, ack
            placed[n] = (client, ack, b)
        host = await connect(b.url, access)
        clients.append(host)
        assert (await call(host, "host_session", {"session_id": session["id"]}))["ok"]

        # Question 1 doubles: p0..p3 right (Zed, still connected, silent: the host ends the question);
        # p0 and p1 on a streak of two (+100, not doubled).
        assert (await call(host, "next"))["state"] == "question"
        for client, _, _ in placed:
            await next_question(client)
        for client, _, _ in placed:
            assert (await call(client, "submit_answer", {"question_index": 1, "answer": "b"}))["ok"]
        assert (await call(host, "next"))["state"] == "reveal"
        second = [await c.next("answer_result", NS, timeout=30) for c, _, _ in placed]
        assert [(r["points"], r["streak_bonus"], r["streak"]) for r in second] == [
            (2100, 100, 2),
            (2100, 100, 2),
            (2000, 0, 1),
            (2000, 0, 1),
        ]
        assert (await call(host, "next"))["state"] == "leaderboard"
        assert (await call(host, "next"))["state"] == "ended"
        ended = await placed[1][0].next("session_ended", NS, timeout=30)
        # Team 1: p0 3100, Zed 0 → 1550; team 2: p1 3100, p2 2000, p3 2000 → 2367 (2366.67).
        assert [(t["team"], t["score"], t["members"]) for t in ended["teams"]] == [(2, 2367, 3), (1, 1550, 2)]
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    status, raw = await rest(b, access, f"/api/v1/live-sessions/{session['id']}/results")
    assert status == 200
    results = json.loads(raw)
    assert results["scoring"] == {"mode": "accuracy", "streak_bonus": True, "streak_bonus_points": 100}
    assert results["team_count"] == 2
    assert [(t["team"], t["name"], t["score"], t["rank"], t["members"]) for t in results["teams"]] == [
        (2, "Blue", 2367, 1, 3),
        (1, "Red", 1550, 2, 2),
    ]
    assert {e["nickname"]: e["team"] for e in results["leaderboard"]} == {
        "Player 0": 1, "Player 1": 2, "Player 2": 2, "Player 3": 2, "Zed": 1,
    }  # fmt: skip
    assert [q["double_points"] for q in results["questions"]] == [False, True]

    status, raw = await rest(b, access, f"/api/v1/live-sessions/{session['id']}/results.csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    mine = [r for r in rows if r["nickname"] == "Player 1"]
    assert [(r["points"], r["double_points"], r["scoring"], r["streak_bonus_points"]) for r in mine] == [
        ("1000", "false", "accuracy", "100"),
        ("2100", "true", "accuracy", "100"),
    ]
    assert {(r["team"], r["team_name"], r["team_score"], r["team_rank"]) for r in mine} == {("2", "Blue", "2367", "1")}

    status, raw = await rest(b, access, f"/api/v1/live-sessions/{session['id']}/results.xlsx")
    assert status == 200
    book = load_workbook(io.BytesIO(raw), read_only=True)
    assert book.sheetnames == ["Summary", "Teams", "Q1", "Q2"]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert (summary["scoring"], summary["streak_bonus_points"], summary["team_count"]) == ("accuracy", 100, 2)
    teams_sheet = list(book["Teams"].iter_rows(values_only=True))
    assert teams_sheet[0] == ("rank", "team", "name", "score", "members")
    assert teams_sheet[1:] == [(1, 2, "Blue", 2367, 3), (2, 1, "Red", 1550, 2)]
    q2 = {row[0]: row[1] for row in book["Q2"].iter_rows(values_only=True) if row and row[0]}
    assert q2["double_points"] == "true"  # spreadsheet cells show booleans as text (lms.api.spreadsheets)


async def next_question(client: LiveClient) -> None:
    """The second question's start (a takeover may have sent the first one's again: skip it)."""
    while (await client.next("question_started", NS, timeout=30))["index"] != 1:
        pass


async def test_javascript_players_play_in_teams_across_two_processes(two_servers: list[Server], db: Database) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await quiz_of(db, points=[1], double=[False])
    access = await token(a.url, game["teacher"]["email"])
    session = await open_session(a, access, game["quiz"]["id"], scoring="accuracy", team_count=2)
    host = await connect(a.url, access)
    assert (await call(host, "host_session", {"session_id": session["id"]}))["ok"]
    # One picks team 2 (on a) and answers right; two are balanced (on b): 1, then 1 again (team 2 has one).
    specs = [(a, "Jay", "2", "b"), (b, "Kim", "-", "b"), (b, "Lee", "-", "a")]
    players: list[NodeScript] = []
    try:
        for server, nickname, team, answer in specs:
            players.append(
                await NodeScript.start("live_team_player.js", server.url, session["pin"], nickname, team, answer)
            )
            await while_running(host.next("player_joined", NS, timeout=30), players)
        assert (await call(host, "start_session"))["ok"]
        await while_running(host.next("question_ended", NS, timeout=30), players)  # all three answered
        assert (await call(host, "next"))["state"] == "leaderboard"
        assert (await call(host, "next"))["state"] == "ended"
        for player in players:
            assert await player.finish(60) == 0, player.report()
    except BaseException as err:
        raise AssertionError(f"{err}\n" + "\n".join(p.report() for p in players)) from err
    finally:
        await host.close()
        for player in players:
            await player.close()
    transcripts = [[json.loads(line) for line in p.lines] for p in players]
    joined = [next(x["data"] for x in t if x.get("ack") == "join_session") for t in transcripts]
    assert [j["session"]["me"]["team"] for j in joined] == [2, 1, 1]
    results = [next(x["data"] for x in t if x.get("event") == "answer_result") for t in transcripts]
    assert [(r["points"], r["team"]) for r in results] == [(1000, 2), (1000, 1), (0, 1)]
    board = next(x["data"] for x in transcripts[0] if x.get("event") == "leaderboard")
    assert [(t["team"], t["score"], t["members"]) for t in board["teams"]] == [(2, 1000, 1), (1, 500, 2)]
    ended = next(x["data"] for x in transcripts[2] if x.get("event") == "session_ended")
    assert [t["score"] for t in ended["teams"]] == [1000, 500]
