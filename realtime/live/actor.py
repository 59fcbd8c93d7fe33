"""The session actor: the shell around :mod:`realtime.live.machine` on the instance holding the lease.

It loads the session's :class:`~realtime.live.machine.Snapshot`, and in
each step turns what Redis says into messages (the tick's counts, the
mailbox's joins, leaves and host commands, the presence set, the timers),
applies them with :func:`~realtime.live.machine.transition` and carries out
the effects: closing a question's gate (and handing the machine the answers
it let through), committing the step to Redis (fenced by the lease), then
publishing its events and replies, then storing ended questions' results in
PostgreSQL (idempotent, retried). A new owner loads the snapshot, replays
the mailbox after the last applied message and recomputes its timers, so a
SIGKILLed owner costs a pause, not the game.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from lms.aio import raise_if_cancelling
from lms.db import DatabaseError
from lms.live import queries
from lms.live import questions as live_questions
from realtime.live import machine
from realtime.live.machine import (
    Closed,
    CloseGate,
    Detach,
    Effect,
    Emit,
    EmitEach,
    Finished,
    Kicked,
    MarkRunning,
    Message,
    Now,
    Persist,
    Persisted,
    Player,
    Question,
    Recorded,
    Reply,
    Rules,
    Scored,
    ScoredAnswer,
    ScoresChanged,
    Snapshot,
    State,
    TeamsChanged,
    iso,
)
from realtime.live.snapshots import common_snapshot, host_snapshot, me_entry
from realtime.live.store import MAILBOX_MAX_LENGTH, chunked_hset

if TYPE_CHECKING:
    from realtime.live.runtime import LiveRuntime

log = logging.getLogger(__name__)

# The presence set is read in full (every member) only when the tick's count disagrees with the
# machine's, or every few seconds: not every player every second.
PRESENCE_CHECK_MS = 1000
PRESENCE_FULL_CHECK_MS = 5000
PERSIST_RETRY_MS = 2000
STEP_RETRY_SECONDS = 0.2


class LeaseLost(Exception):
    """Another instance owns the session now; this actor must stop without writing."""


def player_from(pid: str, info: dict[str, Any]) -> Player:
    user = info.get("user_id")
    team = info.get("team")  # the team picked when joining (team mode)
    player = Player(pid, str(info.get("nickname", "")), str(user) if user else None, int(info.get("joined_at", 0)))
    player.team = team if isinstance(team, int) and not isinstance(team, bool) else None
    return player


class SessionActor:
    def __init__(self, runtime: LiveRuntime, session_id: str, lease_token: str) -> None:
        self.rt = runtime
        self.config = runtime.config.live
        self.store = runtime.store
        self.session_id = session_id
        self.token = lease_token
        self.keys = self.store.keys(session_id)
        self.snap: Snapshot | None = None
        self.now = Now(0, time.monotonic())
        self.real_now = 0
        self.presence_checked_at = 0
        self.persist_failed_at = 0
        self.finished = False
        self.closed_without_state = False
        # What the current step commits and publishes.
        self.events: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.commands: list[list[Any]] = []
        self.scores_changed: set[str] = set()
        self.persist_due: bool | None = None  # None: nothing; False: ended questions; True: the end
        # Questions closed by this actor and not yet stored: what Redis recorded and how it was scored
        # (a new owner reads both back from Redis instead).
        self.closed: dict[int, tuple[dict[str, Recorded], dict[str, ScoredAnswer]]] = {}
        # Set from outside: "stop" (hand over), "crash" (tests), "lost" (the lease is gone).
        self.stop_requested: str | None = None
        # A blocking mailbox read still under way when the last step's timer came first (_next_mail).
        self.mail: asyncio.Future[list[tuple[str, dict[str, str]]]] | None = None

    @property
    def s(self) -> Snapshot:
        assert self.snap is not None, "loaded first"
        return self.snap

    # -- life ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            if not await self._load():
                self.finished = True
                return
            await self._state_to_everyone()
            await self._commit(write_snapshot=True)
            if self.s.state == State.ENDED:
                self.persist_due = True
                await self._persist()
            while not self.finished:
                if self.stop_requested:
                    if self.stop_requested == "lost":
                        raise LeaseLost
                    log.info("live session %s: handing over (%s)", self.session_id, self.stop_requested)
                    return
                try:
                    await self._step()
                except (RedisError, OSError) as err:
                    # A slow or restarting Redis costs a pause, not the session: what the machine
                    # applied stays in memory, and the step's writes and events go with the next commit.
                    raise_if_cancelling(err)
                    log.warning("live session %s: Redis failed during a step (%s); retrying", self.session_id, err)
                    await asyncio.sleep(STEP_RETRY_SECONDS)
        except LeaseLost:
            log.warning("live session %s: lease lost; another instance owns it now", self.session_id)
        finally:
            if self.mail is not None and not self.mail.cancel() and not self.mail.cancelled():
                self.mail.exception()  # it finished meanwhile: taken so that asyncio does not report it unread
            if self.finished:
                await self._retire()

    async def _step(self) -> None:
        s = self.s
        if s.closing is not None:  # the last step failed while closing a question's gate: finish that first
            await self._apply(await self._close_gate(s.question_index))
        messages = await self._next_mail(machine.wake_in(s, self._clock(self.now.ms)))
        index = s.question_index if s.state == State.QUESTION else -1
        tick = await self.store.tick(self.keys, index)
        self.now, self.real_now = self._clock(tick.now), tick.real_now
        await self._apply(machine.Tick(tick.answered, tick.connected, tick.everyone_answered, tick.tallies))
        for message in await self._mail(messages):
            await self._apply(message)
        since = self.now.ms - self.presence_checked_at
        differs = tick.connected != len(self.s.connected)
        if since >= PRESENCE_FULL_CHECK_MS or (differs and since >= PRESENCE_CHECK_MS):
            self.presence_checked_at = self.now.ms
            current = await self.store.connected(self.keys, self.real_now)
            await self._apply(machine.Presence(frozenset(current)))
        await self._apply(machine.Timers())
        await self._commit()
        await self._persist()

    async def _next_mail(self, wait_ms: int) -> list[tuple[str, dict[str, str]]]:
        """The mailbox's next entries, or none once ``wait_ms`` have passed (the next timer is due).

        Redis ends a blocked read on its own clock, once per ``hz`` tick
        (every 100 ms by default; a 5 ms ``XREAD BLOCK`` returned after about
        100 ms), so a deadline kept by the read's timeout fired up to 100 ms
        late. The timer is kept here instead: when it comes first, the read
        stays under way and the next step takes it up, so no entry is read twice or skipped.
        """
        if self.mail is None:
            # As long as the machine ever sleeps: one read may span several steps' timers.
            read = self.store.read_mailbox(self.keys, self.s.mailbox_id, block_ms=machine.IDLE_WAKE_MS)
            self.mail = asyncio.ensure_future(read)
        done, _ = await asyncio.wait({self.mail}, timeout=wait_ms / 1000)
        if not done:
            return []
        mail, self.mail = self.mail, None
        return mail.result()

    async def end_abandoned(self) -> bool:
        """End a session nobody runs (the scheduled job holds the lease meanwhile); False if nothing to end."""
        if not await self._load():
            return self.closed_without_state
        if self.s.state != State.ENDED:
            await self._apply(machine.End("abandoned"))
        await self._commit()
        self.persist_due = True
        await self._persist()
        await self._retire()
        return True

    async def _retire(self) -> None:
        try:
            if self.snap is None or self.snap.state == State.ENDED:
                await self.store.forget(self.session_id)
            await self.store.release(self.keys, self.token)
        except Exception:  # the lease expires on its own anyway
            log.warning("live session %s: could not release the lease", self.session_id, exc_info=True)

    @staticmethod
    def _clock(ms: int) -> Now:
        return Now(ms, time.monotonic())

    # -- loading ------------------------------------------------------------

    async def _load(self) -> bool:
        """The state to resume from; False when there is nothing to run (ended or gone)."""
        async with self.rt.db.connection() as conn:
            session = await queries.get_session(conn, uuid.UUID(self.session_id))
            if session is None:
                log.warning("live session %s: not in PostgreSQL; dropping it", self.session_id)
                return False
            rows = await queries.list_questions(conn, session["quiz_id"])
        questions = [
            Question(
                id=str(r["id"]), text=r["question_text"], question_type=r["question_type"],
                options=live_questions.public_options(
                    str(r["id"]), r["question_type"], r["options"], r["correct_answer"]
                ),
                correct_answer=r["correct_answer"], points=Decimal(r["points"]), settings=r["settings"],
                time_limit_ms=r["time_limit_seconds"] * 1000 if r["time_limit_seconds"] else None,
                media=live_questions.media(r["image_file_id"], r["video"]), double_points=bool(r["double_points"]),
            )
            for r in rows
        ]  # fmt: skip
        state = await self.store.load(self.keys)
        now_ms = await self.store.now_ms(self.keys)
        self.now = self._clock(now_ms)
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
            snap = Snapshot.new(session, len(questions), now_ms)
        else:
            snap = Snapshot.from_json(state.snap)
        if snap.state == State.ENDED and snap.persisted_end:
            return False
        if snap.state == State.LOBBY:
            snap.total_questions = len(questions)
        snap.questions = questions
        snap.rules = self._rules()
        for pid, info in state.players.items():
            snap.players[pid] = player_from(pid, info)
        for pid, entry in state.scores.items():
            if pid in snap.players:
                p = snap.players[pid]
                p.score, p.streak, p.correct, p.rank = entry["score"], entry["streak"], entry["correct"], entry["rank"]
                p.team = entry.get("team") or p.team
        if not snap.team_count:  # no teams (any more: the host may have ended team mode in the lobby)
            for p in snap.players.values():
                p.team = None
        for pid in state.kicked:
            if pid in snap.players and snap.players[pid].kicked_at is None:
                snap.players[pid].kicked_at = now_ms
        self.real_now = int(time.time() * 1000)
        # Players whose join is still unread in the mailbox (they joined while no owner ran, or while
        # this one was loading) are not taken as already there: their join announces them
        # (player_joined) when the mailbox is read.
        online = await self.store.connected(self.keys, self.real_now)
        unread = await self.store.read_mailbox(self.keys, snap.mailbox_id, block_ms=None, count=MAILBOX_MAX_LENGTH)
        joining = {m.get("p") for _, m in unread if m.get("t") == "joined"}
        snap.connected = {pid for pid in online - state.kicked if pid in snap.players and pid not in joining}
        snap.counts.connected = snap.counts.count_sent = len(snap.connected)
        self.snap = snap
        log.info(
            "live session %s: owned by %s in state %s (question %s, %d players)",
            self.session_id, self.rt.instance_id, snap.state, snap.question_index, len(snap.players),
        )  # fmt: skip
        return True

    def _rules(self) -> Rules:
        c = self.config
        base = self.rt.config.http.public_base_url.rstrip("/")
        return Rules(
            answer_grace_ms=c.answer_grace_ms, answer_count_interval_ms=c.answer_count_interval_ms,
            player_count_interval_ms=c.player_count_interval_ms, reveal_seconds=c.reveal_seconds,
            leaderboard_seconds=c.leaderboard_seconds, idle_end_seconds=c.idle_end_seconds,
            leaderboard_size=c.leaderboard_size, results_base_url=f"{base}/api/v1/live-sessions",
        )  # fmt: skip

    async def _mail(self, messages: list[tuple[str, dict[str, str]]]) -> list[Message]:
        """The mailbox as machine messages (players the machine does not know yet read in one round trip)."""
        s = self.s
        arriving = [m["p"] for _, m in messages if m.get("t") in ("joined", "rejoined") and m.get("p")]
        unknown = [pid for pid in dict.fromkeys(arriving) if pid not in s.players]
        found = {pid: player_from(pid, info) for pid, info in (await self.store.players(self.keys, unknown)).items()}
        out: list[Message] = []
        lag = self.rt.metrics.mailbox_lag_seconds
        for message_id, m in messages:
            # A stream id is the Redis time it was posted at, in ms.
            lag.observe(max(0, self.real_now - int(message_id.split("-", 1)[0])) / 1000)
            kind = m.get("t")
            pid = m.get("p", "")
            if kind in ("joined", "rejoined"):
                out.append(machine.Arrived(message_id, pid, found.get(pid)))
            elif kind == "left":
                out.append(machine.Departed(message_id, pid))
            elif kind == "cmd":
                try:
                    args = json.loads(m.get("a") or "{}")
                except ValueError:
                    args = {}
                out.append(
                    machine.Command(
                        message_id, m.get("c", ""), args if isinstance(args, dict) else {},
                        instance=m.get("i", ""), request=m.get("req", ""),
                    )
                )  # fmt: skip
            else:
                out.append(machine.Noticed(message_id))
        return out

    # -- applying -----------------------------------------------------------

    async def _apply(self, message: Message) -> None:
        self.snap, effects = machine.transition(self.s, message, self.now)
        for effect in effects:
            await self._effect(effect)

    async def _effect(self, effect: Effect) -> None:
        if isinstance(effect, Emit):
            self.events.append({"to": effect.to, "event": effect.event, "data": effect.data})
        elif isinstance(effect, EmitEach):
            self.events.append({"to": "each", "event": effect.event, "data": effect.by_player})
        elif isinstance(effect, Detach):
            self.events.append({"op": "detach", "player_id": effect.player_id, "banned": effect.banned})
        elif isinstance(effect, Reply):
            self.replies.append({"i": effect.instance, "req": effect.request, "result": effect.result})
        elif isinstance(effect, CloseGate):
            await self._apply(await self._close_gate(effect.index))
        elif isinstance(effect, Kicked):
            pid = effect.player_id
            self.commands += [["SADD", self.keys.kicked, pid], ["ZREM", self.keys.online, pid]]
            if effect.banned:
                self.commands.append(["SADD", self.keys.banned, pid])
            elif effect.nickname:  # may come back: under the same name too (the join script's key)
                self.commands.append(["HDEL", self.keys.nicks, effect.nickname.lower()])
        elif isinstance(effect, ScoresChanged):
            self.scores_changed |= effect.player_ids
        elif isinstance(effect, Scored):
            if effect.index in self.closed:
                self.closed[effect.index] = (self.closed[effect.index][0], effect.answers)
            scored = {pid: answer.encode() for pid, answer in effect.answers.items()}
            self.commands += chunked_hset(self.keys.scored(effect.index), scored)
            self.commands.append(["PEXPIRE", self.keys.scored(effect.index), self.store.ttl_ms])
        elif isinstance(effect, MarkRunning):
            await self._mark_running()
        elif isinstance(effect, TeamsChanged):
            await self._save_team_count(effect.team_count)
        elif isinstance(effect, Persist):
            self.persist_due = effect.final or bool(self.persist_due)
        elif isinstance(effect, Finished):
            await self._commit()
            self.finished = True
            log.info("live session %s ended (%s)", self.session_id, self.s.ended_reason)

    async def _close_gate(self, index: int) -> Closed:
        """Close the gate first (no answer is accepted after it), then read what Redis recorded."""
        if not await self.store.fenced(self.keys, self.token, [["HSET", self.keys.gate, "status", "reveal"]]):
            raise LeaseLost
        recorded = await self.store.answers(self.keys, index)

        self.closed[index] = (recorded, {})
        missing = [pid for pid in recorded if pid not in self.s.players]
        found = {pid: player_from(pid, info) for pid, info in (await self.store.players(self.keys, missing)).items()}
        return Closed(index, recorded, found)

    async def _mark_running(self) -> None:
        try:
            async with self.rt.db.transaction() as conn:
                await queries.mark_running(conn, uuid.UUID(self.session_id))
        except DatabaseError:
            log.warning("live session %s: could not mark it running (it will be at the end)", self.session_id)

    async def _save_team_count(self, team_count: int | None) -> None:
        """Kept in PostgreSQL at once: joins check a picked team against it, the results read it."""
        try:
            async with self.rt.db.transaction() as conn:
                await queries.set_team_count(conn, uuid.UUID(self.session_id), team_count)
        except DatabaseError:
            log.warning("live session %s: could not store the team count (it will be at the end)", self.session_id)

    # -- committing and publishing ------------------------------------------

    async def _commit(self, *, write_snapshot: bool = False) -> None:
        """Commit the step (fenced), then publish its events and replies."""
        s = self.s
        if s.changed or write_snapshot or self.commands or self.scores_changed:
            ttl = self.store.ttl_ms
            gate = s.gate()
            commands: list[list[Any]] = [["HSET", self.keys.gate, *[x for kv in gate.items() for x in kv]]]
            commands += self.commands
            if self.scores_changed:
                players = s.players
                changed = {
                    pid: orjson.dumps(players[pid].scores()).decode() for pid in self.scores_changed if pid in players
                }
                commands += chunked_hset(self.keys.scores, changed)
            commands.append(["SET", self.keys.snap, s.encode(), "PX", ttl])
            commands += [["PEXPIRE", key, ttl] for key in self.keys.all_static() if key != self.keys.lease]
            if not await self.store.fenced(self.keys, self.token, commands):
                raise LeaseLost
            self.commands, self.scores_changed, s.changed = [], set(), False
        if self.events or self.replies:
            events, replies, self.events, self.replies = self.events, self.replies, [], []
            await self.rt.publish(self.session_id, events, replies)

    async def _state_to_everyone(self) -> None:
        """After a takeover (or the first start): every client gets the snapshot for its role."""
        s = self.s
        common = common_snapshot(s.to_json(), now=self.now.ms, player_count=s.counts.connected)
        answered: set[str] = set()
        if s.state == State.QUESTION:
            answered = set(await self.store.answers(self.keys, s.question_index))
            s.counts.answered = len(answered)
        me = {
            pid: me_entry(pid, p.nickname, p.scores(), answered_current=pid in answered)
            for pid, p in s.players.items()
            if p.active
        }
        host = host_snapshot(
            common,
            players={pid: {"nickname": p.nickname} for pid, p in s.players.items()},
            scores={pid: {"score": p.score, "team": p.team} for pid, p in s.players.items()},
            connected=s.connected,
            kicked={pid for pid, p in s.players.items() if not p.active},
            answer_count=s.counts.answered,
        )
        self.events.append({"op": "state", "common": common, "me": me, "host": host})

    # -- PostgreSQL ----------------------------------------------------------

    async def _persist(self) -> None:
        """Write the results of ended questions (and, at the end, the session) to PostgreSQL.

        Idempotent: answers are inserted once per player and question, scores
        overwritten. A failure is retried on a later step, or by the next owner.
        """
        s = self.s
        final = self.persist_due is True
        pending = [r for r in s.results if r["index"] > s.persisted_upto]
        if not pending and not final:
            return
        if not final and self.persist_failed_at and self.now.ms - self.persist_failed_at < PERSIST_RETRY_MS:
            return
        while True:
            try:
                await self._write_results(pending, final=final)
                break
            except DatabaseError as err:
                self.persist_failed_at = self.now.ms
                log.warning("live session %s: saving results failed (%s); retrying", self.session_id, err)
                if not final:
                    return
                await asyncio.sleep(PERSIST_RETRY_MS / 1000)
                if not await self.store.renew(self.keys, self.token):
                    raise LeaseLost from err
        self.persist_due = None
        for result in pending:
            self.closed.pop(result["index"], None)
        upto = pending[-1]["index"] if pending else s.persisted_upto
        await self._apply(Persisted(upto, final))
        await self._commit()

    async def _write_results(self, pending: list[dict[str, Any]], *, final: bool) -> None:
        s = self.s
        rows = [
            {
                "id": p.id, "user_id": p.user_id, "nickname": p.nickname, "joined_at": iso(p.joined_at),
                "score": p.score, "rank": p.rank, "correct_count": p.correct, "kicked_at": iso(p.kicked_at),
                "team": p.team,
            }
            for p in s.players.values()
        ]  # fmt: skip
        answers = []
        for result in pending:
            index = result["index"]
            if index in self.closed:
                recorded, scored = self.closed[index]
            else:
                recorded = await self.store.answers(self.keys, index)
                scored = await self.store.scored(self.keys, index)
            question = s.questions[index]
            for pid, answer in recorded.items():
                verdict = scored.get(pid)
                if verdict is None:  # answered, but kicked before the question was scored: not counted
                    verdict = ScoredAnswer(False, 0)
                answers.append(_answer_row(pid, question, index, answer, verdict, int(result["started_at"])))
        document = {
            "questions": [{k: v for k, v in r.items() if k not in ("started_at", "deadline")} for r in s.results],
            "leaderboard": machine.top(s) if final else None,
            "teams": s.team_board() if final and s.team_count else None,
            "ended_reason": s.ended_reason,
        }
        session_id = uuid.UUID(self.session_id)
        started = time.perf_counter()
        async with self.rt.db.transaction() as conn:
            await queries.save_players(conn, session_id, rows)
            await queries.save_answers(conn, session_id, answers)
            if final:
                await queries.mark_running(conn, session_id)
            await queries.save_results(conn, session_id, document, ended=final)
            if final:
                await queries.set_team_count(conn, session_id, s.team_count)
        log.debug(
            "live session %s: saved %d players, %d answers in %.1f ms",
            self.session_id, len(rows), len(answers), (time.perf_counter() - started) * 1000,
        )  # fmt: skip


def _answer_row(
    pid: str, question: Question, index: int, answer: Recorded, verdict: ScoredAnswer, started_at: int
) -> dict[str, Any]:
    elapsed = answer.accepted_at - started_at
    return {
        "player_id": pid, "question_id": question.id, "question_index": index, "answer": answer.answer,
        "is_correct": verdict.correct, "points": verdict.points, "response_time_ms": max(0, elapsed),
        "answered_at": iso(answer.accepted_at),
    }  # fmt: skip


def initial_snapshot(session: dict[str, Any], total_questions: int, now: int) -> dict[str, Any]:
    return Snapshot.new(session, total_questions, now).to_json()


initial_gate = machine.initial_gate
