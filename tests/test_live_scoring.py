"""Live scoring modes, streak bonus, double points and teams (lms/live/scoring.py), and the machine using them.

Pure arithmetic and the pure state machine: no Redis, no PostgreSQL, no
clock. The payload models of the additions (the REST body, ``join_session``'s
``team``, ``choose_team``) are checked with hypothesis: anything out of range
is refused by validation, never accepted half-way.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from pydantic import ValidationError

from lms.live import scoring
from lms.live.schemas import LiveSessionCreate
from lms.live.scoring import ACCURACY, KAHOOT_LIKE, SPEED, ScoringRules, award, points_for, streak_bonus
from lms.quizzes.schemas import QuizQuestionCreate, QuizQuestionUpdate
from realtime.live import machine
from realtime.live.machine import (
    Arrived,
    Closed,
    CloseGate,
    Command,
    Emit,
    EmitEach,
    Now,
    Player,
    Question,
    Recorded,
    Snapshot,
    State,
    transition,
)
from realtime.live.namespace import ChooseTeam, JoinSession
from tests.test_live_machine import Game

pytestmark = pytest.mark.no_services

T = 20_000
T0 = 1_900_000_000_000


# -- each mode's arithmetic ------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "points", "elapsed", "expected"),
    [
        # speed: round(points × 1000 × (1 − t/T/2))
        (SPEED, 1, 0, 1000),
        (SPEED, 1, T // 2, 750),
        (SPEED, 1, T, 500),
        (SPEED, 1, T + 250, 500),  # inside the grace: as at the deadline
        (SPEED, 1, -5, 1000),  # a clock skew before the start: as at the start
        (SPEED, 2, T // 4, 1750),
        (SPEED, Decimal("0.5"), 1, 500),  # 499.9875 → 500
        (SPEED, Decimal("0.25"), T, 125),
        # kahoot_like: round((1 − (t/T)/2) × 1000), whatever the question's weight
        (KAHOOT_LIKE, 1, 0, 1000),
        (KAHOOT_LIKE, 3, 0, 1000),
        (KAHOOT_LIKE, Decimal("0.5"), T // 2, 750),
        (KAHOOT_LIKE, 1, T, 500),
        (KAHOOT_LIKE, 1, T + 250, 500),
        (KAHOOT_LIKE, 1, 1, 1000),  # 999.975 → 1000
        (KAHOOT_LIKE, 1, 3, 1000),  # 999.925 → 1000
        (KAHOOT_LIKE, 1, 30, 999),  # 999.25 → 999
        (KAHOOT_LIKE, 1, 20, 1000),  # 999.5: halves up
        # accuracy: points × 1000, no time factor
        (ACCURACY, 1, 0, 1000),
        (ACCURACY, 1, T, 1000),
        (ACCURACY, 1, T + 250, 1000),
        (ACCURACY, Decimal("0.5"), T // 2, 500),
        (ACCURACY, Decimal("1.25"), 7, 1250),
    ],
)
def test_each_mode_awards_a_correct_answer(mode: str, points: Any, elapsed: int, expected: int) -> None:
    assert points_for(points, correct=True, elapsed_ms=elapsed, time_limit_ms=T, mode=mode) == expected
    assert points_for(points, correct=False, elapsed_ms=elapsed, time_limit_ms=T, mode=mode) == 0
    doubled = points_for(points, correct=True, elapsed_ms=elapsed, time_limit_ms=T, mode=mode, double=True)
    assert doubled == 2 * expected


def test_the_default_mode_is_todays_rule_and_the_old_call_still_works() -> None:
    assert points_for(1, correct=True, elapsed_ms=5000, time_limit_ms=10_000) == 750
    assert points_for(Decimal(2), correct=True, elapsed_ms=0, time_limit_ms=10_000) == 2000
    assert ScoringRules() == ScoringRules(SPEED, 0)


def test_speed_and_kahoot_like_agree_on_questions_of_weight_one() -> None:
    for elapsed in range(0, T + 300, 97):
        speed = points_for(1, correct=True, elapsed_ms=elapsed, time_limit_ms=T, mode=SPEED)
        assert points_for(1, correct=True, elapsed_ms=elapsed, time_limit_ms=T, mode=KAHOOT_LIKE) == speed
        assert 500 <= speed <= 1000


@pytest.mark.parametrize(("streak", "bonus"), [(0, 0), (1, 0), (2, 100), (3, 200), (6, 500), (7, 500), (100, 500)])
def test_the_streak_bonus_grows_per_correct_answer_in_a_row_up_to_five_steps(streak: int, bonus: int) -> None:
    assert streak_bonus(streak, 100) == bonus
    assert streak_bonus(streak, 0) == 0


def test_award_adds_the_streak_bonus_undoubled_and_nothing_for_wrong_answers() -> None:
    rules = ScoringRules(ACCURACY, 50)
    assert award(1, correct=True, elapsed_ms=0, time_limit_ms=T, rules=rules, streak=1) == (1000, 0)
    assert award(1, correct=True, elapsed_ms=0, time_limit_ms=T, rules=rules, streak=3) == (1100, 100)
    assert award(1, correct=True, elapsed_ms=0, time_limit_ms=T, rules=rules, streak=3, double=True) == (2100, 100)
    assert award(1, correct=False, elapsed_ms=0, time_limit_ms=T, rules=rules, streak=0, double=True) == (0, 0)
    off = ScoringRules(SPEED, 0)
    assert award(1, correct=True, elapsed_ms=T, time_limit_ms=T, rules=off, streak=9) == (500, 0)


def test_scoring_rules_read_from_a_session_row_or_a_snapshot_and_are_shown_as_such() -> None:
    assert ScoringRules.of({"scoring": "accuracy", "streak_bonus_points": 200}) == ScoringRules(ACCURACY, 200)
    assert ScoringRules.of({"mode": "kahoot_like", "streak_bonus": True, "streak_bonus_points": 5}).mode == KAHOOT_LIKE
    assert ScoringRules.of(None) == ScoringRules.of({}) == ScoringRules.of({"scoring": "bogus"}) == ScoringRules()
    shown = ScoringRules(KAHOOT_LIKE, 100).public()
    assert shown == {"mode": "kahoot_like", "streak_bonus": True, "streak_bonus_points": 100}
    assert ScoringRules.of(shown) == ScoringRules(KAHOOT_LIKE, 100)
    assert ScoringRules().public()["streak_bonus"] is False


# -- teams -------------------------------------------------------------------------


def test_a_team_score_is_the_average_of_its_members_whatever_their_number() -> None:
    members = [(1, 1000), (1, 500), (1, 0), (2, 600), (3, 700), (3, 900), (None, 5000), (9, 5000)]
    standings = scoring.team_standings(4, members)
    assert standings == [
        {"team": 3, "name": "Green", "score": 800, "rank": 1, "members": 2},
        {"team": 2, "name": "Blue", "score": 600, "rank": 2, "members": 1},
        {"team": 1, "name": "Red", "score": 500, "rank": 3, "members": 3},
        {"team": 4, "name": "Yellow", "score": 0, "rank": 4, "members": 0},
    ]
    # Halves round up; equal shown scores share a rank.
    tied = scoring.team_standings(2, [(1, 1), (1, 2), (2, 2)])
    assert [(t["team"], t["score"], t["rank"]) for t in tied] == [(1, 2, 1), (2, 2, 1)]
    assert scoring.team_standings(None, members) == scoring.team_standings(0, members) == []


def test_players_who_do_not_pick_join_the_smallest_team() -> None:
    assert scoring.smallest_team(3, []) == 1
    assert scoring.smallest_team(3, [1, 1, 2, None]) == 3
    assert scoring.smallest_team(2, [1, 2, 2]) == 1
    assert [t["name"] for t in scoring.teams_of(3)] == ["Red", "Blue", "Green"]
    assert scoring.teams_of(None) == []


# -- the machine -----------------------------------------------------------------


def snapshot(**session: Any) -> Snapshot:
    row = {
        "id": "s1", "pin": "123456", "quiz_id": "quiz", "quiz_title": "Quiz", "allow_guests": True,
        "question_time_limit_seconds": T // 1000, **session,
    }  # fmt: skip
    ab = [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]
    questions = [
        Question("q0", "Pick b", "single_choice", ab, "b", Decimal(1)),
        Question("q1", "Pick a", "single_choice", ab, "a", Decimal(2), double_points=True),
        Question("q2", "True?", "true_false", [{"id": "true", "text": "T"}, {"id": "false", "text": "F"}], True,
                 Decimal(1)),
    ]  # fmt: skip
    snap = Snapshot.new(row, len(questions), T0)
    snap.questions = questions
    snap.rules = machine.Rules(results_base_url="http://x/api/v1/live-sessions")
    return snap


class Play:
    """Drives the machine as the actor would (answers recorded, gates closed with them)."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.mail = 0
        self.recorded: dict[int, dict[str, Recorded]] = {}
        self.effects: list[Any] = []

    def apply(self, message: machine.Message, now: int = T0) -> list[Any]:
        self.snap, effects = transition(self.snap, message, Now(now, 0.0))
        self.effects += effects
        out = list(effects)
        for effect in effects:
            if isinstance(effect, CloseGate):
                out += self.apply(Closed(effect.index, dict(self.recorded.get(effect.index, {}))), now)
        return out

    def message_id(self) -> str:
        self.mail += 1
        return f"{self.mail}-0"

    def join(self, pid: str, team: int | None = None) -> list[Any]:
        player = Player(pid, pid.title(), None, T0, team=team)
        return self.apply(Arrived(self.message_id(), pid, player))

    def command(self, name: str, **args: Any) -> list[Any]:
        return self.apply(Command(self.message_id(), name, args, "i", "r"))

    def answer(self, pid: str, answer: Any, after_ms: int) -> None:
        assert self.snap.started_at is not None
        index = self.snap.question_index
        self.recorded.setdefault(index, {})[pid] = Recorded(self.snap.started_at + after_ms, answer)

    def results(self, effects: list[Any]) -> dict[str, dict[str, Any]]:
        return next(e.by_player for e in effects if isinstance(e, EmitEach) and e.event == "answer_result")

    def emitted(self, effects: list[Any], event: str) -> list[Emit]:
        return [e for e in effects if isinstance(e, Emit) and e.event == event]

    def reply(self, effects: list[Any]) -> dict[str, Any]:
        return next(e.result for e in effects if isinstance(e, machine.Reply))


@pytest.mark.parametrize(
    ("mode", "fast", "slow"),
    [(SPEED, (1000, 3000, 500), (500, 3000, 1000)), (KAHOOT_LIKE, (1000, 1500, 500), (500, 1500, 1000)),
     (ACCURACY, (1000, 4000, 1000), (1000, 4000, 1000))],
)  # fmt: skip
def test_a_game_per_mode_with_double_points_and_streaks(
    mode: str, fast: tuple[int, ...], slow: tuple[int, ...]
) -> None:
    play = Play(snapshot(scoring=mode, streak_bonus_points=0))
    play.join("ann")
    play.join("bob")
    started = [play.emitted(play.command("start_session"), "question_started")[0].data]
    seen: dict[str, list[int]] = {"ann": [], "bob": []}
    timings = [(0, T), (T // 2, T // 2), (T, 0)]  # ann fast then slow; bob the other way round
    for index, (ann_ms, bob_ms) in enumerate(timings):
        right = play.snap.questions[index].correct_answer
        right = "true" if right is True else right
        play.answer("ann", right, ann_ms)
        play.answer("bob", right, bob_ms)
        results = play.results(play.command("next"))
        for pid in seen:
            seen[pid].append(results[pid]["points"])
            assert results[pid]["streak"] == index + 1 and "streak_bonus" not in results[pid]
        play.command("next")  # leaderboard
        started += [e.data for e in play.emitted(play.command("next"), "question_started")]  # or the end
    assert tuple(seen["ann"]) == fast
    # Players see which question doubles (the field is there only when it does).
    assert [q.get("double_points") for q in started] == [None, True, None]
    assert tuple(seen["bob"]) == slow
    assert play.snap.state == State.ENDED
    # The reveal's stored results say which questions doubled.
    assert [r["double_points"] for r in play.snap.results] == [False, True, False]


def test_the_streak_bonus_counts_correct_answers_in_a_row_and_a_miss_resets_it() -> None:
    play = Play(snapshot(scoring=ACCURACY, streak_bonus_points=100))
    play.join("ann")
    play.command("start_session")
    got = []
    for index, answer in enumerate(["b", "a", "true"]):
        play.answer("ann", answer, 0)
        results = play.results(play.command("next"))["ann"]
        got.append((results["points"], results["streak_bonus"], results["streak"]))
        play.command("next")
        if index < 2:
            play.command("next")
    # 1000; double 2×2000 + bonus 100 (undoubled); 1000 + 200.
    assert got == [(1000, 0, 1), (4100, 100, 2), (1200, 200, 3)]
    assert play.snap.players["ann"].score == 6300

    play = Play(snapshot(scoring=ACCURACY, streak_bonus_points=100))
    play.join("ann")
    play.command("start_session")
    got = []
    for index, answer in enumerate(["b", None, "true"]):  # the second one missed: the streak starts again
        if answer is not None:
            play.answer("ann", answer, 0)
        got.append(play.results(play.command("next"))["ann"]["points"])
        play.command("next")
        if index < 2:
            play.command("next")
    assert got == [1000, 0, 1000]


def test_teams_are_balanced_picked_in_the_lobby_and_averaged_on_the_leaderboard() -> None:
    play = Play(snapshot(scoring=ACCURACY, team_count=2))
    assert play.snap.to_json()["team_count"] == 2
    effects = play.join("ann")
    assert [e.data["team"] for e in play.emitted(effects, "team_assigned")] == [1, 1]  # to the player, to hosts
    assert play.emitted(effects, "player_joined")[0].data["team"] == 1
    play.join("bob")  # the smallest team: 2
    play.join("cat", team=1)  # picked when joining
    play.join("dan")  # 2 (two in team 1, one in team 2)
    assert {pid: p.team for pid, p in play.snap.players.items()} == {"ann": 1, "bob": 2, "cat": 1, "dan": 2}

    # What a join's ack asks the owner (the edge cannot balance teams itself).
    assert play.reply(play.command("team_of", player_id="bob")) == {"ok": True, "state": "lobby", "team": 2}
    assert play.reply(play.command("team_of", player_id="nobody"))["error"]["code"] == "not_joined"
    assert play.reply(play.command("choose_team", player_id="dan", team=1)) == {"ok": True, "state": "lobby"}
    assert play.snap.players["dan"].team == 1
    for bad, code in [(3, "invalid_payload"), (0, "invalid_payload"), ("1", "invalid_payload"),
                      (True, "invalid_payload")]:  # fmt: skip
        assert play.reply(play.command("choose_team", player_id="dan", team=bad))["error"]["code"] == code
    assert play.reply(play.command("choose_team", player_id="nobody", team=1))["error"]["code"] == "not_joined"

    play.command("start_session")
    assert play.reply(play.command("choose_team", player_id="ann", team=2))["error"]["code"] == "already_started"
    # Team 1 (ann, cat, dan): 1000, 0, 0 → 333; team 2 (bob alone): 1000.
    play.answer("ann", "b", 0)
    play.answer("bob", "b", 0)
    play.answer("cat", "a", 0)
    play.command("next")
    board = play.emitted(play.command("next"), "leaderboard")[0].data
    assert board["teams"] == [
        {"team": 2, "name": "Blue", "score": 1000, "rank": 1, "members": 1},
        {"team": 1, "name": "Red", "score": 333, "rank": 2, "members": 3},
    ]
    assert {e["player_id"]: e["team"] for e in board["top"]} == {"ann": 1, "bob": 2, "cat": 1, "dan": 1}
    # Kicked players are no longer members.
    play.command("kick_player", player_id="cat")
    play.command("kick_player", player_id="dan")
    play.command("end_session")
    assert play.snap.ended is not None
    assert [(t["team"], t["score"], t["members"]) for t in play.snap.ended["teams"]] == [(1, 1000, 1), (2, 1000, 1)]


def test_without_team_mode_nothing_about_teams_is_sent() -> None:
    play = Play(snapshot())
    effects = play.join("ann")
    assert not play.emitted(effects, "team_assigned") and "team" not in play.emitted(effects, "player_joined")[0].data
    error = play.reply(play.command("choose_team", player_id="ann", team=1))["error"]
    assert error["code"] == "no_teams"
    play.command("start_session")
    play.answer("ann", "b", 0)
    results = play.results(play.command("next"))["ann"]
    assert "team" not in results and results["points"] == 1000
    board = play.emitted(play.command("next"), "leaderboard")[0].data
    assert "teams" not in board and "team" not in board["top"][0]


def test_teams_and_scoring_survive_the_snapshot_round_trip() -> None:
    play = Play(snapshot(scoring=KAHOOT_LIKE, streak_bonus_points=300, team_count=3))
    play.join("ann", team=3)
    doc = play.snap.to_json()
    again = Snapshot.from_json(doc)
    assert again.scoring_rules() == ScoringRules(KAHOOT_LIKE, 300) and again.team_count == 3
    assert play.snap.players["ann"].scores()["team"] == 3
    # A snapshot stored before these fields existed: today's rule, no teams.
    old = {k: v for k, v in doc.items() if k not in ("scoring", "team_count")}
    assert Snapshot.from_json(old).scoring_rules() == ScoringRules() and Snapshot.from_json(old).team_count is None


# -- the payload models -------------------------------------------------------------


@given(
    mode=st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans()),
    bonus=st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.floats(), st.text(max_size=5)),
    teams=st.one_of(st.integers(min_value=-(10**12), max_value=10**12), st.floats(), st.text(max_size=5)),
)
def test_the_session_body_accepts_only_known_modes_and_sizes_in_range(mode: Any, bonus: Any, teams: Any) -> None:
    body = {"scoring": mode, "streak_bonus": True, "streak_bonus_points": bonus, "team_count": teams}
    valid = (
        mode in scoring.SCORING_MODES
        and type(bonus) is int
        and 1 <= bonus <= scoring.MAX_STREAK_BONUS_POINTS
        and type(teams) is int
        and scoring.MIN_TEAMS <= teams <= scoring.MAX_TEAMS
    )
    if valid:
        parsed = LiveSessionCreate.model_validate(body)
        assert (parsed.scoring, parsed.stored_streak_bonus(), parsed.team_count) == (mode, bonus, teams)
    else:
        with pytest.raises(ValidationError):
            LiveSessionCreate.model_validate(body)


@pytest.mark.parametrize(
    "body",
    [
        {"scoring": "kahoot"}, {"scoring": "speed\x00"}, {"scoring": "SPEED"}, {"team_count": 0},
        {"team_count": 1}, {"team_count": 11}, {"team_count": 10**30}, {"team_count": "2"}, {"team_count": 2.0},
        {"streak_bonus": True, "streak_bonus_points": 0}, {"streak_bonus": True, "streak_bonus_points": -1},
        {"streak_bonus": True, "streak_bonus_points": 1001}, {"streak_bonus": "yes"}, {"streak_bonus": 1},
        {"teams": 2},
    ],
)  # fmt: skip
def test_bad_session_settings_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LiveSessionCreate.model_validate(body)


def test_session_settings_default_to_todays_game() -> None:
    parsed = LiveSessionCreate.model_validate({})
    assert (parsed.scoring, parsed.stored_streak_bonus(), parsed.team_count) == ("speed", 0, None)
    assert LiveSessionCreate.model_validate({"streak_bonus": True}).stored_streak_bonus() == 100
    # The size without the switch is ignored, not an error.
    assert LiveSessionCreate.model_validate({"streak_bonus_points": 300}).stored_streak_bonus() == 0


@given(team=st.one_of(st.integers(min_value=-(10**20), max_value=10**20), st.text(max_size=5), st.floats(), st.none()))
def test_team_payloads_take_a_small_whole_number(team: Any) -> None:
    valid = type(team) is int and 1 <= team <= scoring.MAX_TEAMS
    join = {"pin": "123456", "nickname": "Ann", "team": team}
    if valid or team is None:
        assert JoinSession.model_validate(join).team == team
    else:
        with pytest.raises(ValidationError):
            JoinSession.model_validate(join)
    if valid:
        assert ChooseTeam.model_validate({"team": team}).team == team
    else:
        with pytest.raises(ValidationError):
            ChooseTeam.model_validate({"team": team})


def test_join_session_stays_compatible_and_double_points_is_authored_strictly() -> None:
    assert JoinSession.model_validate({"pin": "123456", "nickname": "Ann"}).team is None
    question = {"text": "Q", "question_type": "true_false", "correct_answer": True}
    assert QuizQuestionCreate.model_validate(question).double_points is False
    assert QuizQuestionCreate.model_validate(question | {"double_points": True}).double_points is True
    for bad in ("yes", 1, None, "\x00"):
        with pytest.raises(ValidationError):
            QuizQuestionCreate.model_validate(question | {"double_points": bad})
    with pytest.raises(ValidationError):
        QuizQuestionUpdate.model_validate({"double_points": None})


def test_the_host_sets_or_ends_team_mode_in_the_lobby() -> None:
    play = Play(snapshot())
    for pid in ("ann", "bob", "cat"):
        play.join(pid)
    effects = play.command("set_teams", team_count=2)
    assert play.reply(effects) == {"ok": True, "state": "lobby"}
    assert play.emitted(effects, "teams_changed")[0].data == {
        "team_count": 2, "teams": [{"team": 1, "name": "Red"}, {"team": 2, "name": "Blue"}],
    }  # fmt: skip
    assert any(isinstance(e, machine.TeamsChanged) and e.team_count == 2 for e in effects)
    assert {pid: p.team for pid, p in play.snap.players.items()} == {"ann": 1, "bob": 2, "cat": 1}
    assert {e.data["player_id"]: e.data["team"] for e in play.emitted(effects, "team_assigned") if e.to == "hosts"} == {
        "ann": 1, "bob": 2, "cat": 1,
    }  # fmt: skip
    play.join("dan")  # a later player: the smallest team
    assert play.snap.players["dan"].team == 2
    for bad in (1, 11, 0, "2", True, 2.0):
        assert play.reply(play.command("set_teams", team_count=bad))["error"]["code"] == "invalid_payload"
    effects = play.command("set_teams", team_count=None)
    assert play.snap.team_count is None and all(p.team is None for p in play.snap.players.values())
    assert play.emitted(effects, "teams_changed")[0].data == {"team_count": None, "teams": []}
    play.command("set_teams", team_count=3)
    play.command("start_session")
    assert play.reply(play.command("set_teams", team_count=2))["error"]["code"] == "already_started"
    assert play.snap.team_count == 3


@given(count=st.one_of(st.integers(min_value=-(10**20), max_value=10**20), st.text(max_size=4), st.floats()))
def test_set_teams_takes_a_count_in_range_or_null(count: Any) -> None:
    from realtime.live.namespace import SetTeams

    valid = type(count) is int and scoring.MIN_TEAMS <= count <= scoring.MAX_TEAMS
    if valid:
        assert SetTeams.model_validate({"team_count": count}).team_count == count
    else:
        with pytest.raises(ValidationError):
            SetTeams.model_validate({"team_count": count})
    assert SetTeams.model_validate({"team_count": None}).team_count is None
    with pytest.raises(ValidationError):
        SetTeams.model_validate({})


def test_balancing_follows_kicks_picks_and_a_new_owner() -> None:
    play = Play(snapshot(team_count=3))
    for n in range(30):
        play.join(f"p{n}")

    def sizes(snap: Snapshot) -> dict[int | None, int]:
        counted: dict[int | None, int] = {}
        for p in snap.players.values():
            if p.active:
                counted[p.team] = counted.get(p.team, 0) + 1
        return counted

    assert sizes(play.snap) == {1: 10, 2: 10, 3: 10}
    for pid in ("p0", "p3", "p6"):  # team 1 (placed in turn: 1, 2, 3, 1, ...)
        play.command("kick_player", player_id=pid)
    for n in range(30, 33):
        play.join(f"p{n}")
    assert sizes(play.snap) == {1: 10, 2: 10, 3: 10}
    assert {play.snap.players[f"p{n}"].team for n in range(30, 33)} == {1}
    play.command("choose_team", player_id="p1", team=3)  # 2 now has 9
    play.join("p33")
    assert play.snap.players["p33"].team == 2
    # A new owner counts from the players it loads.
    again = Snapshot.from_json(play.snap.to_json())
    again.players = play.snap.players
    again.questions, again.rules = play.snap.questions, play.snap.rules
    play = Play(again)
    play.join("p34")
    assert play.snap.players["p34"].team == 1 and sizes(play.snap) == {1: 11, 2: 10, 3: 11}


class TeamGame(Game):
    """The machine's random games (tests/test_live_machine.py) in team mode, with team picks and changes."""

    def __init__(self) -> None:
        super().__init__()
        self.snap.team_count = 3

    @precondition(lambda self: self.players)
    @rule(data=st.data(), team=st.one_of(st.integers(min_value=-1, max_value=4), st.just("2"), st.none()))
    def choose_team(self, data: st.DataObject, team: Any) -> None:
        pid = data.draw(st.sampled_from([*self.players, "nobody"]))
        self.apply(Command(self.mail_id(), "choose_team", {"player_id": pid, "team": team}, "i", f"r{self.mail}"))

    @rule(count=st.one_of(st.none(), st.integers(min_value=0, max_value=11)))
    def set_teams(self, count: int | None) -> None:
        self.apply(Command(self.mail_id(), "set_teams", {"team_count": count}, "i", f"r{self.mail}"))

    @invariant()
    def every_player_is_in_one_team_of_the_session(self) -> None:
        active = [p for p in self.snap.players.values() if p.active]
        if self.snap.team_count:
            assert all(p.team is not None and 1 <= p.team <= self.snap.team_count for p in active)
        else:
            assert all(p.team is None for p in self.snap.players.values())

    @invariant()
    def the_team_board_averages_the_active_members(self) -> None:
        board = self.snap.team_board()
        active = [p for p in self.snap.players.values() if p.active]
        assert sum(t["members"] for t in board) == (len(active) if self.snap.team_count else 0)
        for entry in board:
            scores = [p.score for p in active if p.team == entry["team"]]
            assert entry["score"] == (int(Fraction(sum(scores), len(scores)) + Fraction(1, 2)) if scores else 0)
        if self.snap.team_sizes is not None and self.snap.team_count:
            for team in range(1, self.snap.team_count + 1):
                assert self.snap.team_sizes[team] == sum(1 for p in active if p.team == team)


TeamGame.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_random_team_games = TeamGame.TestCase


def test_partial_credit_is_the_graders_share_of_what_the_mode_gives() -> None:
    share = Decimal("0.7")
    assert points_for(2, correct=True, elapsed_ms=0, time_limit_ms=T, share=share) == 1400
    assert points_for(2, correct=True, elapsed_ms=T, time_limit_ms=T, share=share) == 700
    assert points_for(2, correct=True, elapsed_ms=0, time_limit_ms=T, mode=KAHOOT_LIKE, share=share) == 700
    assert points_for(2, correct=True, elapsed_ms=T, time_limit_ms=T, mode=ACCURACY, share=share, double=True) == 2800
    # Not fully correct: no streak, so no bonus.
    rules = ScoringRules(ACCURACY, 100)
    assert award(1, share=Decimal("0.5"), correct=True, elapsed_ms=0, time_limit_ms=T, rules=rules, streak=0) == (
        500,
        0,
    )
