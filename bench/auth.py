"""Login throughput (bcrypt at the configured cost) and the token check path.

    python -m bench.auth [--logins 200] [--me 5000] [--concurrency 50]

Starts embedded PostgreSQL and Redis and one real `lms serve` process with
bcrypt at cost 12, then drives it over HTTP from this process:
- POST /auth/login: bcrypt verify in the executor dominates;
- GET /auth/me: JWT decode + Redis revocation lookup + user load.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import aiohttp
import bcrypt
from sqlalchemy import insert

from bench.harness import ms, percentiles, platform
from lms.db import Database
from lms.tables import users

PASSWORD = "benchmark passphrase 42"


async def seed_users(database_url: str, count: int, rounds: int) -> list[str]:
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds)).decode()
    emails = [f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com" for i in range(count)]
    db = await Database.connect(database_url, min_size=1, max_size=1)
    async with db.transaction() as conn:
        for email in emails:
            await conn.execute(insert(users).values(email=email, password_hash=password_hash, full_name="Bench"))
    await db.close()
    return emails


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
    with platform() as env:
        emails = await seed_users(env.database_url, args.users, args.rounds)
        url = env.serve(LMS_AUTH_BCRYPT_ROUNDS=str(args.rounds), LMS_RATE_LIMIT_ENABLED="false")
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
            headers = {"Authorization": f"Bearer {token}"}

            async def me(i: int) -> bool:
                async with http.get("/api/v1/auth/me", headers=headers) as response:
                    await response.read()
                    return response.status == 200

            await drive(200, 10, me)
            elapsed, latencies, errors = await drive(args.me, args.concurrency, me)
            report(f"GET /auth/me (c={args.concurrency})", args.me, elapsed, latencies, errors)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--login-concurrency", type=int, default=16)
    parser.add_argument("--me", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
