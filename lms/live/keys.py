"""Where a live session lives in Redis: one key layout shared by the REST side and the actors.

Every key of a session carries the session id in a hash tag (``{...}``), so
that the Lua scripts that touch several of them stay on one Redis Cluster
slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionKeys:
    session_id: str
    base: str

    @property
    def gate(self) -> str:
        """HASH read by the answer and join scripts: status, question index, deadline, lock."""
        return self.base + "gate"

    @property
    def snap(self) -> str:
        """STRING: the owner's JSON snapshot (state, timers, last mailbox id, reveal data)."""
        return self.base + "snap"

    @property
    def players(self) -> str:
        """HASH player id -> JSON {nickname, user_id}."""
        return self.base + "players"

    @property
    def nicks(self) -> str:
        """HASH lower-cased nickname -> player id (uniqueness per session)."""
        return self.base + "nicks"

    @property
    def users(self) -> str:
        """HASH user id -> player id (an account plays once per session)."""
        return self.base + "users"

    @property
    def tokens(self) -> str:
        """HASH sha256(player_token) -> player id."""
        return self.base + "tokens"

    @property
    def kicked(self) -> str:
        return self.base + "kicked"

    @property
    def banned(self) -> str:
        """SET of banned player ids (also in ``kicked``): their token and account may not join again."""
        return self.base + "banned"

    @property
    def online(self) -> str:
        """ZSET player id -> presence expiry (epoch ms)."""
        return self.base + "online"

    @property
    def scores(self) -> str:
        """HASH player id -> JSON {score, streak, correct, rank}, written by the owner."""
        return self.base + "scores"

    def answers(self, index: int) -> str:
        """HASH player id -> JSON {answer, accepted_at} for one question."""
        return f"{self.base}answers:{index}"

    def tallies(self, index: int) -> str:
        """HASH option id -> players who chose it: a poll's answers counted as they come (hosts see them live)."""
        return f"{self.base}tallies:{index}"

    def scored(self, index: int) -> str:
        """HASH player id -> "<1|0>:<points>": question ``index`` as the owner scored it (what PostgreSQL gets)."""
        return f"{self.base}scored:{index}"

    @property
    def mailbox(self) -> str:
        """STREAM of commands and notices for the owner, applied in order."""
        return self.base + "mailbox"

    @property
    def lease(self) -> str:
        return self.base + "lease"

    @property
    def clock(self) -> str:
        """Tests only: a frozen 'now' (epoch ms) the scripts use instead of Redis TIME."""
        return self.base + "clock"

    def all_static(self) -> list[str]:
        return [
            self.gate, self.snap, self.players, self.nicks, self.users, self.tokens, self.kicked, self.online,
            self.scores, self.mailbox, self.lease, self.clock, self.banned,
        ]  # fmt: skip


def session_keys(prefix: str, session_id: uuid.UUID | str) -> SessionKeys:
    sid = str(session_id)
    return SessionKeys(sid, f"{prefix}:{{{sid}}}:")


# Published on ``live.channel`` by the scheduled task: every serving instance
# that hears it ends the abandoned sessions (realtime/live/abandoned.py).
SWEEP_ABANDONED = b'{"sweep":"abandoned"}'


def active_sessions_key(prefix: str) -> str:
    """ZSET session id -> last time an instance touched it: what supervisors watch."""
    return f"{prefix}:active"
