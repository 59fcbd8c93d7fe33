"""Login throughput (bcrypt at the configured cost) and the token check path.

    python -m bench.auth [--logins 200] [--me 20000] [--concurrency 50]

Starts embedded PostgreSQL and Redis and one real `lms serve` process with
bcrypt at cost 12, then drives it over HTTP from this process:
- POST /auth/login: bcrypt verify in the executor dominates;
- GET /auth/me: JWT check, revocation state, the account row, each
  measured with one token (50 clients of one user), with a different user
  per request (``--me-users`` of them: what no cache helps), and with the
  rate limits of production on;
- the bare aiohttp handler (bench/load.py) in the same run: the ratio is
  the figure that holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable

import aiohttp
import bcrypt
from sqlalchemy import insert

from bench import load
from bench.harness import ms, percentiles, platform
from lms.auth.tokens import TokenType, issue
from lms.config import load_config
from lms.db import Database
from lms.tables import users

PASSWORD = "benchmark passphrase 42"


async def seed_users(database_url: str, count: int, rounds: int) -> list[tuple[uuid.UUID, str]]:
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
    people = [(uuid.uuid4(), f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com") for i in range(count)]
    db = await Database.connect(database_url, min_size=1, max_size=1)
    async with db.transaction() as conn:
        for user_id, email in people:
            await conn.execute(
                insert(users).values(id=user_id, email=email, password_hash=password_hash, full_name="Bench")
            )
    await db.close()
    return people


async def drive(total: int, concurrency: int, request: object) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)

    async def worker() -> None:
        nonlocal errors
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            ok = await request(i)  # type: ignore[operator]
            latencies.append(time.perf_counter() - started)
            errors += 0 if ok else 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies, errors


def report(name: str, total: int, elapsed: float, latencies: list[float], errors: int) -> None:
    p = percentiles(latencies)
    print(
        f"{name:<28} {total / elapsed:8.1f} req/s   p50 {ms(p['p50'])}   p99 {ms(p['p99'])}   "
        f"max {ms(p['max'])}   errors {errors}/{total}"
    )


async def main(args: argparse.Namespace) -> None:
    with platform() as env, load.reference_server() as bare:
        people = await seed_users(env.database_url, max(args.users, args.me_users), args.rounds)
        emails = [email for _, email in people[: args.users]]
        url = env.serve(LMS_AUTH_BCRYPT_ROUNDS=str(args.rounds), LMS_RATE_LIMIT_ENABLED="false")
        limited = env.serve(
            LMS_AUTH_BCRYPT_ROUNDS=str(args.rounds),
            LMS_RATE_LIMIT_ENABLED="true",
            LMS_RATE_LIMIT_DEFAULT_PER_MINUTE="1000000",
        )
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(url, connector=connector) as http:

            async def login(i: int) -> bool:
                body = {"email": emails[i % len(emails)], "password": PASSWORD}
                async with http.post("/api/v1/auth/login", json=body) as response:
                    await response.read()
                    return response.status == 200

            await drive(8, 4, login)  # warm up
            for concurrency in (1, args.login_concurrency):
                elapsed, latencies, errors = await drive(args.logins, concurrency, login)
                report(f"login (cost {args.rounds}, c={concurrency})", args.logins, elapsed, latencies, errors)

            async with http.post("/api/v1/auth/login", json={"email": emails[0], "password": PASSWORD}) as response:
                token = (await response.json())["access_token"]

        # The tokens of many users, as the server would have issued them (same settings, same secret).
        config = load_config("test", environ={})
        tokens = [issue(config, TokenType.ACCESS, str(user_id), role="student")[0] for user_id, _ in people]

        def me(base: str, token_of: Callable[[int], str]) -> load.RequestBytes:
            host = base.split("//", 1)[1]
            cache: dict[str, bytes] = {}

            def make(i: int) -> bytes:
                t = token_of(i)
                if t not in cache:
                    cache[t] = load.request_bytes(
                        "GET", "/api/v1/auth/me", host, headers={"Authorization": f"Bearer {t}"}
                    )
                return cache[t]

            return make

        c = args.concurrency
        reference = await load.measure_reference(bare, args.me, c)
        print(reference.line(f"bare aiohttp handler (c={c})"))
        scenarios = [
            (f"GET /auth/me, one user (c={c})", url, lambda i: token),
            (f"GET /auth/me, {args.me_users} users round robin (c={c})", url, lambda i: tokens[i % args.me_users]),
            (f"GET /auth/me, one user, rate limits on (c={c})", limited, lambda i: token),
        ]
        for name, base, token_of in scenarios:
            make = me(base, token_of)
            await load.warm_up(base, make, c)
            print((await load.drive(base, make, args.me, c, cpu=env.cpu_groups(base))).line(name, reference))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--login-concurrency", type=int, default=16)
    parser.add_argument("--me", type=int, default=20_000)
    parser.add_argument("--me-users", type=int, default=1000, help="users of the round-robin scenario")
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
