"""The live session's state machine (realtime/live/machine.py), pure: no Redis, no PostgreSQL, no clock.

A hypothesis state machine plays random games: players join, leave, answer
(right, wrong, malformed, twice, late), hosts send any command in any state
(kicks included), and the clock jumps. The test stands in for the shell: it
records answers as the edge's script would (once per player and question,
only while the gate is open) and answers every ``CloseGate`` with the
answers it recorded. After every step the invariants of the issue hold.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from lms.quizzes.grading import GradableQuestion, grade
from realtime.live import machine
from realtime.live.machine import (
    NEXT,
    Closed,
    CloseGate,
    Emit,
    EmitEach,
    Finished,
    Now,
    Persist,
    Persisted,
    Player,
    Question,
    Recorded,
    Reply,
    Rules,
    Scored,
    Snapshot,
    State,
    transition,
)

pytestmark = pytest.mark.no_services

T0 = 1_900_000_000_000
LIMIT_MS = 10_000
GRACE_MS = 250

QUESTIONS = [
    Question("q0", "Pick b", "single_choice", [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}], "b", Decimal(1)),
    Question(
        "q1", "Pick a and c", "multiple_choice",
        [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}, {"id": "c", "text": "C"}], ["a", "c"], Decimal(2),
    ),
    Question(
        "q2", "True?", "true_false", [{"id": "true", "text": "T"}, {"id": "false", "text": "F"}], True, Decimal(1)
    ),
    Question("q3", "Capital of France", "short_answer", [], ["Paris"], Decimal("0.5")),
]  # fmt: skip

ANSWERS: dict[str, list[Any]] = {
    "single_choice": ["a", "b", "zz"],
    "multiple_choice": [["a", "c"], ["c", "a"], ["a"], ["a", "b", "c"]],
    "true_false": ["true", "false"],
    "short_answer": ["paris", "  PARIS ", "Lyon", "p"],
}
COMMANDS = ["start_session", "next", "end_session", "lock_session", "unlock_session", "kick_player", "bogus"]


def new_snapshot(questions: list[Question] = QUESTIONS) -> Snapshot:
    session = {
        "id": "s1", "pin": "123456", "quiz_id": "quiz", "quiz_title": "Quiz", "allow_guests": True,
        "question_time_limit_seconds": LIMIT_MS // 1000,
    }  # fmt: skip
    snap = Snapshot.new(session, len(questions), T0)
    snap.questions = list(questions)
    snap.rules = Rules(
        answer_grace_ms=GRACE_MS, idle_end_seconds=3600, results_base_url="http://x/api/v1/live-sessions"
    )
    return snap


class Game(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.snap = new_snapshot()
        self.now = T0
        self.mono = 0.0
        self.mail = 0
        self.players: list[str] = []
        # What the edge's answer script recorded, per question index.
        self.recorded: dict[int, dict[str, Recorded]] = {}
        self.scored: dict[int, dict[str, Any]] = {}
        self.previous_scores: dict[str, int] = {}
        self.results_points: dict[str, int] = {}
        self.states = [self.snap.state]
        self.effects: list[Any] = []
        self.finished = False

    # -- the shell's part ---------------------------------------------------

    def clock(self) -> Now:
        return Now(self.now, self.mono)

    def apply(self, message: machine.Message) -> None:
        before = self.snap.state
        self.snap, effects = transition(self.snap, message, self.clock())
        self.check_move(before, effects)
        for effect in effects:
            self.effects.append(effect)
            if isinstance(effect, CloseGate):
                self.apply(Closed(effect.index, dict(self.recorded.get(effect.index, {}))))
            elif isinstance(effect, Scored):
                assert effect.index not in self.scored, "a question scored twice"
                self.scored[effect.index] = effect.answers
                # Only answers the gate let through are scored, once per player.
                assert set(effect.answers) <= set(self.recorded.get(effect.index, {}))
            elif isinstance(effect, EmitEach) and effect.event == "answer_result":
                for pid, result in effect.by_player.items():
                    self.results_points[pid] = self.results_points.get(pid, 0) + result["points"]
                    assert result["total_score"] == self.snap.players[pid].score
            elif isinstance(effect, Persist):
                self.apply(Persisted(self.snap.results[-1]["index"] if self.snap.results else -1, effect.final))
            elif isinstance(effect, Finished):
                self.finished = True

    def check_move(self, before: State, effects: list[Any]) -> None:
        after = self.snap.state
        if after == before:
            return
        if before == State.QUESTION and after == State.ENDED:
            # A question open when the session ends is revealed first, in the same step.
            events = [e.event for e in effects if isinstance(e, Emit)]
            assert (
                events.index("question_ended") < events.index("session_ended")
                if "session_ended" in events
                else ("question_ended" in events)
            )
            self.states += [State.REVEAL, State.ENDED]
        else:
            assert after in NEXT[before]
            self.states.append(after)

    def mail_id(self) -> str:
        self.mail += 1
        return f"{self.mail}-0"

    # -- rules --------------------------------------------------------------

    @rule(name=st.text(alphabet="abc", min_size=1, max_size=3))
    def join(self, name: str) -> None:
        pid = f"p{len(self.players)}"
        self.players.append(pid)
        self.apply(machine.Arrived(self.mail_id(), pid, Player(pid, name, None, self.now)))

    @precondition(lambda self: self.players)
    @rule(data=st.data())
    def leave_or_return(self, data: st.DataObject) -> None:
        pid = data.draw(st.sampled_from(self.players))
        message = machine.Departed if data.draw(st.booleans()) else machine.Arrived
        self.apply(message(self.mail_id(), pid))

    @precondition(lambda self: self.players)
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """The edge's answer script: open gate, in time, not kicked, first answer only."""
        pid = data.draw(st.sampled_from(self.players))
        snap = self.snap
        if snap.state != State.QUESTION or snap.closing is not None:
            return
        assert snap.deadline is not None
        if self.now > snap.deadline + GRACE_MS or not snap.players[pid].active:
            return
        question = QUESTIONS[snap.question_index]
        answer = data.draw(st.sampled_from(ANSWERS[question.question_type]))
        self.recorded.setdefault(snap.question_index, {}).setdefault(pid, Recorded(self.now, answer))

    @rule(name=st.sampled_from(COMMANDS), data=st.data())
    def command(self, name: str, data: st.DataObject) -> None:
        args: dict[str, Any] = {}
        if name == "kick_player":
            args["player_id"] = data.draw(st.sampled_from([*self.players, "nobody"]))
        self.apply(machine.Command(self.mail_id(), name, args, instance="i", request=f"r{self.mail}"))
        replies = [e for e in self.effects if isinstance(e, Reply) and e.request == f"r{self.mail}"]
        assert len(replies) == 1, "every host command is answered once"

    @rule(ms=st.integers(min_value=0, max_value=LIMIT_MS + 2 * GRACE_MS))
    def time_passes(self, ms: int) -> None:
        self.now += ms
        self.mono += ms / 1000
        answered = len(self.recorded.get(self.snap.question_index, {})) if self.snap.state == State.QUESTION else 0
        self.apply(machine.Tick(answered, len(self.snap.connected), everyone_answered=False))
        self.apply(machine.Timers())

    # -- invariants ---------------------------------------------------------

    @invariant()
    def scores_never_decrease(self) -> None:
        for pid, player in self.snap.players.items():
            assert player.score >= self.previous_scores.get(pid, 0)
            self.previous_scores[pid] = player.score

    @invariant()
    def scores_are_the_points_announced_and_stored(self) -> None:
        for pid, player in self.snap.players.items():
            assert player.score == self.results_points.get(pid, 0)
            stored = sum(scored[pid].points for scored in self.scored.values() if pid in scored)
            assert player.score == stored

    @invariant()
    def ranks_are_competition_ranks(self) -> None:
        ranked = [p for p in self.snap.players.values() if p.active and p.rank is not None]
        for player in ranked:
            assert player.rank == 1 + sum(1 for other in ranked if other.score > player.score)
        assert all(p.rank is None for p in self.snap.players.values() if not p.active)

    @invariant()
    def states_in_protocol_order(self) -> None:
        path = [s for i, s in enumerate(self.states) if i == 0 or s != self.states[i - 1]]
        for before, after in itertools.pairwise(path):
            assert after in NEXT[before]
        assert self.snap.closing is None

    @invariant()
    def the_snapshot_round_trips(self) -> None:
        doc = self.snap.to_json()
        again = Snapshot.from_json(doc)
        assert again.to_json() == doc

    @invariant()
    def verdicts_are_the_graders(self) -> None:
        for index, scored in self.scored.items():
            question = QUESTIONS[index]
            for pid, verdict in scored.items():
                answer = self.recorded[index][pid].answer
                assert verdict.correct == _self_paced_verdict(question, answer)


Game.TestCase.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
test_random_games = Game.TestCase


def _self_paced_verdict(question: Question, answer: Any) -> bool:
    graded = grade(
        [GradableQuestion(question.id, question.question_type, question.correct_answer, question.points)],
        {question.id: answer},
        Decimal(50),
    )
    return bool(graded.results[0]["is_correct"])


# -- one grader ----------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(QUESTIONS) - 1),
    answer=st.one_of(
        st.sampled_from([a for answers in ANSWERS.values() for a in answers]),
        JSONISH,
        st.lists(st.sampled_from(["a", "b", "c", "true", "false"]), max_size=4),
    ),
)
def test_live_and_self_paced_give_the_same_verdict(index: int, answer: Any) -> None:
    """Every question type, any answer: the live question's verdict is the self-paced attempt's."""
    question = QUESTIONS[index]
    snap = new_snapshot([question])
    now = Now(T0, 0.0)
    snap, _ = transition(snap, machine.Arrived("1-0", "p", Player("p", "P", None, T0)), now)
    snap, effects = transition(snap, machine.Command("2-0", "start_session", {}), now)
    assert snap.state == State.QUESTION
    snap, effects = transition(snap, machine.Command("3-0", "next", {}), now)
    assert effects == [CloseGate(0)]
    snap, effects = transition(snap, Closed(0, {"p": Recorded(T0 + 1000, answer)}), now)
    scored = next(e for e in effects if isinstance(e, Scored))
    result = next(e for e in effects if isinstance(e, EmitEach) and e.event == "answer_result")
    assert scored.answers["p"].correct == result.by_player["p"]["correct"] == _self_paced_verdict(question, answer)
    assert scored.answers["p"].points == result.by_player["p"]["points"]


def test_a_question_open_at_the_end_is_revealed_then_the_session_ends() -> None:
    snap = new_snapshot()
    now = Now(T0, 0.0)
    snap, _ = transition(snap, machine.Arrived("1-0", "p", Player("p", "P", None, T0)), now)
    snap, _ = transition(snap, machine.Command("2-0", "start_session", {}), now)
    snap, effects = transition(snap, machine.Command("3-0", "end_session", {}, instance="i", request="r"), now)
    assert effects == [CloseGate(0)] and snap.closing is not None
    with pytest.raises(RuntimeError):
        transition(snap, machine.Timers(), now)
    snap, effects = transition(snap, Closed(0, {"p": Recorded(T0, "b")}), now)
    events = [e.event for e in effects if isinstance(e, Emit | EmitEach)]
    assert events == ["question_ended", "answer_result"]
    assert snap.state == State.ENDED and snap.ended_reason == "host"
    reply = next(e for e in effects if isinstance(e, Reply))
    assert reply.result == {"ok": True, "state": "ended"}
    assert [e for e in effects if isinstance(e, Persist)] == [Persist(final=False), Persist(final=True)]
    # Announced only once stored.
    snap, effects = transition(snap, Persisted(0, final=True), now)
    assert [e.event for e in effects if isinstance(e, Emit | EmitEach)] == ["session_ended", "final_result"]
    assert effects[-1] == Finished()


@settings(max_examples=500, deadline=None)
@given(
    points=st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
    limit=st.integers(min_value=1, max_value=600_000),
    elapsed=st.integers(min_value=-1000, max_value=700_000),
)
@example(points=Decimal("102.512"), limit=102512, elapsed=11787)  # exactly 96618.5: rounds up
def test_points_by_time_are_the_protocols_formula(points: Decimal, limit: int, elapsed: int) -> None:
    """round(points × 1000 × (1 − elapsed / time_limit / 2)), halves up, elapsed clamped: exactly.

    The reference is exact rational arithmetic: a Decimal quotient is rounded to 28 digits and
    turned 96618.5 into 96618.4999… (found by this test)."""
    from fractions import Fraction

    from lms.live.scoring import points_for

    clamped = min(max(elapsed, 0), limit)
    exact = Fraction(points) * 1000 * (1 - Fraction(clamped, limit) / 2)
    assert points_for(points, correct=True, elapsed_ms=elapsed, time_limit_ms=limit) == math.floor(
        exact + Fraction(1, 2)
    )
    assert points_for(points, correct=False, elapsed_ms=elapsed, time_limit_ms=limit) == 0
