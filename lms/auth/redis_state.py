"""What auth keeps in Redis, shared by every instance: revocations, one-time
token markers and MFA challenges. All of it expires on its own."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from enum import StrEnum

from redis.asyncio import Redis

PREFIX = "lms:auth"


def _revoked_jti(jti: str) -> str:
    return f"{PREFIX}:revoked:{jti}"


def _cutoff(user_id: str) -> str:
    return f"{PREFIX}:cutoff:{user_id}"


async def revoke_access_token(redis: Redis, jti: str, expires_at: float) -> None:
    ttl = int(expires_at - time.time()) + 1
    if ttl > 0:
        await redis.set(_revoked_jti(jti), b"1", ex=ttl)


async def revoke_all_access_tokens(redis: Redis, user_id: str, lifetime_seconds: int) -> float:
    """Access tokens of the user issued up to now are refused until they would expire anyway; returns "now"."""
    cutoff = time.time()
    await redis.set(_cutoff(user_id), str(cutoff).encode(), ex=lifetime_seconds + 1)
    return cutoff


async def is_revoked(redis: Redis, *, jti: str, user_id: str, issued_at: float) -> bool:
    (revoked,) = await revoked_among(redis, [(jti, user_id, issued_at)])
    return revoked


async def revoked_among(redis: Redis, tokens: Sequence[tuple[str, str, float]]) -> list[bool]:
    """For each token, given as (jti, user id, iat): is it revoked? One round trip for them all."""
    if not tokens:
        return []
    # GETs rather than an MGET, whose keys a Redis Cluster wants in one slot.
    async with redis.pipeline(transaction=False) as pipe:
        for jti, user_id, _ in tokens:
            pipe.get(_revoked_jti(jti))
            pipe.get(_cutoff(user_id))
        replies = await pipe.execute()
    return [
        revoked is not None or (cutoff is not None and issued_at <= float(cutoff))
        for (_, _, issued_at), revoked, cutoff in zip(tokens, replies[::2], replies[1::2], strict=True)
    ]


async def use_once(redis: Redis, jti: str, expires_at: float) -> bool:
    """True the first time a one-time token is presented, False after."""
    ttl = max(1, int(expires_at - time.time()) + 1)
    return bool(await redis.set(f"{PREFIX}:used:{jti}", b"1", nx=True, ex=ttl))


class CodeCheck(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    DEAD = "dead"  # expired, used, or out of tries


# One round trip: count the try, compare, and kill the challenge when it is
# used or its tries are spent, so that concurrent guesses cannot exceed the limit.
_CHECK_CODE = """
local fields = redis.call('HMGET', KEYS[1], 'code', 'user_id')
if not fields[1] then return 'dead' end
if fields[2] ~= ARGV[3] then return 'dead' end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) return 'dead' end
if fields[1] == ARGV[1] then redis.call('DEL', KEYS[1]) return 'ok' end
if tries >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]) end
return 'wrong'
"""


def new_code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


def _code_digest(secret_key: str, code: str) -> str:
    return hmac.new(secret_key.encode(), code.encode(), hashlib.sha256).hexdigest()


def mfa_key(purpose: str, challenge_id: str) -> str:
    return f"{PREFIX}:mfa:{purpose}:{challenge_id}"


async def store_code(redis: Redis, key: str, *, user_id: str, code: str, secret_key: str, ttl_seconds: int) -> None:
    """Store a code (hashed) for ``user_id``; a new code replaces the previous one."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"code": _code_digest(secret_key, code), "user_id": user_id, "tries": 0})
        pipe.expire(key, ttl_seconds)
        await pipe.execute()


async def check_code(redis: Redis, key: str, *, user_id: str, code: str, secret_key: str, max_tries: int) -> CodeCheck:
    result = await redis.eval(_CHECK_CODE, 1, key, _code_digest(secret_key, code), str(max_tries), user_id)
    return CodeCheck(result.decode() if isinstance(result, bytes) else result)
