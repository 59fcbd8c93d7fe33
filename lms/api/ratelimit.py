"""Rate limits in Redis, shared by every instance (GCRA: one Lua call per rule).

Rules come from the settings: a path prefix, a limit per period, and a key
(``ip``, ``user`` or ``account``). The middleware applies ``ip`` and ``user``
rules plus a default per-user (else per-IP) limit on the whole API; handlers
apply ``account`` rules once they know the account (the email in a login
body) with :func:`enforce_account_limits`. Answers carry ``RateLimit-*``
headers; refusals are 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

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
# the next request. Returns {allowed, remaining, retry_after_ms, reset_ms}.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
return {1, math.floor((period - (new_tat - now)) / interval), 0, new_tat - now}
"""


@dataclass(frozen=True)
class Verdict:
    rule: str
    limit: int
    allowed: bool
    remaining: int
    retry_after: float
    reset: float


async def hit(redis: Redis, prefix: str, rule: RateLimitRule, key: str) -> Verdict:
    period_ms = rule.period_seconds * 1000
    interval_ms = period_ms / rule.limit
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    allowed, remaining, retry_ms, reset_ms = await redis.eval(
        _GCRA, 1, f"{prefix}:{rule.name}:{digest}", str(time.time() * 1000), str(interval_ms), str(period_ms)
    )
    return Verdict(rule.name, rule.limit, bool(allowed), int(remaining), float(retry_ms) / 1000, float(reset_ms) / 1000)


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
    config = request.app[CONFIG]
    redis = request.app[REDIS]
    tightest: Verdict | None = None
    try:
        for rule, key in rules:
            verdict = await hit(redis, config.rate_limit.redis_prefix, rule, key)
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
            if tightest is None or verdict.remaining < tightest.remaining:
                tightest = verdict
    except (RedisError, OSError) as err:
        # Availability over limiting: a Redis outage must not take the API down.
        log.warning("rate limiting skipped, Redis unavailable: %s", err)
        return None
    return tightest


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
            raise
        response.headers.update(headers)
        return response

    return middleware


async def enforce_account_limits(request: web.Request, account: str) -> None:
    """Apply the ``account`` rules for this path (strict limits per login name)."""
    config = request.app[CONFIG]
    if not config.rate_limit.enabled:
        return
    rules = [(rule, "account:" + account.strip().lower()) for rule in _matching(config, request, {"account"})]
    if rules:
        await _apply(request, rules)
