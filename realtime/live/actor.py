"""The session actor: the one task, on the instance holding the session's lease, that changes its state.

It applies the mailbox (host commands, join/leave notices) in order, runs
the timers from the absolute deadlines in its snapshot, scores each question
from the answers Redis recorded, writes the snapshot back after every change
(fenced by the lease) and only then publishes what happened. A new owner
loads the snapshot, replays the mailbox after the last applied message and
recomputes its timers, so a SIGKILLed owner costs a pause, not the game.

Order of one step: read the mailbox and tick (Redis time, answer and
connected counts) -> apply -> timers -> commit (fenced) -> publish -> persist
to PostgreSQL (results of ended questions; idempotent, retried).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lms.db import DatabaseError
from lms.live import queries, scoring
from realtime.live.snapshots import common_snapshot, host_snapshot, me_entry
from realtime.live.store import LiveError, RecordedAnswer, chunked_hset

if TYPE_CHECKING:
    from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)

SNAPSHOT_VERSION = 1
IDLE_WAKE_MS = 1000
PRESENCE_CHECK_MS = 1000
PERSIST_RETRY_MS = 2000
KICK_REASON = "The host removed you from this session."


class LeaseLost(Exception):
    """Another instance owns the session now; this actor must stop without writing."""


@dataclass
class Question:
    id: str
    text: str
    question_type: str
    options: list[dict[str, str]]
    correct_answer: Any
    points: Decimal

    def public(self, index: int, total: int, time_limit_ms: int) -> dict[str, Any]:
        return {
            "index": index, "total": total, "text": self.text, "question_type": self.question_type,
            "options": self.options, "time_limit_ms": time_limit_ms,
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

    def scores_json(self) -> str:
        return json.dumps({"score": self.score, "streak": self.streak, "correct": self.correct, "rank": self.rank})


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass
class Outbox:
    """What one step publishes, in order, once its changes are committed."""

    events: list[dict[str, Any]] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)

    def to(self, target: str, event: str, data: dict[str, Any]) -> None:
        self.events.append({"to": target, "event": event, "data": data})

    def each(self, event: str, by_player: dict[str, dict[str, Any]]) -> None:
        if by_player:
            self.events.append({"to": "each", "event": event, "data": by_player})

    def op(self, name: str, **data: Any) -> None:
        self.events.append({"op": name, **data})


class SessionActor:
    def __init__(self, runtime: LiveRuntime, session_id: str, lease_token: str) -> None:
        self.rt = runtime
        self.config = runtime.config.live
        self.store = runtime.store
        self.session_id = session_id
        self.token = lease_token
        self.keys = self.store.keys(session_id)
        self.snap: dict[str, Any] = {}
        self.players: dict[str, Player] = {}
        self.questions: list[Question] = []
        self.connected: set[str] = set()
        self.out = Outbox()
        self.commands: list[list[Any]] = []
        self.scores_changed: set[str] = set()
        self.now = 0
        self.real_now = 0
        self.connected_count = 0
        self.answered_count = 0
        self.count_due = False
        self.count_sent_at = 0.0
        self.count_sent: int | None = None
        self.answer_count_sent: tuple[int, int] | None = None
        self.answer_count_sent_at = 0.0
        self.presence_checked_at = 0
        self.persist_failed_at = 0
        self.finished = False
        self.closed_without_state = False
        # Set from outside: "stop" (hand over), "crash" (tests), "lost" (the lease is gone).
        self.stop_requested: str | None = None

    # -- life ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            if not await self._load():
                self.finished = True
                return
            await self._state_to_everyone()
            await self._flush(write_snapshot=True)
            if self.snap["state"] == "ended":
                await self._finish_end()
            while not self.finished:
                if self.stop_requested:
                    if self.stop_requested == "lost":
                        raise LeaseLost
                    log.info("live session %s: handing over (%s)", self.session_id, self.stop_requested)
                    return
                messages = await self.store.read_mailbox(self.keys, self.snap["mailbox_id"], block_ms=self._wait_ms())
                await self._tick()
                await self._apply(messages)
                await self._timers()
                await self._flush()
                await self._persist()
        except LeaseLost:
            log.warning("live session %s: lease lost; another instance owns it now", self.session_id)
        finally:
            if self.finished:
                await self._retire()

    async def end_abandoned(self) -> bool:
        """End a session nobody runs (the scheduled job holds the lease meanwhile); False if nothing to end."""
        if not await self._load():
            return self.closed_without_state
        if self.snap["state"] != "ended":
            await self._end("abandoned")
        else:
            await self._finish_end()
        await self._retire()
        return True

    async def _retire(self) -> None:
        try:
            if self.snap.get("state") == "ended" or not self.snap:
                await self.store.forget(self.session_id)
            await self.store.release(self.keys, self.token)
        except Exception:  # the lease expires on its own anyway
            log.warning("live session %s: could not release the lease", self.session_id, exc_info=True)

    def _wait_ms(self) -> int:
        """How long the mailbox read may block: until the next timer, and never long."""
        state = self.snap["state"]
        wait: float = IDLE_WAKE_MS
        if state == "question":
            closes_in = self.snap["deadline"] + self.config.answer_grace_ms + 1 - self.now
            wait = min(self.config.answer_count_interval_ms, closes_in)
        if self.snap.get("advance_at"):
            wait = min(wait, self.snap["advance_at"] - self.now)
        if self.count_due:
            due_in = self.count_sent_at + self.config.player_count_interval_ms / 1000 - time.monotonic()
            wait = min(wait, due_in * 1000)
        return max(1, int(wait))

    # -- loading ------------------------------------------------------------

    async def _load(self) -> bool:
        """The state to resume from; False when there is nothing to run (ended or gone)."""
        async with self.rt.db.connection() as conn:
            session = await queries.get_session(conn, uuid.UUID(self.session_id))
            if session is None:
                log.warning("live session %s: not in PostgreSQL; dropping it", self.session_id)
                return False
            rows = await queries.list_questions(conn, session["quiz_id"])
        self.questions = [
            Question(
                id=str(r["id"]), text=r["question_text"], question_type=r["question_type"],
                options=scoring.public_options(r["question_type"], r["options"]), correct_answer=r["correct_answer"],
                points=Decimal(r["points"]),
            )
            for r in rows
        ]  # fmt: skip
        state = await self.store.load(self.keys)
        self.now = await self.store.now_ms(self.keys)
        if session["status"] == "ended":
            return False
        if state.snap is None:
            if session["status"] != "lobby":
                log.warning("live session %s: %s in PostgreSQL but gone from Redis", self.session_id, session["status"])
                if session["status"] == "running":
                    async with self.rt.db.transaction() as conn:
                        await queries.save_results(conn, session["id"], session["results"] or {}, ended=True)
                    self.closed_without_state = True
                return False
            self.snap = initial_snapshot(session, len(self.questions), self.now)
        else:
            self.snap = state.snap
        if self.snap["state"] == "lobby":
            self.snap["total_questions"] = len(self.questions)
        if self.snap["state"] == "ended" and self.snap.get("persisted_end"):
            return False
        for pid, info in state.players.items():
            self.players[pid] = self._player(pid, info)
        for pid, entry in state.scores.items():
            if pid in self.players:
                p = self.players[pid]
                p.score, p.streak, p.correct, p.rank = entry["score"], entry["streak"], entry["correct"], entry["rank"]
        for pid in state.kicked:
            if pid in self.players and self.players[pid].kicked_at is None:
                self.players[pid].kicked_at = self.now
        self.real_now = int(time.time() * 1000)
        self.connected = await self.store.connected(self.keys, self.real_now) - state.kicked
        self.connected_count = len(self.connected)
        self.count_sent = self.connected_count
        log.info(
            "live session %s: owned by %s in state %s (question %s, %d players)",
            self.session_id, self.rt.instance_id, self.snap["state"], self.snap["question_index"], len(self.players),
        )  # fmt: skip
        return True

    def _player(self, pid: str, info: dict[str, Any]) -> Player:
        user = info.get("user_id")
        return Player(pid, str(info.get("nickname", "")), str(user) if user else None, int(info.get("joined_at", 0)))

    # -- one step -----------------------------------------------------------

    async def _tick(self) -> None:
        index = self.snap["question_index"] if self.snap["state"] == "question" else -1
        tick = await self.store.tick(self.keys, index)
        self.now, self.real_now = tick.now, tick.real_now
        self.answered_count = tick.answered
        if tick.connected != self.connected_count:
            self.connected_count = tick.connected
            self.count_due = True
        self._everyone_answered = tick.everyone_answered
        if tick.connected > 0:
            self.snap["last_activity"] = self.now

    async def _apply(self, messages: list[tuple[str, dict[str, str]]]) -> None:
        if not messages:
            return
        arriving = [m["p"] for _, m in messages if m.get("t") in ("joined", "rejoined") and m.get("p")]
        unknown = [pid for pid in dict.fromkeys(arriving) if pid not in self.players]
        for pid, info in (await self.store.players(self.keys, unknown)).items():
            self.players[pid] = self._player(pid, info)
        lag = self.rt.metrics.mailbox_lag_seconds
        for message_id, message in messages:
            # A stream id is the Redis time it was posted at, in ms.
            lag.observe(max(0, self.real_now - int(message_id.split("-", 1)[0])) / 1000)
            kind = message.get("t")
            if kind in ("joined", "rejoined"):
                self._arrived(message.get("p", ""))
            elif kind == "left":
                self._left(message.get("p", ""))
            elif kind == "cmd":
                await self._command(message)
            self.snap["mailbox_id"] = message_id
            self.snap["last_activity"] = self.now
        self.dirty = True

    def _arrived(self, pid: str) -> None:
        player = self.players.get(pid)
        if player is None or player.kicked_at is not None:
            return
        self.connected.add(pid)
        self.count_due = True
        self.out.to("hosts", "player_joined", {"player_id": pid, "nickname": player.nickname})

    def _left(self, pid: str) -> None:
        player = self.players.get(pid)
        if player is None or player.kicked_at is not None or pid not in self.connected:
            return
        self.connected.discard(pid)
        self.count_due = True
        self.out.to("hosts", "player_left", {"player_id": pid, "nickname": player.nickname})

    async def _command(self, message: dict[str, str]) -> None:
        name = message.get("c", "")
        try:
            args = json.loads(message.get("a") or "{}")
            result = await self._run_command(name, args if isinstance(args, dict) else {})
        except LiveError as err:
            result = {"ok": False, "error": {"code": err.code, "message": err.message}}
        if message.get("req"):
            self.out.replies.append({"i": message.get("i"), "req": message["req"], "result": result})

    async def _run_command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        state = self.snap["state"]
        if state == "ended":
            raise LiveError("session_ended")
        if name == "start_session":
            if state != "lobby":
                raise LiveError("already_started", "The session has already started.")
            await self._start()
        elif name == "next":
            await self._next()
        elif name == "end_session":
            await self._end("host")
        elif name in ("lock_session", "unlock_session"):
            self.snap["locked"] = name == "lock_session"
        elif name == "kick_player":
            self._kick(str(args.get("player_id", "")))
        else:
            raise LiveError("invalid_payload", f"Unknown command {name!r}.")
        return {"ok": True, "state": self.snap["state"]}

    async def _timers(self) -> None:
        state = self.snap["state"]
        if state == "question":
            if self.now > self.snap["deadline"] + self.config.answer_grace_ms or self._everyone_answered:
                await self._close_question()
            else:
                self._answer_count()
        elif self.snap.get("advance_at") and self.now >= self.snap["advance_at"]:
            await self._next()
        if self.now - self.presence_checked_at >= PRESENCE_CHECK_MS:
            await self._check_presence()
        idle_for = self.now - int(self.snap.get("last_activity") or self.now)
        if state != "ended" and self.connected_count == 0 and idle_for > self.config.idle_end_seconds * 1000:
            log.info("live session %s: nobody connected for %d s; ending it", self.session_id, idle_for // 1000)
            await self._end("idle")

    async def _check_presence(self) -> None:
        """Reconcile with the presence set: players of a dead instance drop out when their entries expire."""
        self.presence_checked_at = self.now
        current = {p for p in await self.store.connected(self.keys, self.real_now) if p in self.players}
        current -= {p for p, player in self.players.items() if player.kicked_at is not None}
        for pid in current - self.connected:
            self._arrived(pid)
        for pid in self.connected - current:
            self._left(pid)

    def _answer_count(self) -> None:
        # Rates are wall-clock matters: measured on this process's monotonic clock.
        counts = (self.answered_count, self.connected_count)
        interval = self.config.answer_count_interval_ms / 1000
        if counts == self.answer_count_sent or time.monotonic() - self.answer_count_sent_at < interval:
            return
        self.answer_count_sent, self.answer_count_sent_at = counts, time.monotonic()
        index = self.snap["question_index"]
        self.out.to("hosts", "answer_count", {"index": index, "answered": counts[0], "players": counts[1]})

    # -- transitions --------------------------------------------------------

    async def _start(self) -> None:
        await self._begin_question(0)
        try:
            async with self.rt.db.transaction() as conn:
                await queries.mark_running(conn, uuid.UUID(self.session_id))
        except DatabaseError:
            log.warning("live session %s: could not mark it running (it will be at the end)", self.session_id)

    async def _next(self) -> None:
        state = self.snap["state"]
        if state == "lobby":
            await self._start()
        elif state == "question":
            await self._close_question()
        elif state == "reveal":
            self._leaderboard()
        elif state == "leaderboard":
            index = self.snap["question_index"] + 1
            if index < len(self.questions):
                await self._begin_question(index)
            else:
                await self._end("finished")

    async def _begin_question(self, index: int) -> None:
        question = self.questions[index]
        limit = self.snap["time_limit_ms"]
        public = question.public(index, len(self.questions), limit)
        started, deadline = self.now, self.now + limit
        self.snap.update(
            state="question", question_index=index, question=public, started_at=started, deadline=deadline,
            reveal=None, leaderboard=None, advance_at=None,
        )  # fmt: skip
        self.answer_count_sent, self.answer_count_sent_at = None, 0.0
        self._everyone_answered = False
        self.out.to(
            "all", "question_started", public | {"started_at": started, "deadline": deadline, "server_now": self.now}
        )
        self.dirty = True

    async def _close_question(self) -> None:
        """Close the gate first (no answer is accepted after it), then score what Redis recorded."""
        index = self.snap["question_index"]
        if not await self.store.fenced(self.keys, self.token, [["HSET", self.keys.gate, "status", "reveal"]]):
            raise LeaseLost
        recorded = await self.store.answers(self.keys, index)
        missing = [pid for pid in recorded if pid not in self.players]
        for pid, info in (await self.store.players(self.keys, missing)).items():
            self.players[pid] = self._player(pid, info)
        question = self.questions[index]
        active = {pid: p for pid, p in self.players.items() if p.kicked_at is None}
        results: dict[str, dict[str, Any]] = {}
        correct_count = 0
        for pid, player in active.items():
            answer = recorded.get(pid)
            correct = answer is not None and scoring.is_correct(
                question.question_type, question.correct_answer, answer.answer
            )
            points = self._points(question, answer, correct)
            player.score += points
            player.streak = player.streak + 1 if correct else 0
            player.correct += int(correct)
            correct_count += int(correct)
            results[pid] = {"index": index, "correct": correct, "points": points}
            self.scores_changed.add(pid)
        self._rank()
        for pid, result in results.items():
            player = active[pid]
            result |= {"total_score": player.score, "rank": player.rank, "streak": player.streak}
        answered = [a.answer for pid, a in recorded.items() if pid in active]
        reveal = {
            "index": index,
            "correct_answer": scoring.revealed_answer(question.question_type, question.correct_answer),
            "distribution": scoring.distribution(question.question_type, question.options, answered),
        }
        self.snap["results"].append(
            {
                "index": index, "question_id": question.id, "text": question.text,
                "question_type": question.question_type, "correct_answer": reveal["correct_answer"],
                "distribution": reveal["distribution"], "answered": len(answered), "correct": correct_count,
                "started_at": self.snap["started_at"], "deadline": self.snap["deadline"],
            }
        )  # fmt: skip
        self.snap.update(state="reveal", reveal=reveal, scored_upto=index, advance_at=self._advance_at("reveal"))
        self.out.to("all", "question_ended", reveal)
        self.out.each("answer_result", results)
        self.dirty = True

    def _points(self, question: Question, answer: RecordedAnswer | None, correct: bool) -> int:
        if answer is None:
            return 0
        return scoring.points_for(
            question.points,
            correct=correct,
            elapsed_ms=answer.accepted_at - int(self.snap["started_at"]),
            time_limit_ms=int(self.snap["time_limit_ms"]),
        )

    def _rank(self) -> None:
        active = {pid: p.score for pid, p in self.players.items() if p.kicked_at is None}
        for pid, rank in scoring.ranks(active).items():
            if self.players[pid].rank != rank:
                self.players[pid].rank = rank
                self.scores_changed.add(pid)

    def _top(self) -> list[dict[str, Any]]:
        active = [p for p in self.players.values() if p.kicked_at is None]
        active.sort(key=lambda p: (p.rank or len(active) + 1, -p.score, p.nickname.lower()))
        return [
            {"player_id": p.id, "nickname": p.nickname, "score": p.score, "rank": p.rank}
            for p in active[: self.config.leaderboard_size]
        ]

    def _leaderboard(self) -> None:
        active = sum(1 for p in self.players.values() if p.kicked_at is None)
        board = {"index": self.snap["question_index"], "top": self._top(), "total_players": active}
        self.snap.update(state="leaderboard", leaderboard=board, advance_at=self._advance_at("leaderboard"))
        self.out.to("all", "leaderboard", board)
        self.dirty = True

    def _advance_at(self, state: str) -> int | None:
        seconds = self.config.reveal_seconds if state == "reveal" else self.config.leaderboard_seconds
        return self.now + int(seconds * 1000) if seconds > 0 else None

    def _kick(self, player_id: str) -> None:
        player = self.players.get(player_id)
        if player is None or player.kicked_at is not None:
            raise LiveError("not_found", "No such player in this session.")
        player.kicked_at = self.now
        player.rank = None
        self.scores_changed.add(player_id)
        self.commands += [["SADD", self.keys.kicked, player_id], ["ZREM", self.keys.online, player_id]]
        self.out.to(f"player:{player_id}", "kicked", {"reason": KICK_REASON})
        self.out.op("detach", player_id=player_id)
        if player_id in self.connected:
            self.connected.discard(player_id)
            self.connected_count = max(0, self.connected_count - 1)
            self.count_due = True
        self.out.to("hosts", "player_left", {"player_id": player_id, "nickname": player.nickname, "kicked": True})
        self._rank()

    async def _end(self, reason: str) -> None:
        if self.snap["state"] == "question":
            await self._close_question()
        self._rank()
        top = self._top()
        base = self.rt.config.http.public_base_url.rstrip("/")
        ended = {"top": top, "results_url": f"{base}/api/v1/live-sessions/{self.session_id}/results"}
        self.snap.update(state="ended", ended=ended, advance_at=None, ended_reason=reason)
        self.dirty = True
        await self._flush()
        await self._finish_end()

    async def _finish_end(self) -> None:
        """Store the results, then announce them: a new owner redoes this if the old one died in between."""
        await self._persist(final=True)
        ended = self.snap["ended"]
        finals = {pid: {"rank": p.rank, "score": p.score} for pid, p in self.players.items() if p.kicked_at is None}
        self.out.to("all", "session_ended", ended)
        self.out.each("final_result", finals)
        self.snap["persisted_end"] = True
        self.dirty = True
        await self._flush()
        self.finished = True
        log.info("live session %s ended (%s)", self.session_id, self.snap.get("ended_reason"))

    # -- writing and publishing ----------------------------------------------

    dirty = False
    _everyone_answered = False

    def _gate(self) -> dict[str, Any]:
        question = self.snap.get("question") or {}
        gate_status = self.snap["state"]
        return {
            "status": gate_status,
            "qi": self.snap["question_index"],
            "deadline": self.snap.get("deadline") or 0,
            "qtype": question.get("question_type", ""),
            "opts": json.dumps([o["id"] for o in question.get("options", [])]),
            "locked": "1" if self.snap.get("locked") else "0",
        }

    async def _flush(self, *, write_snapshot: bool = False) -> None:
        """Commit the step (fenced), then publish its events and replies."""
        self._player_count()
        if self.dirty or write_snapshot or self.commands or self.scores_changed:
            ttl = self.store.ttl_ms
            gate = self._gate()
            commands: list[list[Any]] = [["HSET", self.keys.gate, *[x for kv in gate.items() for x in kv]]]
            commands += self.commands
            if self.scores_changed:
                changed = {pid: self.players[pid].scores_json() for pid in self.scores_changed if pid in self.players}
                commands += chunked_hset(self.keys.scores, changed)
            commands.append(["SET", self.keys.snap, json.dumps(self.snap, separators=(",", ":")), "PX", ttl])
            commands += [["PEXPIRE", key, ttl] for key in self.keys.all_static() if key not in (self.keys.lease,)]
            if not await self.store.fenced(self.keys, self.token, commands):
                raise LeaseLost
            self.commands, self.scores_changed, self.dirty = [], set(), False
        if self.out.events or self.out.replies:
            out, self.out = self.out, Outbox()
            await self.rt.publish(self.session_id, out.events, out.replies)

    def _player_count(self) -> None:
        for event in self.out.events:
            if event.get("event") in ("player_joined", "player_left"):
                event["data"]["player_count"] = self.connected_count
        if not self.count_due or time.monotonic() - self.count_sent_at < self.config.player_count_interval_ms / 1000:
            return
        self.count_due = False
        if self.count_sent != self.connected_count:
            self.count_sent, self.count_sent_at = self.connected_count, time.monotonic()
            self.out.to("all", "player_count", {"count": self.connected_count})

    async def _state_to_everyone(self) -> None:
        """After a takeover (or the first start): every client gets the snapshot for its role."""
        common = common_snapshot(self.snap, now=self.now, player_count=self.connected_count)
        answered: set[str] = set()
        if self.snap["state"] == "question":
            answered = set(await self.store.answers(self.keys, self.snap["question_index"]))
            self.answered_count = len(answered)
        me = {
            pid: me_entry(pid, p.nickname, json.loads(p.scores_json()), answered_current=pid in answered)
            for pid, p in self.players.items()
            if p.kicked_at is None
        }
        scores = {pid: {"score": p.score} for pid, p in self.players.items()}
        host = host_snapshot(
            common,
            players={pid: {"nickname": p.nickname} for pid, p in self.players.items()},
            scores=scores,
            connected=self.connected,
            kicked={pid for pid, p in self.players.items() if p.kicked_at is not None},
            answer_count=self.answered_count,
        )
        self.out.op("state", common=common, me=me, host=host)

    async def _persist(self, *, final: bool = False) -> None:
        """Write the results of ended questions (and, at the end, the session) to PostgreSQL.

        Idempotent: answers are inserted once per player and question, scores
        overwritten. A failure is retried on a later step, or by the next owner.
        """
        pending = [r for r in self.snap["results"] if r["index"] > self.snap.get("persisted_upto", -1)]
        if not pending and not final:
            return
        if not final and self.persist_failed_at and self.now - self.persist_failed_at < PERSIST_RETRY_MS:
            return
        while True:
            try:
                await self._write_results(pending, final=final)
                break
            except DatabaseError as err:
                self.persist_failed_at = self.now
                log.warning("live session %s: saving results failed (%s); retrying", self.session_id, err)
                if not final:
                    return
                await asyncio.sleep(PERSIST_RETRY_MS / 1000)
                if not await self.store.renew(self.keys, self.token):
                    raise LeaseLost from err
        if pending:
            self.snap["persisted_upto"] = pending[-1]["index"]
            self.dirty = True

    async def _write_results(self, pending: list[dict[str, Any]], *, final: bool) -> None:
        rows = [
            {
                "id": p.id, "user_id": p.user_id, "nickname": p.nickname, "joined_at": iso(p.joined_at),
                "score": p.score, "rank": p.rank, "correct_count": p.correct, "kicked_at": iso(p.kicked_at),
            }
            for p in self.players.values()
        ]  # fmt: skip
        answers = []
        for result in pending:
            recorded = await self.store.answers(self.keys, result["index"])
            question = self.questions[result["index"]]
            for pid, answer in recorded.items():
                correct = scoring.is_correct(question.question_type, question.correct_answer, answer.answer)
                elapsed = answer.accepted_at - int(result["started_at"])
                points = scoring.points_for(
                    question.points, correct=correct, elapsed_ms=elapsed, time_limit_ms=int(self.snap["time_limit_ms"])
                )
                answers.append(
                    {
                        "player_id": pid, "question_id": question.id, "question_index": result["index"],
                        "answer": answer.answer, "is_correct": correct, "points": points,
                        "response_time_ms": max(0, elapsed), "answered_at": iso(answer.accepted_at),
                    }
                )  # fmt: skip
        document = {
            "questions": [
                {k: v for k, v in r.items() if k not in ("started_at", "deadline")} for r in self.snap["results"]
            ],
            "leaderboard": self._top() if final else None,
            "ended_reason": self.snap.get("ended_reason"),
        }
        session_id = uuid.UUID(self.session_id)
        started = time.perf_counter()
        async with self.rt.db.transaction() as conn:
            await queries.save_players(conn, session_id, rows)
            await queries.save_answers(conn, session_id, answers)
            if final:
                await queries.mark_running(conn, session_id)
            await queries.save_results(conn, session_id, document, ended=final)
        log.debug(
            "live session %s: saved %d players, %d answers in %.1f ms",
            self.session_id, len(rows), len(answers), (time.perf_counter() - started) * 1000,
        )  # fmt: skip


def initial_snapshot(session: dict[str, Any], total_questions: int, now: int) -> dict[str, Any]:
    return {
        "v": SNAPSHOT_VERSION,
        "id": str(session["id"]),
        "pin": session["pin"],
        "quiz_id": str(session["quiz_id"]),
        "quiz_title": session["quiz_title"],
        "allow_guests": session["allow_guests"],
        "time_limit_ms": session["question_time_limit_seconds"] * 1000,
        "total_questions": total_questions,
        "state": "lobby",
        "question_index": -1,
        "question": None,
        "started_at": None,
        "deadline": None,
        "locked": False,
        "advance_at": None,
        "reveal": None,
        "leaderboard": None,
        "ended": None,
        "mailbox_id": "0-0",
        "scored_upto": -1,
        "persisted_upto": -1,
        "results": [],
        "last_activity": now,
    }


def initial_gate() -> dict[str, Any]:
    return {"status": "lobby", "qi": -1, "deadline": 0, "qtype": "", "opts": "[]", "locked": "0"}
