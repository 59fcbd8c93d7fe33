"""A live session's state in Redis: the scripts and reads the edge and the owner use.

The edge (any instance a client is connected to) joins players and accepts
answers with one script call each. The owner reads the mailbox, ticks
running questions and writes everything else through :meth:`LiveStore.fenced`,
which refuses once its lease is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from redis.asyncio import Redis, RedisCluster

from lms.config import LiveSettings
from lms.live.keys import SessionKeys, active_sessions_key, session_keys
from lms.quizzes.grading import MAX_SHORT_ANSWER_LENGTH
from lms.quizzes.question_types import WORD_CLOUD_MAX_LENGTH
from realtime.live import lua
from realtime.live.errors import LiveError
from realtime.live.machine import Recorded, ScoredAnswer

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Redis scripts take at most a few thousand arguments per command; longer
# writes are split.
MAX_PAIRS_PER_COMMAND = 500
MAILBOX_MAX_LENGTH = 10_000


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass(frozen=True)
class Joined:
    player_id: str
    resumed: bool
    # How a returning player was recognised: "token" or "user" (an account).
    how: str | None = None
    player: dict[str, Any] | None = None


@dataclass(frozen=True)
class TickReading:
    now: int
    answered: int
    connected: int
    everyone_answered: bool
    # Redis TIME even when a test froze ``now``: presence expiries are real time.
    real_now: int
    # A poll's answers counted so far (empty for other questions).
    tallies: dict[str, int] = field(default_factory=dict)


@dataclass
class View:
    """What a snapshot for one client is built from."""

    now: int
    snap: dict[str, Any] | None
    player_count: int = 0
    mine: dict[str, Any] | None = None
    answered_current: bool = False
    answer_count: int = 0
    players: dict[str, dict[str, Any]] | None = None
    scores: dict[str, dict[str, Any]] | None = None
    connected: set[str] | None = None
    kicked: set[str] | None = None


@dataclass(frozen=True)
class OwnerState:
    """Everything a (new) owner loads to resume a session."""

    snap: dict[str, Any] | None
    players: dict[str, dict[str, Any]]
    scores: dict[str, dict[str, Any]]
    kicked: set[str]


class TurnBatch(Generic[T, R]):
    """Calls made in the same event-loop turn (or within ``window_ms`` of the first) are handled together;
    each caller gets its own result.

    Thousands of answers (or leaves, when a network drops) arrive many per
    turn: one call for all of them (a pipeline; for answers one script,
    lua.ANSWER_ALL), so one write, one read and one pooled connection
    instead of one each. ``handle`` returns a result or an
    exception per item, in order; a caller returns only once Redis ran its part.
    A window of a few ms gathers answers that arrive spread out (a classroom
    answering over seconds: the profile's top item on the answer path was
    one Redis round trip per answer).
    """

    MAX_BATCH = 500

    def __init__(self, handle: Callable[[list[T]], Awaitable[list[R | Exception]]], *, window_ms: int = 0) -> None:
        self.handle = handle
        self.window = window_ms / 1000
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self.pending:
            if self.window:
                loop.call_later(self.window, self._flush)
            else:
                loop.call_soon(self._flush)
        self.pending.append((item, future))
        return await future

    def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[: self.MAX_BATCH], self.pending[self.MAX_BATCH :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self.handle([item for item, _ in batch])
        except Exception as err:
            results = [err] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _answer_json(answer: Any) -> bytes | str:
    """The answer as the script stores it: orjson (the profile's top Python item on the answer path was
    stdlib json here); json for what orjson refuses (a lone surrogate), escaped as before."""
    try:
        return orjson.dumps(answer)
    except orjson.JSONEncodeError:
        return json.dumps(answer, separators=(",", ":"))


class LiveStore:
    def __init__(self, redis: Redis, config: LiveSettings) -> None:
        self.redis = redis
        self.config = config
        self.test_clock = "1" if config.test_clock else "0"
        self.active_key = active_sessions_key(config.redis_prefix)
        # A cluster pipeline runs no scripts and no transaction across sessions' slots:
        # there a turn's answers and leaves go as concurrent calls instead.
        self.cluster = isinstance(redis, RedisCluster)
        self._answer_script = redis.register_script(lua.ANSWER)
        self._answer_all_script = redis.register_script(lua.ANSWER_ALL)
        self._answers: TurnBatch[tuple[list[Any], list[Any]], Any] = TurnBatch(
            self._answer_all, window_ms=config.answer_batch_ms
        )
        self._leaves: TurnBatch[tuple[SessionKeys, str], None] = TurnBatch(self._leave_all)
        self._join = redis.register_script(lua.JOIN)
        self._view = redis.register_script(lua.VIEW)
        self._tick = redis.register_script(lua.TICK)
        self._now = redis.register_script(lua.NOW)
        self._fenced = redis.register_script(lua.FENCED)
        self._renew = redis.register_script(lua.RENEW)
        self._release = redis.register_script(lua.RELEASE)
        self._init = redis.register_script(lua.INIT)
        self._load = redis.register_script(lua.LOAD)

    def keys(self, session_id: Any) -> SessionKeys:
        return session_keys(self.config.redis_prefix, session_id)

    @property
    def ttl_ms(self) -> int:
        return self.config.state_ttl_seconds * 1000

    # -- the edge ---------------------------------------------------------

    async def now_ms(self, keys: SessionKeys) -> int:
        return int(await self._now(keys=[keys.clock], args=[self.test_clock]))

    async def submit_answer(
        self, keys: SessionKeys, player_id: str, question_index: int, answer: Any, text_check: str = "0"
    ) -> int:
        """Record the answer once; returns when Redis accepted it (epoch ms) or raises :class:`LiveError`.

        Answers within ``live.answer_batch_ms`` of each other share one script call (:class:`TurnBatch`). With
        ``live.answer_wait_replicas`` each answer's script and a WAIT travel in a
        pipeline of their own (one connection: WAIT counts that connection's writes),
        and the answer is acknowledged only once that many replicas hold it.
        ``text_check`` is the edge's verdict on a text answer as hosts would see it
        (``0`` fine, ``1`` denied, ``2`` not showable): word clouds refuse all but ``0``.
        """
        keys_ = [keys.gate, keys.kicked, keys.clock]
        args: list[Any] = [
            keys.base, player_id, question_index, _answer_json(answer),
            self.config.answer_grace_ms, self.test_clock, self.ttl_ms, MAX_SHORT_ANSWER_LENGTH,
            WORD_CLOUD_MAX_LENGTH, text_check,
        ]  # fmt: skip
        wanted = self.config.answer_wait_replicas
        if not wanted:
            result = await self._answers((keys_, args))
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                await self._answer_script(keys=keys_, args=args, client=pipe)
                pipe.execute_command("WAIT", wanted, self.config.answer_wait_ms)
                result, replicas = await pipe.execute()
            if _text(result[0]) == "ok" and int(replicas) < wanted:
                # Recorded on the master but not yet safe from its loss: not acknowledged.
                # A retry finds it (already_answered) if the master survives.
                raise LiveError("unavailable", "Your answer could not be confirmed; send it again.")
        if _text(result[0]) != "ok":
            raise LiveError(_text(result[1]))
        return int(result[1])

    async def join(
        self,
        keys: SessionKeys,
        *,
        presented_token: str | None,
        new_token: str,
        user_id: str | None,
        new_player_id: str,
        nickname: str,
        player: dict[str, Any],
        presence_expiry_ms: int,
        resume_only: bool = False,
        generated: bool = False,
    ) -> Joined:
        result = await self._join(
            keys=[keys.gate, keys.players, keys.nicks, keys.users, keys.tokens, keys.kicked, keys.online, keys.mailbox,
                  keys.banned],
            args=[
                token_hash(presented_token) if presented_token else "", token_hash(new_token), user_id or "",
                new_player_id, nickname.lower(), json.dumps(player), self.config.max_players, presence_expiry_ms,
                MAILBOX_MAX_LENGTH, "1" if resume_only else "0", int(self.config.resume_grace_seconds * 1000),
                "1" if generated else "0",
            ],
        )  # fmt: skip
        kind = _text(result[0])
        if kind == "err":
            raise LiveError(_text(result[1]))
        if kind == "joined":
            return Joined(_text(result[1]), resumed=False)
        info = json.loads(result[2]) if result[2] else None
        return Joined(_text(result[1]), resumed=True, how=_text(result[3]), player=info)

    async def leave(self, keys: SessionKeys, player_id: str) -> None:
        """A player's last connection closed: no longer counted as connected; the owner tells the hosts.

        The entry stays, expired, so that the player keeps a seat for the
        resume grace (``XX``: a kicked player, already removed, is not re-added).
        Leaves of one event-loop turn (a dropped network takes hundreds at
        once) share one transaction, and so one pooled connection.
        """
        await self._leaves((keys, player_id))

    async def _leave_all(self, batch: list[tuple[SessionKeys, str]]) -> list[Exception | None]:
        gone = int(time.time() * 1000) - 1
        if self.cluster:
            for keys, player_id in batch:
                await self.redis.zadd(keys.online, {player_id: gone}, xx=True)
                await self.redis.xadd(
                    keys.mailbox, {"t": "left", "p": player_id}, maxlen=MAILBOX_MAX_LENGTH, approximate=True
                )
            return [None] * len(batch)
        async with self.redis.pipeline(transaction=True) as pipe:
            for keys, player_id in batch:
                pipe.zadd(keys.online, {player_id: gone}, xx=True)
                pipe.xadd(keys.mailbox, {"t": "left", "p": player_id}, maxlen=MAILBOX_MAX_LENGTH, approximate=True)
            await pipe.execute()
        return [None] * len(batch)

    async def _answer_all(self, batch: list[tuple[list[Any], list[Any]]]) -> list[Any]:
        if self.cluster:
            calls = (self._answer_script(keys=keys, args=args) for keys, args in batch)
            return list(await asyncio.gather(*calls, return_exceptions=True))
        # One call for the turn (lua.ANSWER_ALL); the Script loads itself again if Redis lost its cache.
        keys = [key for item_keys, _ in batch for key in item_keys]
        args = [arg for _, item_args in batch for arg in item_args]
        return list(await self._answer_all_script(keys=keys, args=args))

    async def refresh_presence(self, entries: Iterable[tuple[SessionKeys, list[str]]], expiry_ms: int) -> None:
        """Keep this instance's connected players counted (kicked and departed ones are not in the list)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, players in entries:
                if players:
                    pipe.zadd(keys.online, dict.fromkeys(players, expiry_ms))
            await pipe.execute()

    async def view(self, keys: SessionKeys, *, player_id: str | None = None, host: bool = False) -> View:
        result = await self._view(
            keys=[keys.snap, keys.online, keys.scores, keys.clock, keys.kicked, keys.players, keys.gate],
            args=[keys.base, player_id or "", self.test_clock, "1" if host else "0"],
        )
        now = int(result[0])
        if not result[1]:
            return View(now, None)
        view = View(
            now,
            json.loads(result[1]),
            player_count=int(result[2]),
            mine=json.loads(result[3]) if result[3] else None,
            answered_current=bool(int(result[4])),
            answer_count=int(result[5]),
        )
        if host:
            view.players = {k: json.loads(v) for k, v in _pairs(result[6]).items()}
            view.scores = {k: json.loads(v) for k, v in _pairs(result[7]).items()}
            view.connected = {_text(m) for m in result[8]}
            view.kicked = {_text(m) for m in result[9]}
        return view

    async def tallies(self, keys: SessionKeys, question_index: int) -> dict[str, int]:
        """A poll's answers so far, as the answer script counts them."""
        flat = await self.redis.hgetall(keys.tallies(question_index))  # type: ignore[misc]
        return {_text(k): int(v) for k, v in flat.items()}

    async def post(self, keys: SessionKeys, message: dict[str, str]) -> str:
        """Append a message to the session's mailbox (host commands, presence notices)."""
        return _text(
            await self.redis.xadd(keys.mailbox, message, maxlen=MAILBOX_MAX_LENGTH, approximate=True)  # type: ignore[arg-type]
        )

    async def initialize(self, keys: SessionKeys, gate: dict[str, Any], snap: dict[str, Any]) -> bool:
        """Create the session's gate and first snapshot unless they exist (any instance may race here)."""
        # Listed for the supervisors first (NX: an existing entry keeps its time): the active set
        # is not in the session's hash slot, so it cannot be in the script on a Redis Cluster.
        # Listing a session that turns out to exist already, or to have ended, costs a supervisor one look.
        # Scored 0, "not marked yet": a supervisor looks at it on its next round (owners mark theirs
        # with the wall clock each round: LiveRuntime._supervise_once).
        await self.redis.zadd(self.active_key, {keys.session_id: 0}, nx=True)
        created = await self._init(keys=[keys.gate, keys.snap], args=[json.dumps(gate), json.dumps(snap), self.ttl_ms])
        return bool(created)

    async def exists(self, keys: SessionKeys) -> bool:
        return bool(await self.redis.exists(keys.gate))

    # -- ownership --------------------------------------------------------

    async def acquire(self, keys: SessionKeys, token: str) -> bool:
        return bool(await self.redis.set(keys.lease, token, nx=True, px=self.config.lease_ttl_ms))

    async def acquire_many(self, claims: Sequence[tuple[SessionKeys, str]]) -> list[bool]:
        """:meth:`acquire` for each (keys, token), in one round trip (the supervisor's sweep of orphans)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, token in claims:
                pipe.set(keys.lease, token, nx=True, px=self.config.lease_ttl_ms)
            return [bool(r) for r in await pipe.execute()]

    async def renew(self, keys: SessionKeys, token: str) -> bool:
        """Extend the lease if ``token`` holds it (owners' leases are renewed by realtime/live/leases.py)."""
        return bool(await self._renew(keys=[keys.lease], args=[token, self.config.lease_ttl_ms]))

    async def release(self, keys: SessionKeys, token: str) -> bool:
        released = bool(await self._release(keys=[keys.lease], args=[token]))
        if released:  # unmarked: the next supervisor round anywhere looks at it, without waiting for it to go quiet
            await self.redis.zadd(self.active_key, {keys.session_id: 0}, xx=True)
        return released

    async def active_sessions(self, *, marked_before_ms: int | None = None) -> list[str]:
        """Every session in play, or those their owner last marked (wall clock, ms) before the given time."""
        if marked_before_ms is None:
            return [_text(m) for m in await self.redis.zrange(self.active_key, 0, -1)]
        return [_text(m) for m in await self.redis.zrangebyscore(self.active_key, "-inf", f"({marked_before_ms}")]

    # -- the owner --------------------------------------------------------

    async def fenced(self, keys: SessionKeys, token: str, commands: list[list[Any]]) -> bool:
        """Run the commands atomically if ``token`` still holds the lease; False when fenced off."""
        if not commands:
            return True
        payload = orjson.dumps([[str(part) for part in command] for command in commands])
        return bool(await self._fenced(keys=[keys.lease], args=[token, payload]))

    async def load(self, keys: SessionKeys) -> OwnerState:
        snap, players, scores, kicked = await self._load(keys=[keys.snap, keys.players, keys.scores, keys.kicked])
        return OwnerState(
            snap=json.loads(snap) if snap else None,
            players={k: json.loads(v) for k, v in _pairs(players).items()},
            scores={k: orjson.loads(v) for k, v in _pairs(scores).items()},
            kicked={_text(m) for m in kicked},
        )

    async def players(self, keys: SessionKeys, player_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not player_ids:
            return {}
        values = await self.redis.hmget(keys.players, list(player_ids))
        return {pid: json.loads(v) for pid, v in zip(player_ids, values, strict=True) if v}

    async def read_mailbox(
        self, keys: SessionKeys, after: str, *, block_ms: int | None, count: int = 500
    ) -> list[tuple[str, dict[str, str]]]:
        if block_ms is not None and block_ms <= 0:
            block_ms = None
        result: Any = await self.redis.xread({keys.mailbox: after}, count=count, block=block_ms)
        if not result:
            return []
        # RESP2: [[stream, [(id, {field: value}), ...]]]
        entries = result[0][1]
        return [(_text(mid), {_text(k): _text(v) for k, v in fields.items()}) for mid, fields in entries]

    async def tick(self, keys: SessionKeys, question_index: int) -> TickReading:
        now, answered, connected, everyone, real_now, flat = await self._tick(
            keys=[keys.answers(question_index), keys.online, keys.clock, keys.tallies(question_index)],
            args=[self.test_clock],
        )
        tallies = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return TickReading(int(now), int(answered), int(connected), bool(int(everyone)), int(real_now), tallies)

    async def answers(self, keys: SessionKeys, question_index: int) -> dict[str, Recorded]:
        raw = await self.redis.hgetall(keys.answers(question_index))
        recorded = {}
        for pid, value in raw.items():
            stamp, _, answer = _text(value).partition(":")
            recorded[_text(pid)] = Recorded(int(stamp), orjson.loads(answer))
        return recorded

    async def scored(self, keys: SessionKeys, question_index: int) -> dict[str, ScoredAnswer]:
        raw = await self.redis.hgetall(keys.scored(question_index))
        return {_text(pid): ScoredAnswer.decode(_text(value)) for pid, value in raw.items()}

    async def connected(self, keys: SessionKeys, now_ms: int) -> set[str]:
        return {_text(m) for m in await self.redis.zrangebyscore(keys.online, f"({now_ms}", "+inf")}

    async def forget(self, session_id: str) -> None:
        """Stop watching a session (ended, or gone from Redis)."""
        await self.redis.zrem(self.active_key, session_id)


def chunked_hset(key: str, mapping: dict[str, str]) -> list[list[Any]]:
    """HSET commands for :meth:`LiveStore.fenced`, split to stay within Lua's argument limits."""
    items = list(mapping.items())
    commands: list[list[Any]] = []
    for start in range(0, len(items), MAX_PAIRS_PER_COMMAND):
        command: list[Any] = ["HSET", key]
        for name, value in items[start : start + MAX_PAIRS_PER_COMMAND]:
            command += [name, value]
        commands.append(command)
    return commands
