"""Rate limits in Redis, shared by every instance (GCRA: one Lua call per rule).

Rules come from the settings: a path prefix, a limit per period, a key
(``ip``, ``user``, ``account`` or ``account_ip``) and what they count:

- ``count = "all"``: every request spends from the budget (the default);
- ``count = "failures"``: only requests that fail (a 4xx other than 429:
  a wrong password, a bad code) spend; once spent, further requests for the
  key are refused until it recovers. Successes never spend it, so a class
  of thirty signing in from one school address is not refused, and a
  stranger failing for an account from another address never locks the
  owner out (``account_ip`` counts per account *and* address).

The middleware applies ``ip`` and ``user`` rules plus a default per-user
(else per-IP) limit on the whole API; handlers apply ``account`` and
``account_ip`` rules once they know the account (the email in a login body)
with :func:`enforce_account_limits`. Failures are charged after the handler
answers. Answers carry ``RateLimit-*`` headers; refusals are 429 with
``Retry-After``.

A key busy on one instance spends ``all`` budgets from slices taken ahead
(:class:`Slices`): one Redis call per slice instead of one per request.
Every token is counted in Redis before it is spent, so a limit is never
exceeded across instances; what one instance holds unspent (at most one
slice per key, ``limit // 20`` at most) is given back with its next take.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.api.middlewares import is_websocket_upgrade
from lms.api.problems import Problem, TooManyRequests
from lms.appkeys import CLIENT_IP, CONFIG, REDIS
from lms.auth.guards import bearer_token, token_subject
from lms.config import RateLimitRule, Settings

log = logging.getLogger(__name__)

# Generic cell rate algorithm: the key holds the "theoretical arrival time" of
# the next request. Modes: "hit" gives back ARGV[6] unspent tokens, then
# spends as many of ARGV[5] as the budget allows (at least one, or none);
# "peek" only says whether one more would be allowed; "charge" spends one
# unconditionally (a failure that happened), keeping the arrival time within
# one period so that a burst of concurrent failures locks the key for at
# most a period. Returns {granted, remaining, retry_after_ms, reset_ms}.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local mode = ARGV[4]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if mode == 'hit' and tonumber(ARGV[6]) > 0 then tat = tat - tonumber(ARGV[6]) * interval end
if tat < now then tat = now end
if mode == 'hit' then
  local room = math.floor((now + period - tat) / interval + 1e-9)
  local n = math.min(tonumber(ARGV[5]), room)
  if n < 1 then
    if tonumber(ARGV[6]) > 0 and tat > now then redis.call('SET', KEYS[1], tat, 'PX', math.ceil(tat - now)) end
    return {0, 0, tat + interval - period - now, tat - now}
  end
  local taken = tat + n * interval
  redis.call('SET', KEYS[1], taken, 'PX', math.ceil(taken - now))
  return {n, math.floor((period - (taken - now)) / interval), 0, taken - now}
end
local new_tat = tat + interval
local allow_at = new_tat - period
if mode == 'charge' then
  new_tat = math.min(new_tat, now + period)
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
  return {1, math.max(0, math.floor((period - (new_tat - now)) / interval)), 0, new_tat - now}
end
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
return {1, math.floor((period - (new_tat - now)) / interval) + 1, 0, tat - now}
"""

Mode = Literal["hit", "peek", "charge"]
# Failure budgets peeked before the handler, charged after it if the request failed.
PENDING_FAILURES = web.RequestKey("rate_limit_pending_failures", list)


@dataclass(frozen=True)
class Verdict:
    rule: str
    limit: int
    allowed: bool
    remaining: int
    retry_after: float
    reset: float
    granted: int = 1


async def hit(
    redis: Redis, prefix: str, rule: RateLimitRule, key: str, mode: Mode = "hit", *, take: int = 1, give_back: int = 0
) -> Verdict:
    period_ms = rule.period_seconds * 1000
    interval_ms = period_ms / rule.limit
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    granted, remaining, retry_ms, reset_ms = await redis.eval(
        _GCRA, 1, f"{prefix}:{rule.name}:{digest}", str(time.time() * 1000), str(interval_ms), str(period_ms), mode,
        str(take), str(give_back),
    )  # fmt: skip
    return Verdict(
        rule.name, rule.limit, bool(granted), int(remaining), float(retry_ms) / 1000, float(reset_ms) / 1000,
        int(granted),
    )  # fmt: skip


# A slice unspent this long goes back with the key's next take; slices are
# at most this share of the limit, so what instances hold back stays small.
SLICE_SECONDS = 1.0
SLICE_SHARE = 20
MAX_KEYS = 50_000


@dataclass
class _Slice:
    tokens: int
    size: int
    taken_at: float
    verdict: Verdict


class Slices:
    """``all`` budgets spent from slices of the key's budget taken from Redis ahead of use, per instance.

    A key's first request takes one token, as without slices. A key whose
    slice ran out within ``SLICE_SECONDS`` asks for twice as many next time,
    up to ``limit // SLICE_SHARE``; a slice left unspent that long is given
    back with the next take. Concurrent requests of one key wait for one take.
    """

    def __init__(self) -> None:
        self._slices: dict[tuple[str, str], _Slice] = {}
        self._taking: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def hit(self, redis: Redis, prefix: str, rule: RateLimitRule, key: str) -> Verdict:
        slot = (rule.name, key)
        while True:
            current = self._slices.get(slot)
            now = time.monotonic()
            if current is not None and current.tokens > 0 and now - current.taken_at < SLICE_SECONDS:
                current.tokens -= 1
                v = current.verdict
                return Verdict(v.rule, v.limit, True, v.remaining + current.tokens, 0.0, v.reset)
            waiting = self._taking.get(slot)
            if waiting is None:
                break
            await asyncio.shield(waiting)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._taking[slot] = done
        try:
            size, give_back = 1, 0
            if current is not None:
                fresh = now - current.taken_at < SLICE_SECONDS
                give_back = 0 if fresh else current.tokens
                size = min(current.size * 2, max(1, rule.limit // SLICE_SHARE)) if fresh else 1
            verdict = await hit(redis, prefix, rule, key, take=size, give_back=give_back)
            if len(self._slices) >= MAX_KEYS and slot not in self._slices:
                self._slices.pop(next(iter(self._slices)))
            if verdict.allowed:
                self._slices[slot] = _Slice(verdict.granted - 1, size, time.monotonic(), verdict)
                return Verdict(verdict.rule, verdict.limit, True, verdict.remaining + verdict.granted - 1, 0.0,
                               verdict.reset)  # fmt: skip
            self._slices.pop(slot, None)
            return verdict
        finally:
            del self._taking[slot]
            done.set_result(None)


def failed(status: int) -> bool:
    """What a ``failures`` rule counts: the client's own errors, not being refused for rate."""
    return 400 <= status < 500 and status != 429


def _default_rule(config: Settings) -> RateLimitRule:
    return RateLimitRule(
        name="default", path_prefix="/api/", limit=config.rate_limit.default_per_minute, period_seconds=60,
        key="user", methods=("GET", "POST", "PUT", "PATCH", "DELETE"),
    )  # fmt: skip


def _matching(config: Settings, request: web.Request, keys: set[str]) -> list[RateLimitRule]:
    return [
        rule
        for rule in config.rate_limit.rules
        if rule.key in keys and request.path.startswith(rule.path_prefix) and request.method in rule.methods
    ]


def _user_key(request: web.Request) -> str:
    """The caller's user id from a valid token (no round trip), else the IP."""
    token = bearer_token(request)
    subject = token_subject(request.app, token) if token else None
    return "user:" + subject if subject else "ip:" + request[CLIENT_IP]


async def _apply(
    request: web.Request, rules: list[tuple[RateLimitRule, str]], slices: Slices | None = None
) -> Verdict | None:
    """Spend (``all`` rules) or check (``failures`` rules, charged later) each budget; 429 on the first refused."""
    config = request.app[CONFIG]
    redis = request.app[REDIS]
    prefix = config.rate_limit.redis_prefix
    tightest: Verdict | None = None
    try:
        for rule, key in rules:
            on_failure = rule.count == "failures"
            if on_failure:
                verdict = await hit(redis, prefix, rule, key, "peek")
            elif slices is not None:
                verdict = await slices.hit(redis, prefix, rule, key)
            else:
                verdict = await hit(redis, prefix, rule, key)
            if not verdict.allowed:
                retry = max(1, math.ceil(verdict.retry_after))
                raise TooManyRequests(
                    f"Too many requests; try again in {retry} s.",
                    headers={
                        "Retry-After": str(retry),
                        "RateLimit-Limit": str(verdict.limit),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(retry),
                    },
                    rule=verdict.rule,
                )
            if on_failure:
                request.setdefault(PENDING_FAILURES, []).append((rule, key))
            elif tightest is None or verdict.remaining < tightest.remaining:
                tightest = verdict
    except (RedisError, OSError) as err:
        # Availability over limiting: a Redis outage must not take the API down.
        log.warning("rate limiting skipped, Redis unavailable: %s", err)
        return None
    return tightest


async def _charge_failures(request: web.Request, status: int) -> None:
    pending = request.get(PENDING_FAILURES)
    if not pending or not failed(status):
        return
    config = request.app[CONFIG]
    try:
        for rule, key in pending:
            await hit(request.app[REDIS], config.rate_limit.redis_prefix, rule, key, "charge")
    except (RedisError, OSError) as err:
        log.warning("failure not counted, Redis unavailable: %s", err)


def rate_limit_middleware(config: Settings) -> Middleware:
    exempt = tuple(config.rate_limit.exempt_paths)
    default = _default_rule(config)
    slices = Slices()  # this app's: one per instance

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if not config.rate_limit.enabled or request.path.startswith(exempt) or request.method == "OPTIONS":
            return handler(request)
        rules: list[tuple[RateLimitRule, str]] = []
        for rule in _matching(config, request, {"ip", "user"}):
            rules.append((rule, "ip:" + request[CLIENT_IP] if rule.key == "ip" else _user_key(request)))
        if request.path.startswith(default.path_prefix):
            rules.append((default, _user_key(request)))
        if not rules and is_websocket_upgrade(request):
            # Nothing to check now or charge after, and the handler runs for the
            # connection's life: no frame of ours waits on it (lms/api/middlewares.py).
            return handler(request)
        return limited(request, handler, rules)

    async def limited(
        request: web.Request, handler: Handler, rules: list[tuple[RateLimitRule, str]]
    ) -> web.StreamResponse:
        verdict = await _apply(request, rules, slices) if rules else None
        headers = {}
        if verdict is not None:
            headers = {
                "RateLimit-Limit": str(verdict.limit),
                "RateLimit-Remaining": str(verdict.remaining),
                "RateLimit-Reset": str(max(0, math.ceil(verdict.reset))),
            }
        try:
            response = await handler(request)
        except Problem as problem:  # errors count against the budget too; say so
            problem.headers = {**headers, **problem.headers}
            await _charge_failures(request, problem.status)
            raise
        except web.HTTPException as exc:
            await _charge_failures(request, exc.status)
            raise
        await _charge_failures(request, response.status)
        response.headers.update(headers)
        return response

    return middleware


async def enforce_account_limits(request: web.Request, account: str) -> None:
    """Apply the ``account`` and ``account_ip`` rules for this path (limits per login name)."""
    config = request.app[CONFIG]
    if not config.rate_limit.enabled:
        return
    name = "account:" + account.strip().lower()
    rules = [
        (rule, name if rule.key == "account" else f"{name}|ip:{request[CLIENT_IP]}")
        for rule in _matching(config, request, {"account", "account_ip"})
    ]
    if rules:
        await _apply(request, rules)
