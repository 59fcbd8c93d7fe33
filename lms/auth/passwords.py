"""bcrypt off the event loop, and the password policy."""

from __future__ import annotations

import asyncio
import functools

import bcrypt

from lms.api.problems import FieldError

BCRYPT_MAX_BYTES = 72
# A short deny-list of the passwords every credential-stuffing list starts with.
DENIED = frozenset(
    {
        "password", "password1", "password123", "passw0rd", "123456789", "1234567890", "12345678910",
        "qwertyuiop", "qwerty123", "1q2w3e4r5t", "iloveyou", "letmein123", "welcome123", "admin12345",
        "abc1234567", "football", "baseball", "sunshine12", "princess12", "changeme", "changeme123",
        "trustno1", "11111111", "000000000", "aaaaaaaaaa",
    }
)  # fmt: skip


def policy_errors(password: str, *, email: str, min_length: int) -> list[FieldError]:
    """Reasons the password is refused, for a 422 (empty when it is acceptable)."""
    problems: list[str] = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    if len(password.encode()) > BCRYPT_MAX_BYTES:
        problems.append(f"must be at most {BCRYPT_MAX_BYTES} bytes")
    lowered = password.lower()
    local_part = email.lower().split("@", 1)[0]
    if lowered == email.lower() or (len(local_part) >= 4 and local_part in lowered):
        problems.append("must not contain your email address")
    if lowered in DENIED or len(set(password)) <= 2:
        problems.append("is too common; choose a less guessable one")
    return [{"field": "password", "message": f"Password {p}."} for p in problems]


async def hash_password(password: str, rounds: int) -> str:
    loop = asyncio.get_running_loop()
    salt = bcrypt.gensalt(rounds)
    hashed = await loop.run_in_executor(None, bcrypt.hashpw, password.encode(), salt)
    return hashed.decode()


async def verify_password(password: str, hashed: str) -> bool:
    encoded = password.encode()
    if len(encoded) > BCRYPT_MAX_BYTES:
        return False
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, bcrypt.checkpw, encoded, hashed.encode())


@functools.cache
def dummy_hash(rounds: int) -> str:
    """A hash to check against when the account does not exist, so both paths cost the same."""
    return bcrypt.hashpw(b"no-such-account-placeholder", bcrypt.gensalt(rounds)).decode()


async def burn_equal_time(password: str, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    hashed = await loop.run_in_executor(None, dummy_hash, rounds)
    await verify_password(password, hashed)
