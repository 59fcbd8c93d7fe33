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
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.api.problems import Problem, TooManyRequests
from lms.appkeys import CLIENT_IP, CONFIG, REDIS
from lms.auth.guards import bearer_token
from lms.auth.tokens import InvalidToken, TokenType, verify
from lms.config import RateLimitRule, Settings

log = logging.getLogger(__name__)

# Generic cell rate algorithm: the key holds the "theoretical arrival time" of
# the next request. Modes: "hit" spends if allowed; "peek" only says whether
# one more would be allowed; "charge" spends unconditionally (a failure that
# happened), keeping the arrival time within one period so that a burst of
# concurrent failures locks the key for at most a period.
# Returns {allowed, remaining, retry_after_ms, reset_ms}.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local mode = ARGV[4]
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
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
if mode == 'hit' then
  redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
  return {1, math.floor((period - (new_tat - now)) / interval), 0, new_tat - now}
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


async def hit(redis: Redis, prefix: str, rule: RateLimitRule, key: str, mode: Mode = "hit") -> Verdict:
    period_ms = rule.period_seconds * 1000
    interval_ms = period_ms / rule.limit
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    allowed, remaining, retry_ms, reset_ms = await redis.eval(
        _GCRA, 1, f"{prefix}:{rule.name}:{digest}", str(time.time() * 1000), str(interval_ms), str(period_ms), mode
    )
    return Verdict(rule.name, rule.limit, bool(allowed), int(remaining), float(retry_ms) / 1000, float(reset_ms) / 1000)


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


def _user_key(config: Settings, request: web.Request) -> str:
    """The caller's user id from a valid token (no database trip), else the IP."""
    token = bearer_token(request)
    if token:
        try:
            return "user:" + str(verify(config, token, TokenType.ACCESS)["sub"])
        except InvalidToken:
            pass
    return "ip:" + request[CLIENT_IP]


async def _apply(request: web.Request, rules: list[tuple[RateLimitRule, str]]) -> Verdict | None:
    """Spend (``all`` rules) or check (``failures`` rules, charged later) each budget; 429 on the first refused."""
    config = request.app[CONFIG]
    redis = request.app[REDIS]
    tightest: Verdict | None = None
    try:
        for rule, key in rules:
            on_failure = rule.count == "failures"
            verdict = await hit(redis, config.rate_limit.redis_prefix, rule, key, "peek" if on_failure else "hit")
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

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not config.rate_limit.enabled or request.path.startswith(exempt) or request.method == "OPTIONS":
            return await handler(request)
        rules: list[tuple[RateLimitRule, str]] = []
        for rule in _matching(config, request, {"ip", "user"}):
            rules.append((rule, "ip:" + request[CLIENT_IP] if rule.key == "ip" else _user_key(config, request)))
        if request.path.startswith(default.path_prefix):
            rules.append((default, _user_key(config, request)))
        verdict = await _apply(request, rules) if rules else None
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
