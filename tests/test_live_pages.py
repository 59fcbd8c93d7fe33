"""The live pages in headless Chromium: a host and two players play a two-question game to the end.

The browser runs the pages' own JavaScript (the npm Socket.IO client) against
two ``lms serve`` processes: the host and one player on the first, the other
player on the second.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import update

from lms.db import Database
from lms.tables import live_sessions
from tests.builders import PASSWORD
from tests.node import NodeScript, needs_chromium
from tests.test_live_actor import live_game
from tests.test_live_processes import Server, two_servers, until_up
from tests.test_live_question_types import question_types_game

__all__ = ["two_servers"]  # the fixture, used by name

pytestmark = [pytest.mark.slow, needs_chromium]


async def test_host_and_two_players_play_to_the_end_in_a_browser(two_servers: list[Server], db: Database) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=2)
    driver = await NodeScript.start(
        "live_pages.js", a.url, b.url, game["id"], game["pin"], game["teacher"]["email"], PASSWORD,
        packages=("playwright-core",),
    )
    try:
        assert await driver.finish(180) == 0, driver.report()
    finally:
        await driver.close()
    report = json.loads(driver.lines[-1])
    assert report["errors"] == []
    assert sorted(report["lobbyNames"]) == ["Ann", "Ben"]
    first, second = report["questions"]
    assert 0 < first["countdown"] <= 20
    assert first["hostText"] == "Question 0"
    assert first["correct"] == "Paris"
    assert first["distribution"] == [1, 1, 0]
    assert first["ann"]["result"] == "Correct!" and first["ann"]["points"] > 500
    assert first["ben"]["result"] == "Not this time" and first["ben"]["points"] == 0
    assert report["leaderboard"][0].startswith("Ann")
    assert second["correct"] == "2, 3, 5"
    assert second["ann"]["result"] == "Correct!" and second["ben"]["total"] == 0
    assert report["final"]["ann"]["rank"] == "1" and report["final"]["ann"]["score"] == second["ann"]["total"]
    assert report["final"]["ben"]["rank"] == "2"
    assert report["final"]["host"][0].startswith("1. Ann")


async def test_players_answer_a_slider_and_an_ordering_question_in_a_browser(
    two_servers: list[Server], db: Database
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await question_types_game(db, count=2)
    order = game["questions"][1]["correct_answer"]
    driver = await NodeScript.start(
        "live_question_types.js", a.url, b.url, game["id"], game["pin"], game["teacher"]["email"], PASSWORD,
        ",".join(order), packages=("playwright-core",),
    )  # fmt: skip
    try:
        assert await driver.finish(180) == 0, driver.report() + a.process.output[-4000:] + b.process.output[-4000:]
    finally:
        await driver.close()
    report = json.loads(driver.lines[-1])
    assert report["errors"] == []
    assert report["sliderShown"] == {"hidden": False, "min": "0", "max": "100", "options": 0}
    assert report["sliderValue"] == "88"
    slider = report["slider"]
    assert slider["correct"] == "88"
    assert any(line.startswith("80..90") and line.endswith("1") for line in slider["distribution"])
    assert any(line.startswith("90..100") and line.endswith("1") for line in slider["distribution"])
    assert slider["ann"]["result"] == "Correct!" and 1000 <= slider["ann"]["points"] <= 2000
    # 70 % of the points for 5 off, halved at most by time.
    assert slider["ben"]["result"] == "Close!" and 700 <= slider["ben"]["points"] <= 1400
    shown = report["orderingShown"]
    assert shown["ann"] == shown["ben"] != order and sorted(shown["ann"]) == sorted(order)
    assert report["annArranged"] == order
    ordering = report["ordering"]
    assert ordering["correct"] == "Rome, Byzantium, Ottomans, Turkey"
    assert ordering["distribution"] == [2, 2, 1, 1]
    assert ordering["ann"]["result"] == "Correct!" and 2000 <= ordering["ann"]["points"] <= 4000
    assert ordering["ben"]["result"] == "Close!" and 1000 <= ordering["ben"]["points"] <= 2000


async def test_the_host_chooses_buttons_only_and_random_names_in_a_browser(
    two_servers: list[Server], db: Database
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=1)
    driver = await NodeScript.start(
        "live_buttons.js", a.url, b.url, game["id"], game["pin"], game["teacher"]["email"], PASSWORD,
        packages=("playwright-core",),
    )
    try:
        assert await driver.finish(120) == 0, driver.report()
    finally:
        await driver.close()
    report = json.loads(driver.lines[-1])
    assert report["errors"] == []
    # The typed nickname was ignored: a generated one, the same on both screens.
    assert re.fullmatch(r"[A-Z][a-z]+[A-Z][a-z]+[0-9]*", report["name"]) and report["hostListed"] == report["name"]
    shown = report["shown"]
    assert shown["cardHidden"] is True and shown["text"] == ""
    assert report["hostText"] == "Question 0" and "Question 0" not in shown["visibleText"]
    assert [(x["id"], x["text"]) for x in shown["buttons"]] == [("a", "▲ A"), ("b", "◆ B"), ("c", "● C")]
    assert [x["colour"] for x in shown["buttons"]] == ["rgb(226, 27, 60)", "rgb(19, 104, 206)", "rgb(216, 158, 0)"]
    assert all(x["height"] >= 150 for x in shown["buttons"])
    # The answers' texts are on the host's screen only.
    for option_text in report["hostOptions"]:
        assert option_text.strip() and option_text.strip() not in shown["visibleText"]
    assert report["result"] == "Correct!"


async def test_players_see_their_team_and_both_screens_the_team_leaderboard(
    two_servers: list[Server], db: Database
) -> None:
    a, b = two_servers
    await until_up(a.url)
    await until_up(b.url)
    game = await live_game(db, questions=1)
    async with db.transaction() as conn:
        await conn.execute(update(live_sessions).where(live_sessions.c.id == game["id"]).values(team_count=2))
    driver = await NodeScript.start(
        "live_teams.js", a.url, b.url, game["id"], game["pin"], game["teacher"]["email"], PASSWORD,
        packages=("playwright-core",),
    )
    try:
        assert await driver.finish(120) == 0, driver.report()
    finally:
        await driver.close()
    report = json.loads(driver.lines[-1])
    assert report["errors"] == []
    # Balanced: one player per team, each told which.
    assert sorted(report["teams"]) == ["Your team: Blue", "Your team: Red"]
    # Both answered correctly (a little apart in time): each team's average is its one player's score.
    assert report["playerBoard"] == report["hostBoard"]
    board = [re.fullmatch(r"(\d)\. Team (Red|Blue) — (\d+) \(1 player\)", line) for line in report["hostBoard"]]
    assert all(board) and {m[2] for m in board if m} == {"Red", "Blue"}
    assert [m[1] for m in board if m] in (["1", "2"], ["1", "1"]) and all(int(m[3]) > 500 for m in board if m)
