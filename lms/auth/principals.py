"""Access tokens checked recently, per instance: the hot path of every authenticated request.

Checking a token costs a signature check (PyJWT), a Redis round trip (its
revocation state) and a PostgreSQL query (the account: active, role,
password change). A client sends the same token with every request, so
each instance keeps, per token:

- its verified claims, until the token expires (a signature does not change);
- the :class:`~lms.auth.guards.Principal` it proved, for ``ttl`` seconds (at
  most one: ``auth.principal_cache_seconds``).

A revocation, a deactivation, a role or password change therefore takes
effect on every instance within ``ttl``: no entry older than that is used.
A token in use is checked again in the background once its entry is
``REFRESH_AFTER`` of ``ttl`` old (drawn per check), while requests go on with
the entry: an active client never waits for its check. (A request that waited
for one queued for a database connection twice, the account's and its own:
at 50 clients those were the slowest hundredth, at twice the median.) The
tokens due are checked together, a batch at a time (lms/auth/guards.py): one
Redis round trip and one account query per batch, on one connection, however
many clients. A refresh that refuses a token ends its entry at once.
The instance that makes the change forgets the user's entries at once
(:meth:`TokenCache.forget_user`), so its own next request already sees it.
Only successful checks are kept; a refused or uncheckable token (Redis down)
is checked again every time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from lms.auth.guards import Principal

MAX_ENTRIES = 20_000
# An entry is checked again in the background once it is this share of ``ttl`` old, drawn per check
# (at most 1.25 checks a second per token, against one without refreshes). Drawn, because tokens
# first checked together (a class signing in, a restart) would otherwise be checked again together,
# every time, and their burst of account reads kept every request behind it waiting for a connection.
REFRESH_AFTER = (0.8, 0.95)
# Tokens per background batch, at most (a thousand clients' refreshes, one by one and eight at a time,
# had taken the connections from the requests: p99 221 ms).
MAX_BATCH = 500


@dataclass
class _Entry:
    claims: dict[str, Any]
    expires_at: float
    principal: Principal | None = None
    checked_at: float = 0.0
    refresh_at: float = 0.0


class TokenCache:
    def __init__(self, ttl_seconds: float, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        self._by_user: dict[uuid.UUID, set[str]] = {}
        # Checks under way, by token (lms/auth/guards.py shares one among concurrent requests).
        self.checking: dict[str, asyncio.Future[Principal]] = {}
        # Every check not yet done, shared or not (forget_user drops some from ``checking``), and the
        # refresher: shutdown ends them.
        self.running: set[asyncio.Future[Any]] = set()
        self._forgotten: dict[uuid.UUID, float] = {}
        # Tokens in use whose entries are due to be checked again, in order, for the refresher's next batch.
        self.due: dict[str, None] = {}
        self.refresher: asyncio.Future[None] | None = None
        self.hits = 0
        self.misses = 0

    def claims(self, token: str) -> dict[str, Any] | None:
        """The token's verified claims, if it was verified before and has not expired."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if time.time() >= entry.expires_at:
            self._drop(token)
            return None
        return entry.claims

    def remember_claims(self, token: str, claims: dict[str, Any]) -> None:
        if token in self._entries:
            return
        if len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))  # the oldest
        self._entries[token] = _Entry(claims, float(claims["exp"]))

    def principal(self, token: str) -> Principal | None:
        """The principal this token proved less than ``ttl`` seconds ago, else None."""
        entry = self._entries.get(token)
        if entry is None or entry.principal is None or time.monotonic() - entry.checked_at >= self.ttl:
            self.misses += 1
            return None
        if time.time() >= entry.expires_at:
            self._drop(token)
            self.misses += 1
            return None
        self.hits += 1
        return entry.principal

    def refresh_due(self, token: str) -> bool:
        """The token's entry is old enough to be checked again, and no check of it is under way or waiting."""
        entry = self._entries.get(token)
        if entry is None or token in self.checking or token in self.due:
            return False
        return time.monotonic() >= entry.refresh_at

    def take_due(self, limit: int = MAX_BATCH) -> list[str]:
        """The next batch of tokens to check again, oldest due first."""
        batch = list(itertools.islice(self.due, limit))
        for token in batch:
            del self.due[token]
            entry = self._entries.get(token)
            if entry is not None:
                entry.refresh_at = math.inf  # until the batch proves it again: not due twice meanwhile
        return batch

    def forget_token(self, token: str) -> None:
        """A check refused the token: its entry proves nothing any more."""
        entry = self._entries.get(token)
        if entry is not None:
            entry.principal = None

    def remember_principal(self, token: str, principal: Principal, checked_at: float) -> None:
        """Keep a principal proved by a check that started at ``checked_at`` (monotonic)."""
        entry = self._entries.get(token)
        if self.ttl <= 0 or entry is None or checked_at <= self._forgotten.get(principal.id, -1.0):
            return  # a check that began before the user changed here proves nothing
        entry.principal, entry.checked_at = principal, checked_at
        # Not a secret: when this instance re-reads an account it already holds.
        entry.refresh_at = checked_at + self.ttl * random.uniform(*REFRESH_AFTER)
        self._by_user.setdefault(principal.id, set()).add(token)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """This instance checks the user's tokens again on their next use."""
        now = time.monotonic()
        self._forgotten = {u: at for u, at in self._forgotten.items() if now - at < self.ttl}
        self._forgotten[user_id] = now
        subject = str(user_id)
        for token in [t for t in self.checking if (self.claims(t) or {}).get("sub") == subject]:
            self.checking.pop(token, None)  # later requests start a check of their own
        for token in self._by_user.pop(user_id, set()):
            entry = self._entries.get(token)
            if entry is not None:
                entry.principal = None

    def _drop(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is not None and entry.principal is not None:
            tokens = self._by_user.get(entry.principal.id)
            if tokens is not None:
                tokens.discard(token)
                if not tokens:
                    del self._by_user[entry.principal.id]


TOKENS = web.AppKey("token_cache", TokenCache)


END_CHECKS_SECONDS = 1.0


async def end_checks(app: web.Application) -> None:
    """On shutdown, before the database and Redis close: the checks under way and the refresher end.

    Each is cancelled and given at most ``END_CHECKS_SECONDS``: a cancellation that arrived during
    the revocation check's Redis pipeline was seen not to end the check (redis-py 8.1), which then
    went on to its account read.
    """
    running = list(app[TOKENS].running)
    for check in running:
        check.cancel()
    if running:
        await asyncio.wait(running, timeout=END_CHECKS_SECONDS)


def forget_user(app: web.Application, user_id: uuid.UUID) -> None:
    """After changing what a user's tokens may do: this instance re-checks them at once."""
    cache = app.get(TOKENS)
    if cache is not None:
        cache.forget_user(user_id)
