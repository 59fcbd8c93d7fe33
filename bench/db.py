"""The data layer's own cost per checkout and per statement, in this process, against embedded PostgreSQL.

    python -m bench.db [--rounds 10000]

Prints CPU time (this process's, ``time.process_time``) and wall time per
operation, one after the other on one connection at a time:
- a checkout and its return (``async with db.connection()``), with nothing run;
- a checkout with one short statement (``SELECT 1``): what the hottest reads pay besides their query;
- the reference in the same run: the same statement on a bare aiopg connection and cursor
  (no pool, no checkout), the floor of aiopg itself.
The wall time includes PostgreSQL's side and the wake-ups between the two processes; the
CPU time is this process's alone, the figure to compare.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

import aiopg
import uvloop

from bench.harness import platform
from lms.db import Database


async def timed(label: str, step: Callable[[], Awaitable[None]], rounds: int) -> None:
    for _ in range(min(500, rounds)):  # warm: connections open, statements cached
        await step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await step()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:<44} cpu {cpu / rounds * 1e6:6.1f} µs   wall {wall / rounds * 1e6:6.1f} µs")


async def main(database_url: str, rounds: int) -> None:
    db = await Database.connect(database_url, min_size=1, max_size=8)
    bare = await aiopg.connect(database_url, enable_hstore=False)
    cursor = await bare.cursor()

    async def checkout() -> None:
        async with db.connection():
            pass

    async def checkout_and_select() -> None:
        async with db.connection() as conn:
            await conn.fetch_val("SELECT 1")

    async def bare_select() -> None:
        await cursor.execute("SELECT 1")
        await cursor.fetchone()

    try:
        await timed("checkout + return", checkout, rounds)
        await timed("checkout + SELECT 1 + return", checkout_and_select, rounds)
        await timed("reference: bare aiopg cursor, SELECT 1", bare_select, rounds)
    finally:
        bare.close()
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10_000)
    args = parser.parse_args()
    with platform() as servers:
        uvloop.run(main(servers.database_url, args.rounds))
