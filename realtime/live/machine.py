"""A live session as a pure state machine: ``transition(snapshot, message, now) -> (snapshot, effects)``.

Nothing here does I/O. The actor (:mod:`realtime.live.actor`) is the shell
around it: it loads a :class:`Snapshot` from Redis, turns what it reads (the
mailbox, the tick, the presence set, the answers recorded when a question's
gate closes) into messages, applies them, and carries out the effects in
order: events to publish, replies to host commands, Redis writes to commit
(fenced by the lease), results to store in PostgreSQL.

States follow the live protocol's order (realtime/README.md) and nothing else: ``lobby`` → ``question`` →
``reveal`` → ``leaderboard`` → ``question`` … → ``ended``; ``lobby``,
``reveal`` and ``leaderboard`` may go straight to ``ended`` (a question that
is open when the session ends is closed and revealed first). :data:`NEXT`
is that table, and :func:`transition` never leaves it.

A question is scored once, when its gate closes (:class:`CloseGate` →
:class:`Closed`): each player's points come from the one grader
(:func:`lms.quizzes.grading.fraction`: partial credit is a share of the
points) and the live scoring by time
(:func:`lms.live.scoring.points_for`), and what was computed is what is
stored (:class:`Scored`) and later written to PostgreSQL.

``transition`` updates the snapshot it is given and returns it: copying ten
thousand players per message would cost more than the game.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from lms.live import questions, scoring
from lms.live.scoring import ScoringRules
from lms.quizzes.grading import fraction
from lms.quizzes.question_types import POLL, SLIDER, UNGRADED, public_settings
from realtime.live.errors import LiveError
from realtime.live.snapshots import buttons_question

SNAPSHOT_VERSION = 1
IDLE_WAKE_MS = 1000
KICK_REASON = "The host removed you from this session."
BAN_REASON = "The host removed you from this session for good."


class State(StrEnum):
    LOBBY = "lobby"
    QUESTION = "question"
    REVEAL = "reveal"
    LEADERBOARD = "leaderboard"
    ENDED = "ended"


# The protocol's order: the only moves transition() makes.
NEXT: dict[State, frozenset[State]] = {
    State.LOBBY: frozenset({State.QUESTION, State.ENDED}),
    State.QUESTION: frozenset({State.REVEAL}),
    State.REVEAL: frozenset({State.LEADERBOARD, State.ENDED}),
    State.LEADERBOARD: frozenset({State.QUESTION, State.ENDED}),
    State.ENDED: frozenset(),
}


# -- what the machine knows ------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The settings a session runs by (lms.config.LiveSettings, the public base URL)."""

    answer_grace_ms: int = 250
    answer_count_interval_ms: int = 100
    player_count_interval_ms: int = 500
    reveal_seconds: float = 0.0
    leaderboard_seconds: float = 0.0
    idle_end_seconds: float = 600.0
    leaderboard_size: int = 10
    results_base_url: str = ""


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    question_type: str
    options: list[dict[str, str]]
    correct_answer: Any
    points: Decimal
    settings: dict[str, Any] | None = None
    time_limit_ms: int | None = None  # the question's own, instead of the session's
    media: dict[str, Any] | None = None
    double_points: bool = False

    def public(self, index: int, total: int, time_limit_ms: int) -> dict[str, Any]:
        return {
            "index": index, "total": total, "text": self.text, "question_type": self.question_type,
            "options": self.options, "time_limit_ms": time_limit_ms,
            "settings": public_settings(self.question_type, self.settings), "media": self.media,
        }  # fmt: skip


@dataclass
class Player:
    id: str
    nickname: str
    user_id: str | None
    joined_at: int
    score: int = 0
    streak: int = 0
    correct: int = 0
    rank: int | None = None
    kicked_at: int | None = None
    team: int | None = None  # team mode: 1..team_count

    @property
    def active(self) -> bool:
        return self.kicked_at is None

    def scores(self) -> dict[str, Any]:
        return {
            "score": self.score, "streak": self.streak, "correct": self.correct, "rank": self.rank, "team": self.team,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Recorded:
    """An answer the edge accepted: when (session clock, ms) and what."""

    accepted_at: int
    answer: Any


@dataclass(frozen=True)
class ScoredAnswer:
    """One player's answer to one question as scored: what PostgreSQL stores, computed once."""

    correct: bool
    points: int

    def encode(self) -> str:
        return f"{int(self.correct)}:{self.points}"

    @classmethod
    def decode(cls, value: str) -> ScoredAnswer:
        correct, _, points = value.partition(":")
        return cls(correct == "1", int(points))


@dataclass
class Counts:
    """Connected and answered counts, and when they were last sent (rates are wall-clock, monotonic)."""

    connected: int = 0
    answered: int = 0
    everyone_answered: bool = False
    count_due: bool = False
    count_sent: int | None = None
    count_sent_at: float = float("-inf")
    answers_sent: tuple[int, int] | None = None
    answers_sent_at: float = float("-inf")
    tallies: dict[str, int] = field(default_factory=dict)


# Snapshot fields kept in Redis (the ``snap`` key, JSON): the same document as before the machine.
PERSISTED = (
    "v", "id", "pin", "quiz_id", "quiz_title", "allow_guests", "time_limit_ms", "total_questions", "state",
    "question_index", "question", "started_at", "deadline", "locked", "advance_at", "reveal", "leaderboard",
    "ended", "mailbox_id", "scored_upto", "persisted_upto", "results", "last_activity", "ended_reason",
    "persisted_end", "scoring", "team_count", "free_nicknames", "player_view",
)  # fmt: skip


@dataclass
class Snapshot:
    """Everything a session's owner knows: the persisted document, the quiz, the players, the counts."""

    id: str
    pin: str
    quiz_id: str
    quiz_title: str
    allow_guests: bool
    time_limit_ms: int
    total_questions: int
    v: int = SNAPSHOT_VERSION
    state: State = State.LOBBY
    question_index: int = -1
    question: dict[str, Any] | None = None
    started_at: int | None = None
    deadline: int | None = None
    locked: bool = False
    advance_at: int | None = None
    reveal: dict[str, Any] | None = None
    leaderboard: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None
    mailbox_id: str = "0-0"
    scored_upto: int = -1
    persisted_upto: int = -1
    results: list[dict[str, Any]] = field(default_factory=list)
    last_activity: int = 0
    ended_reason: str | None = None
    persisted_end: bool = False
    # How points are awarded (lms.live.scoring.ScoringRules.public()) and the team count (None: no teams).
    scoring: dict[str, Any] = field(default_factory=lambda: ScoringRules().public())
    team_count: int | None = None
    # The host's options (set_session_options): False gives every new player a generated name;
    # "buttons" sends players only what the answer buttons need (realtime/live/snapshots.py).
    free_nicknames: bool = True
    player_view: str = "full"
    # Not persisted as such: the quiz (from PostgreSQL), players (their own hashes), counts.
    rules: Rules = field(default_factory=Rules)
    questions: list[Question] = field(default_factory=list)
    players: dict[str, Player] = field(default_factory=dict)
    connected: set[str] = field(default_factory=set)
    counts: Counts = field(default_factory=Counts)
    # Team mode: the team each player is counted in, and the counts (rebuilt from the players when None):
    # placing thousands of joining players stays linear.
    team_sizes: Counter[int] | None = None
    counted_team: dict[str, int] = field(default_factory=dict)
    # Set while a question's gate is closing: what to do once its answers are in.
    closing: list[Effect | str] | None = None
    changed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in PERSISTED}

    def encode(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def from_json(cls, doc: dict[str, Any], **extra: Any) -> Snapshot:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known and k in PERSISTED}
        values["state"] = State(values.get("state", State.LOBBY))
        for optional in ("ended_reason",):
            values.setdefault(optional, None)
        return cls(**values, **extra)

    @classmethod
    def new(cls, session: dict[str, Any], total_questions: int, now: int) -> Snapshot:
        return cls(
            id=str(session["id"]), pin=session["pin"], quiz_id=str(session["quiz_id"]),
            quiz_title=session["quiz_title"], allow_guests=session["allow_guests"],
            time_limit_ms=session["question_time_limit_seconds"] * 1000, total_questions=total_questions,
            last_activity=now, scoring=scoring.ScoringRules.of(session).public(), team_count=session.get("team_count"),
        )  # fmt: skip

    def active(self) -> dict[str, Player]:
        return {pid: p for pid, p in self.players.items() if p.active}

    def scoring_rules(self) -> ScoringRules:
        return ScoringRules.of(self.scoring)

    def team_board(self) -> list[dict[str, Any]]:
        """The team leaderboard (empty without team mode): the average score of each team's active players."""
        members = ((p.team, p.score) for p in self.players.values() if p.active)
        return scoring.team_standings(self.team_count, members)

    def gate(self) -> dict[str, Any]:
        """What the answer and join scripts read (the ``gate`` hash)."""
        question = self.question or {}
        return {
            "status": self.state.value,
            "qi": self.question_index,
            "deadline": self.deadline or 0,
            "qtype": question.get("question_type", ""),
            "opts": json.dumps([o["id"] for o in question.get("options", [])]),
            "locked": "1" if self.locked else "0",
            "names": "free" if self.free_nicknames else "assigned",
            # A slider's [min, max, step]: the answer script refuses values off the slider.
            "range": json.dumps(_range(question)),
        }


def _range(question: dict[str, Any]) -> list[float]:
    bounds = question.get("settings") or {}
    if question.get("question_type") != SLIDER or not bounds:
        return []
    return [bounds["min"], bounds["max"], bounds["step"]]


def initial_gate() -> dict[str, Any]:
    return {
        "status": State.LOBBY.value, "qi": -1, "deadline": 0, "qtype": "", "opts": "[]", "locked": "0", "range": "[]"
    }  # fmt: skip


# -- messages --------------------------------------------------------------------


@dataclass(frozen=True)
class Now:
    ms: int  # the session clock (Redis TIME, or the test clock): deadlines and points
    monotonic: float  # this process's clock (seconds): rates of counts


@dataclass(frozen=True)
class Arrived:
    """A player joined or came back (mailbox); ``player`` is its record when the machine did not know it."""

    message_id: str
    player_id: str
    player: Player | None = None


@dataclass(frozen=True)
class Departed:
    message_id: str
    player_id: str


@dataclass(frozen=True)
class Command:
    message_id: str
    name: str
    args: dict[str, Any]
    # Who waits for the result (an instance and its request id); empty when nobody does.
    instance: str = ""
    request: str = ""


@dataclass(frozen=True)
class Noticed:
    """Any other mailbox message (a host arrived): activity, nothing else."""

    message_id: str


@dataclass(frozen=True)
class Presence:
    """The players the presence set counts as connected now (a dead instance's drop out)."""

    current: frozenset[str]


@dataclass(frozen=True)
class Tick:
    """Counts read from Redis at the start of a step (before its mailbox messages)."""

    answered: int
    connected: int
    everyone_answered: bool
    tallies: dict[str, int] = field(default_factory=dict)  # a poll's answers so far


@dataclass(frozen=True)
class Timers:
    """The end of a step: the deadline, auto-advance and idle end, and the counts' rates."""


@dataclass(frozen=True)
class End:
    """End the session for a reason of the shell's (``abandoned``: nobody ran it for too long)."""

    reason: str


@dataclass(frozen=True)
class Closed:
    """The gate of question ``index`` is closed; these are the answers it let through."""

    index: int
    answers: dict[str, Recorded]
    # Players who answered but whom the machine did not know yet.
    players: dict[str, Player] = field(default_factory=dict)


@dataclass(frozen=True)
class Persisted:
    """Results up to question ``upto`` are in PostgreSQL (and, if ``final``, the session's end)."""

    upto: int
    final: bool


Message = Arrived | Departed | Command | Noticed | Presence | Tick | Timers | End | Closed | Persisted


# -- effects ---------------------------------------------------------------------


@dataclass(frozen=True)
class Emit:
    """An event to ``all``, ``hosts``, ``players`` or ``player:<id>`` of the session."""

    to: str
    event: str
    data: dict[str, Any]


@dataclass(frozen=True)
class EmitEach:
    """One event per player, each with its own payload."""

    event: str
    by_player: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Detach:
    """A kicked player's connections leave the session (and, if banned, may not join again)."""

    player_id: str
    banned: bool = False


@dataclass(frozen=True)
class Reply:
    instance: str
    request: str
    result: dict[str, Any]


@dataclass(frozen=True)
class CloseGate:
    """Close question ``index`` to answers (fenced), read what it recorded, then send :class:`Closed`."""

    index: int


@dataclass(frozen=True)
class Kicked:
    """Mark the player kicked in Redis (the answer script refuses it; the join script a banned one)."""

    player_id: str
    # Banned: its token and account may not join again. Not banned: its nickname is free again.
    banned: bool = False
    nickname: str = ""


@dataclass(frozen=True)
class ScoresChanged:
    player_ids: frozenset[str]


@dataclass(frozen=True)
class Scored:
    """Question ``index`` as scored, per answering player: committed with the step, stored as is."""

    index: int
    answers: dict[str, ScoredAnswer]


@dataclass(frozen=True)
class MarkRunning:
    pass


@dataclass(frozen=True)
class TeamsChanged:
    """The host changed the team count in the lobby: store it in PostgreSQL (the results read it there)."""

    team_count: int | None


@dataclass(frozen=True)
class Persist:
    """Store the results of ended questions (and, if ``final``, the session) in PostgreSQL; then :class:`Persisted`."""

    final: bool


@dataclass(frozen=True)
class Finished:
    pass


Effect = (
    Emit
    | EmitEach
    | Detach
    | Reply
    | CloseGate
    | Kicked
    | ScoresChanged
    | Scored
    | MarkRunning
    | TeamsChanged
    | Persist
    | Finished
)


# -- the machine -------------------------------------------------------------------


def transition(snap: Snapshot, message: Message, now: Now) -> tuple[Snapshot, list[Effect]]:
    """Apply one message; the effects are to be carried out in order."""
    out: list[Effect] = []
    if snap.closing is not None and not isinstance(message, Closed):
        raise RuntimeError("a question's gate is closing: send Closed before anything else")
    if isinstance(message, Arrived | Departed | Command | Noticed):
        snap.mailbox_id = message.message_id
        snap.last_activity = now.ms
        snap.changed = True
    if isinstance(message, Arrived):
        if message.player is not None and message.player_id not in snap.players:
            snap.players[message.player_id] = message.player
        _arrived(snap, message.player_id, out)
    elif isinstance(message, Departed):
        _left(snap, message.player_id, out)
    elif isinstance(message, Command):
        _command(snap, message, now, out)
    elif isinstance(message, Presence):
        current = {p for p in message.current if p in snap.players and snap.players[p].active}
        for pid in sorted(current - snap.connected):
            _arrived(snap, pid, out)
        for pid in sorted(snap.connected - current):
            _left(snap, pid, out)
    elif isinstance(message, Tick):
        _tick(snap, message, now)
    elif isinstance(message, Timers):
        _timers(snap, now, out)
    elif isinstance(message, End):
        if snap.state != State.ENDED:
            _end(snap, message.reason, now, out)
    elif isinstance(message, Closed):
        _closed(snap, message, now, out)
    elif isinstance(message, Persisted):
        _persisted(snap, message, out)
    _counts(snap, now, out)
    return snap, out


def wake_in(snap: Snapshot, now: Now) -> int:
    """How long (ms) the shell may wait for mail before the next timer is due; never long."""
    wait: float = IDLE_WAKE_MS
    if snap.state == State.QUESTION and snap.deadline is not None:
        closes_in = snap.deadline + snap.rules.answer_grace_ms + 1 - now.ms
        wait = min(snap.rules.answer_count_interval_ms, closes_in)
    if snap.advance_at:
        wait = min(wait, snap.advance_at - now.ms)
    if snap.counts.count_due:
        due_in = snap.counts.count_sent_at + snap.rules.player_count_interval_ms / 1000 - now.monotonic
        wait = min(wait, due_in * 1000)
    return max(1, int(wait))


def _move(snap: Snapshot, to: State) -> None:
    if to not in NEXT[snap.state]:
        raise RuntimeError(f"no move from {snap.state} to {to}")
    snap.state = to
    snap.changed = True


def _arrived(snap: Snapshot, pid: str, out: list[Effect]) -> None:
    player = snap.players.get(pid)
    if player is None or not player.active or pid in snap.connected:
        return
    snap.connected.add(pid)
    snap.counts.count_due = True
    joined: dict[str, Any] = {"player_id": pid, "nickname": player.nickname}
    if snap.team_count:
        _place_in_team(snap, player, out)
        joined["team"] = player.team
    out.append(Emit("hosts", "player_joined", joined))


def _place_in_team(snap: Snapshot, player: Player, out: list[Effect]) -> None:
    """Team mode, on arrival: a player keeps the team it has (picked when joining, or earlier), else joins
    the smallest one; either way the player and the hosts are told (``team_assigned``)."""
    assert snap.team_count
    team = player.team
    if team is None or not 1 <= team <= snap.team_count:
        team = scoring.smallest_team(snap.team_count, _team_sizes(snap))
    _set_team(snap, player, team, out)


def _team_sizes(snap: Snapshot) -> Counter[int]:
    """Members per team (active players), kept current by :func:`_set_team` and :func:`_kick`."""
    if snap.team_sizes is None:
        snap.counted_team = {p.id: p.team for p in snap.players.values() if p.active and p.team is not None}
        snap.team_sizes = Counter(snap.counted_team.values())
    return snap.team_sizes


def _uncount_team(snap: Snapshot, player_id: str) -> None:
    previous = snap.counted_team.pop(player_id, None)
    if snap.team_sizes is not None and previous is not None:
        snap.team_sizes[previous] -= 1


def _set_team(snap: Snapshot, player: Player, team: int, out: list[Effect]) -> None:
    sizes = _team_sizes(snap)
    _uncount_team(snap, player.id)
    sizes[team] += 1
    snap.counted_team[player.id] = team
    player.team = team
    snap.changed = True
    data = {"player_id": player.id, "team": team, "name": scoring.team_name(team)}
    out.append(ScoresChanged(frozenset({player.id})))
    out.append(Emit(f"player:{player.id}", "team_assigned", data))
    out.append(Emit("hosts", "team_assigned", data | {"nickname": player.nickname}))


def _left(snap: Snapshot, pid: str, out: list[Effect]) -> None:
    player = snap.players.get(pid)
    if player is None or not player.active or pid not in snap.connected:
        return
    snap.connected.discard(pid)
    snap.counts.count_due = True
    out.append(Emit("hosts", "player_left", {"player_id": pid, "nickname": player.nickname}))


def _command(snap: Snapshot, message: Command, now: Now, out: list[Effect]) -> None:
    try:
        extra = _run_command(snap, message, now, out)
    except LiveError as err:
        result: dict[str, Any] = {"ok": False, "error": {"code": err.code, "message": err.message}}
    else:
        result = {"ok": True, "state": snap.state.value} | (extra or {})
    if message.request:
        reply = Reply(message.instance, message.request, result)
        if snap.closing is not None:  # answered once the question is scored, with the state it led to
            snap.closing.append(reply)
        else:
            out.append(reply)


def _run_command(snap: Snapshot, message: Command, now: Now, out: list[Effect]) -> dict[str, Any] | None:
    """Carry out a command; what it returns is added to the reply."""
    name = message.name
    if snap.state == State.ENDED:
        raise LiveError("session_ended", "This session has ended.")
    if name == "start_session":
        if snap.state != State.LOBBY:
            raise LiveError("already_started", "The session has already started.")
        _start(snap, now, out)
    elif name == "next":
        _next(snap, now, out)
    elif name == "end_session":
        _end(snap, "host", now, out)
    elif name in ("lock_session", "unlock_session"):
        snap.locked = name == "lock_session"
    elif name == "kick_player":
        _kick(snap, str(message.args.get("player_id", "")), now, out, ban=message.args.get("ban") is True)
    elif name == "set_session_options":
        _options(snap, message.args)
    elif name == "choose_team":
        _choose_team(snap, str(message.args.get("player_id", "")), message.args.get("team"), out)
    elif name == "set_teams":
        _set_teams(snap, message.args.get("team_count"), out)
    elif name == "team_of":
        return {"team": _team_of(snap, str(message.args.get("player_id", "")), out)}
    else:
        raise LiveError("invalid_payload", f"Unknown command {name!r}.")
    return None


def _tick(snap: Snapshot, tick: Tick, now: Now) -> None:
    counts = snap.counts
    if snap.state == State.QUESTION:
        counts.answered = tick.answered
        counts.everyone_answered = tick.everyone_answered
        counts.tallies = tick.tallies
    if tick.connected != counts.connected:
        counts.connected = tick.connected
        counts.count_due = True
    if tick.connected > 0:
        snap.last_activity = now.ms


def _timers(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    counts = snap.counts
    if snap.state == State.QUESTION:
        assert snap.deadline is not None
        if now.ms > snap.deadline + snap.rules.answer_grace_ms or counts.everyone_answered:
            _close(snap, out)
            return
        _answer_count(snap, now, out)
    elif snap.advance_at and now.ms >= snap.advance_at:
        _next(snap, now, out)
        return
    idle_for = now.ms - snap.last_activity
    if snap.state != State.ENDED and counts.connected == 0 and idle_for > snap.rules.idle_end_seconds * 1000:
        _end(snap, "idle", now, out)


def _answer_count(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    counts = snap.counts
    sent = (counts.answered, counts.connected)
    interval = snap.rules.answer_count_interval_ms / 1000
    if sent == counts.answers_sent or now.monotonic - counts.answers_sent_at < interval:
        return
    counts.answers_sent, counts.answers_sent_at = sent, now.monotonic
    data: dict[str, Any] = {"index": snap.question_index, "answered": sent[0], "players": sent[1]}
    question = snap.questions[snap.question_index]
    if question.question_type == POLL:  # shown live: every option, zeros included
        data["distribution"] = questions.poll_so_far(question.options, counts.tallies)
    out.append(Emit("hosts", "answer_count", data))


def _counts(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    """``player_count`` to everyone, at most every ``player_count_interval_ms``; joins and leaves carry it too."""
    counts = snap.counts
    for effect in out:
        if isinstance(effect, Emit) and effect.event in ("player_joined", "player_left"):
            effect.data.setdefault("player_count", counts.connected)
    if not counts.count_due or now.monotonic - counts.count_sent_at < snap.rules.player_count_interval_ms / 1000:
        return
    counts.count_due = False
    if counts.count_sent != counts.connected:
        counts.count_sent, counts.count_sent_at = counts.connected, now.monotonic
        out.append(Emit("all", "player_count", {"count": counts.connected}))


def _start(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    if not snap.questions:
        _end(snap, "finished", now, out)
        return
    _begin(snap, 0, now, out)
    out.append(MarkRunning())


def _next(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    if snap.state == State.LOBBY:
        _start(snap, now, out)
    elif snap.state == State.QUESTION:
        _close(snap, out)
    elif snap.state == State.REVEAL:
        _leaderboard(snap, now, out)
    elif snap.state == State.LEADERBOARD:
        index = snap.question_index + 1
        if index < len(snap.questions):
            _begin(snap, index, now, out)
        else:
            _end(snap, "finished", now, out)


def _begin(snap: Snapshot, index: int, now: Now, out: list[Effect]) -> None:
    question = snap.questions[index]
    limit = question.time_limit_ms or snap.time_limit_ms
    public = question.public(index, len(snap.questions), limit)
    if question.double_points:  # added only when true: other questions' payload is as before
        public["double_points"] = True
    _move(snap, State.QUESTION)
    snap.question_index, snap.question = index, public
    snap.started_at, snap.deadline = now.ms, now.ms + limit
    snap.reveal = snap.leaderboard = None
    snap.advance_at = None
    counts = snap.counts
    counts.answered, counts.everyone_answered = 0, False
    counts.answers_sent, counts.answers_sent_at = None, float("-inf")
    started = {"started_at": snap.started_at, "deadline": snap.deadline, "server_now": now.ms}
    if snap.player_view == "buttons":  # the question's text on the hosts' screens only
        out.append(Emit("hosts", "question_started", public | started))
        out.append(Emit("players", "question_started", buttons_question(public) | started))
    else:
        out.append(Emit("all", "question_started", public | started))


def _close(snap: Snapshot, out: list[Effect], then: str | None = None) -> None:
    """Ask the shell to close the gate; scoring follows in :func:`_closed`."""
    snap.closing = [then] if then else []
    out.append(CloseGate(snap.question_index))


def _closed(snap: Snapshot, message: Closed, now: Now, out: list[Effect]) -> None:
    then = snap.closing or []
    snap.closing = None
    if snap.state != State.QUESTION or message.index != snap.question_index:
        raise RuntimeError("Closed for a question that is not open")
    for pid, player in message.players.items():
        if pid not in snap.players:
            snap.players[pid] = player
            if snap.team_count and player.active:
                _place_in_team(snap, player, out)
    index = message.index
    question = snap.questions[index]
    rules = snap.scoring_rules()
    assert snap.started_at is not None and snap.deadline is not None
    limit = snap.deadline - snap.started_at  # the question's own time limit, or the session's
    results: dict[str, dict[str, Any]] = {}
    scored: dict[str, ScoredAnswer] = {}
    correct_count = 0
    answered: list[Any] = []
    for pid, player in snap.players.items():
        if not player.active:
            continue
        recorded = message.answers.get(pid)
        answer = recorded.answer if recorded is not None else None
        share = fraction(question.question_type, question.correct_answer, answer, question.settings)
        correct = share == 1
        points = bonus = 0
        streak = player.streak
        if question.question_type not in UNGRADED:  # a poll neither makes nor breaks a streak
            streak = player.streak + 1 if correct else 0
        if recorded is not None:
            answered.append(recorded.answer)
            elapsed = recorded.accepted_at - snap.started_at
            # Partial credit: the grader's share of the points, scored by the session's mode like a correct answer.
            points, bonus = scoring.award(
                question.points, share=share, correct=share > 0, elapsed_ms=elapsed, time_limit_ms=limit,
                rules=rules, double=question.double_points, streak=streak,
            )  # fmt: skip
            scored[pid] = ScoredAnswer(correct, points)
        player.score += points
        player.streak = streak
        player.correct += int(correct)
        correct_count += int(correct)
        results[pid] = {"index": index, "correct": correct, "points": points}
        if rules.streak_bonus_points:
            results[pid]["streak_bonus"] = bonus  # of those points
    changed = set(results) | _rank(snap)
    for pid, result in results.items():
        player = snap.players[pid]
        result |= {"total_score": player.score, "rank": player.rank, "streak": player.streak}
        if snap.team_count:
            result["team"] = player.team
    reveal = {
        "index": index,
        "correct_answer": questions.revealed_answer(question.question_type, question.correct_answer),
        "distribution": questions.distribution(
            question.question_type,
            question.options,
            answered,
            correct_answer=question.correct_answer,
            settings=question.settings,
        ),
    }
    snap.results.append(
        {
            "index": index, "question_id": question.id, "text": question.text,
            "question_type": question.question_type, "correct_answer": reveal["correct_answer"],
            "distribution": reveal["distribution"], "answered": len(answered), "correct": correct_count,
            "double_points": question.double_points, "started_at": snap.started_at, "deadline": snap.deadline,
        }
    )  # fmt: skip
    _move(snap, State.REVEAL)
    snap.reveal, snap.scored_upto, snap.advance_at = reveal, index, _advance_at(snap, State.REVEAL, now)
    out.append(Scored(index, scored))
    out.append(ScoresChanged(frozenset(changed)))
    out.append(Emit("all", "question_ended", reveal))
    if results:
        out.append(EmitEach("answer_result", results))
    out.append(Persist(final=False))
    for item in then:
        if isinstance(item, str) and item.startswith("end:"):
            _end(snap, item.partition(":")[2], now, out)
        elif isinstance(item, Reply):
            out.append(Reply(item.instance, item.request, {"ok": True, "state": snap.state.value}))


def _rank(snap: Snapshot) -> set[str]:
    """Competition ranks of the active players; returns whose rank changed."""
    changed = set()
    active = {pid: p.score for pid, p in snap.players.items() if p.active}
    for pid, rank in scoring.ranks(active).items():
        player = snap.players[pid]
        if player.rank != rank:
            player.rank = rank
            changed.add(pid)
    return changed


def top(snap: Snapshot) -> list[dict[str, Any]]:
    active = [p for p in snap.players.values() if p.active]
    active.sort(key=lambda p: (p.rank or len(active) + 1, -p.score, p.nickname.lower()))
    listed = [
        {"player_id": p.id, "nickname": p.nickname, "score": p.score, "rank": p.rank}
        for p in active[: snap.rules.leaderboard_size]
    ]
    if snap.team_count:
        for entry, p in zip(listed, active, strict=False):
            entry["team"] = p.team
    return listed


def _leaderboard(snap: Snapshot, now: Now, out: list[Effect]) -> None:
    board: dict[str, Any] = {"index": snap.question_index, "top": top(snap), "total_players": len(snap.active())}
    if snap.team_count:
        board["teams"] = snap.team_board()
    _move(snap, State.LEADERBOARD)
    snap.leaderboard, snap.advance_at = board, _advance_at(snap, State.LEADERBOARD, now)
    out.append(Emit("all", "leaderboard", board))


def _advance_at(snap: Snapshot, state: State, now: Now) -> int | None:
    seconds = snap.rules.reveal_seconds if state == State.REVEAL else snap.rules.leaderboard_seconds
    return now.ms + int(seconds * 1000) if seconds > 0 else None


def _choose_team(snap: Snapshot, player_id: str, team: Any, out: list[Effect]) -> None:
    """A player picks a team, in the lobby only (teams stay fixed once the game has begun)."""
    player = snap.players.get(player_id)
    if player is None or not player.active:
        raise LiveError("not_joined", "Join the session first.")
    if not snap.team_count:
        raise LiveError("no_teams", "This session is not played in teams.")
    if snap.state != State.LOBBY:
        raise LiveError("already_started", "Teams are chosen in the lobby, before the first question.")
    if not isinstance(team, int) or isinstance(team, bool) or not 1 <= team <= snap.team_count:
        raise LiveError("invalid_payload", f"A team is a number from 1 to {snap.team_count}.")
    if player.team != team:
        _set_team(snap, player, team, out)


def _set_teams(snap: Snapshot, team_count: Any, out: list[Effect]) -> None:
    """The host sets (or, with None, ends) team mode in the lobby; every player is placed again, balanced
    in the order they joined."""
    if snap.state != State.LOBBY:
        raise LiveError("already_started", "Teams are set in the lobby, before the first question.")
    valid = isinstance(team_count, int) and not isinstance(team_count, bool)
    if team_count is not None and not (valid and scoring.MIN_TEAMS <= team_count <= scoring.MAX_TEAMS):
        raise LiveError("invalid_payload", f"A team count is {scoring.MIN_TEAMS} to {scoring.MAX_TEAMS}, or null.")
    snap.team_count, snap.changed = team_count, True
    snap.team_sizes, snap.counted_team = Counter(), {}
    out.append(TeamsChanged(team_count))
    out.append(Emit("all", "teams_changed", {"team_count": team_count, "teams": scoring.teams_of(team_count)}))
    # Kicked players leave their old team too (it may not exist any more); only active ones are placed.
    for player in snap.players.values():
        player.team = None
    out.append(ScoresChanged(frozenset(snap.players)))
    players = sorted((p for p in snap.players.values() if p.active), key=lambda p: (p.joined_at, p.id))
    if team_count:
        for player in players:
            _place_in_team(snap, player, out)


def _team_of(snap: Snapshot, player_id: str, out: list[Effect]) -> int | None:
    """The player's team (placed now if it arrived unseen): what the edge adds to a join's ack."""
    player = snap.players.get(player_id)
    if player is None or not player.active:
        raise LiveError("not_joined", "Join the session first.")
    if snap.team_count and player.team is None:
        _place_in_team(snap, player, out)
    return player.team


PLAYER_VIEWS = ("full", "buttons")


def _options(snap: Snapshot, args: dict[str, Any]) -> None:
    free, view = args.get("free_nicknames"), args.get("player_view")
    if (free is not None and not isinstance(free, bool)) or (view is not None and view not in PLAYER_VIEWS):
        raise LiveError("invalid_payload", "free_nicknames is a boolean; player_view is 'full' or 'buttons'.")
    if free is not None:
        snap.free_nicknames = free
    if view is not None:
        snap.player_view = view


def _kick(snap: Snapshot, player_id: str, now: Now, out: list[Effect], *, ban: bool = False) -> None:
    player = snap.players.get(player_id)
    if player is not None and not player.active and ban:
        # Kicked before, banned now: its token and account may not come back.
        out.append(Kicked(player_id, banned=True, nickname=player.nickname))
        return
    if player is None or not player.active:
        raise LiveError("not_found", "No such player in this session.")
    player.kicked_at = now.ms
    player.rank = None
    _uncount_team(snap, player_id)
    snap.changed = True
    out.append(Kicked(player_id, banned=ban, nickname=player.nickname))
    out.append(Emit(f"player:{player_id}", "kicked", {"reason": BAN_REASON if ban else KICK_REASON, "banned": ban}))
    out.append(Detach(player_id, banned=ban))
    if player_id in snap.connected:
        snap.connected.discard(player_id)
        snap.counts.connected = max(0, snap.counts.connected - 1)
        snap.counts.count_due = True
    out.append(Emit("hosts", "player_left", {"player_id": player_id, "nickname": player.nickname, "kicked": True}))
    out.append(ScoresChanged(frozenset({player_id}) | _rank(snap)))


def _end(snap: Snapshot, reason: str, now: Now, out: list[Effect]) -> None:
    if snap.state == State.QUESTION:
        _close(snap, out, then=f"end:{reason}")
        return
    changed = _rank(snap)
    if changed:
        out.append(ScoresChanged(frozenset(changed)))
    snap.ended = {"top": top(snap), "results_url": f"{snap.rules.results_base_url}/{snap.id}/results"}
    if snap.team_count:
        snap.ended["teams"] = snap.team_board()
    _move(snap, State.ENDED)
    snap.advance_at, snap.ended_reason = None, reason
    out.append(Persist(final=True))


def _persisted(snap: Snapshot, message: Persisted, out: list[Effect]) -> None:
    if message.upto > snap.persisted_upto:
        snap.persisted_upto = message.upto
        snap.changed = True
    if not message.final or snap.persisted_end:
        return
    # Stored first, announced after: a new owner redoes this if the old one died in between.
    finals = {pid: {"rank": p.rank, "score": p.score} for pid, p in snap.players.items() if p.active}
    assert snap.ended is not None
    out.append(Emit("all", "session_ended", snap.ended))
    if finals:
        out.append(EmitEach("final_result", finals))
    snap.persisted_end = True
    snap.changed = True
    out.append(Finished())


@functools.lru_cache(maxsize=65_536)
def iso(ms: int | None) -> str | None:
    """Epoch ms as ISO 8601 (players' join times repeat every time results are stored: cached)."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()
