"""Live quiz at scale: thousands of players across two `lms serve` processes.

    python3 bench/live.py [--players 2000] [--questions 10] [--window 5] [--failover] [--player-processes 2]

Starts embedded PostgreSQL and Redis and two real `lms serve` processes
(production-like live settings), seeds a published quiz and a session, then
connects the players as raw Socket.IO v5 websocket clients from Node
(bench/live_players.js, two processes: see ``Players``; half the players on
each instance; a python-socketio client per player would cost this machine
more CPU than the servers). The host drives the game; each player
answers every question at a random moment inside the answer window; one
player never answers, so every question ends at its deadline.

Prints per question and overall: question_started delivery (from the
server's started_at to receipt: p50/p99/last), answer ack round trip
(p50/p99), time from the deadline to question_ended at the players, answers
lost (acknowledged but not in PostgreSQL; must be 0) and server CPU per
player per question (both `lms serve` processes, from /proc).

With --failover the instance owning the session is SIGKILLed in the middle
of a question's answer window: its players reconnect to the other instance
with their player token and carry on; prints the time until the survivor's
`session_state` reaches the players (the takeover) and until every moved
player resumed.

Everything runs on this machine: client, servers, Redis and PostgreSQL share
its cores, so latencies include the load generator's own scheduling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import bcrypt
import redis.asyncio as aioredis
from sqlalchemy import insert, select

from bench.harness import ensure_node_modules, percentiles, platform, shares
from lms.db import Database
from lms.tables import courses, live_answers, live_sessions, quiz_questions, quizzes, users

PLAYERS_SCRIPT = Path(__file__).resolve().parent / "live_players.js"
PASSWORD = "benchmark passphrase 42"
NS = "/live"
LIVE_SETTINGS = {
    # Production-like live settings (the test environment's are shortened).
    "LMS_LIVE_TEST_CLOCK": "false",
    "LMS_LIVE_LEASE_TTL_MS": "1500",
    "LMS_LIVE_LEASE_RENEW_INTERVAL_MS": "500",
    "LMS_LIVE_SUPERVISOR_INTERVAL_MS": "250",
    "LMS_LIVE_PRESENCE_TTL_SECONDS": "15",
    "LMS_LIVE_PLAYER_COUNT_INTERVAL_MS": "500",
    "LMS_LIVE_MAX_PLAYERS": "10000",
    "LMS_REALTIME_PRESENCE_TTL_SECONDS": "60",
    "LMS_REALTIME_HEARTBEAT_INTERVAL_SECONDS": "5",
    "LMS_LOG_LEVEL": "WARNING",
}


def clock_ms() -> float:
    return time.time() * 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(samples: list[float]) -> str:
    if not samples:
        return "-"
    p = percentiles(samples)
    return f"p50 {p['p50']:.0f} ms, p99 {p['p99']:.0f} ms, last {p['max']:.0f} ms"


# -- seeding ---------------------------------------------------------------------


async def seed(database_url: str, questions: int, time_limit: int) -> dict[str, Any]:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    email = f"host-{uuid.uuid4().hex[:6]}@example.com"
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    options = [{"id": k, "text": f"Option {k}"} for k in "abcd"]
    async with db.transaction() as conn:
        teacher = await conn.fetch_one(
            insert(users).values(email=email, password_hash=password_hash, full_name="Host", role="instructor")
            .returning(users.c.id)
        )  # fmt: skip
        assert teacher is not None
        course = await conn.fetch_one(
            insert(courses).values(
                title="Bench course", slug=f"bench-{uuid.uuid4().hex[:8]}", instructor_id=teacher["id"],
                is_published=True,
            ).returning(courses.c.id)
        )  # fmt: skip
        assert course is not None
        quiz = await conn.fetch_one(
            insert(quizzes)
            .values(course_id=course["id"], title="Bench quiz", is_published=True)
            .returning(quizzes.c.id)
        )
        assert quiz is not None
        for n in range(questions):
            await conn.execute(
                insert(quiz_questions).values(
                    quiz_id=quiz["id"], question_text=f"Question {n}", question_type="single_choice",
                    options=options, correct_answer="abcd"[n % 4], points=1, position=n,
                )
            )  # fmt: skip
        session = await conn.fetch_one(
            insert(live_sessions).values(
                quiz_id=quiz["id"], host_id=teacher["id"], pin=f"{random.randrange(10**6):06d}", allow_guests=True,
                question_time_limit_seconds=time_limit, total_questions=questions,
            ).returning(live_sessions.c.id, live_sessions.c.pin)
        )  # fmt: skip
        assert session is not None
    await db.close()
    return {"email": email, "session_id": str(session["id"]), "pin": session["pin"]}


async def stored_answers(database_url: str, session_id: str) -> set[tuple[str, int]]:
    db = await Database.connect(database_url, min_size=1, max_size=1)
    async with db.connection() as conn:
        rows = await conn.fetch_all(
            select(live_answers.c.player_id, live_answers.c.question_index).where(
                live_answers.c.session_id == session_id
            )
        )
    await db.close()
    return {(str(r["player_id"]), r["question_index"]) for r in rows}


# -- a raw Socket.IO v5 client -------------------------------------------------------


class RawClient:
    """Engine.IO v4 / Socket.IO v5 over one websocket, namespace /live only."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.waiters: dict[str, list[asyncio.Future[Any]]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, base: str, token: str | None = None) -> None:
        self.closed.clear()
        self.ws = await self.http.ws_connect(base + "/socket.io/?EIO=4&transport=websocket", heartbeat=None)
        opening = await self.ws.receive_str()
        assert opening.startswith("0"), opening
        await self.ws.send_str("40/live," + (json.dumps({"token": token}) if token else ""))
        while True:
            frame = await self.ws.receive_str()
            if frame.startswith("40/live,"):
                break
            if frame.startswith("44/live,"):
                raise RuntimeError(f"refused: {frame}")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame: str = message.data
                if frame == "2":
                    await self.ws.send_str("3")
                elif frame.startswith("42/live,"):
                    received = clock_ms()
                    body = frame[8:]
                    name = body[2 : body.index('"', 2)]
                    self.on_event(name, body, received)
                elif frame.startswith("43/live,"):
                    body = frame[8:]
                    digits = len(body) - len(body.lstrip("0123456789"))
                    future = self.acks.pop(int(body[:digits]), None)
                    if future is not None and not future.done():
                        future.set_result(json.loads(body[digits:])[0])
        except (aiohttp.ClientError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            for future in self.acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self.acks.clear()

    def on_event(self, name: str, body: str, received: float) -> None:
        waiters = self.waiters.pop(name, None)
        if waiters:
            data = json.loads(body)[1]
            for future in waiters:
                if not future.done():
                    future.set_result((data, received))

    def wait(self, name: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(name, []).append(future)
        return future

    async def call(self, event: str, payload: Any, wait_seconds: float = 30) -> Any:
        assert self.ws is not None
        self.next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[self.next_id] = future
        await self.ws.send_str(f"42/live,{self.next_id}" + json.dumps([event, payload], separators=(",", ":")))
        return await asyncio.wait_for(future, wait_seconds)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


async def login(url: str, email: str) -> str:
    body = {"email": email, "password": PASSWORD}
    async with aiohttp.ClientSession() as http, http.post(url + "/api/v1/auth/login", json=body) as response:
        return str((await response.json())["access_token"])


async def until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


# -- the game ------------------------------------------------------------------------


class Players:
    """The Node load generator (bench/live_players.js): ``processes`` of them, each with its share of the
    players, and their JSON lines.

    One Node process reads every frame on one core: at 5,000 players its
    own reading of a broadcast took longer than the servers' writing of it,
    and its timing of the later arrivals measured itself. Two processes (the
    default) read in parallel, as separate devices would; they still share
    the machine's two cores with the servers. Exactly one player of them all
    never answers.
    """

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes
        self.seen: list[dict[str, Any]] = [{} for _ in processes]

    @classmethod
    async def start(cls, config: dict[str, Any], processes: int) -> Players:
        started, offset = [], 0
        for j, share in enumerate(shares(config["n"], processes)):
            spec = config | {"n": share, "offset": offset, "silent": j == 0}
            offset += share
            started.append(await asyncio.create_subprocess_exec(
                "node", str(PLAYERS_SCRIPT), json.dumps(spec),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024,
            ))  # fmt: skip
        return cls(started)

    async def send(self, line: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write((line + "\n").encode())
            await process.stdin.drain()

    async def expect(self, key: str, seconds: float = 120) -> list[Any]:
        """``key``'s value from every process (in their order), once each has sent it."""
        deadline = time.monotonic() + seconds
        return list(await asyncio.gather(*(self._expect(j, key, deadline) for j in range(len(self.processes)))))

    async def _expect(self, j: int, key: str, deadline: float) -> Any:
        stdout, seen = self.processes[j].stdout, self.seen[j]
        assert stdout is not None
        while key not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {key!r} from the players")
            line = await asyncio.wait_for(stdout.readline(), left)
            if not line:
                raise RuntimeError("the players' process ended")
            seen.update(json.loads(line))
        return seen.pop(key)

    def also(self, key: str) -> list[Any]:
        """A field that came with the last expected line, from every process."""
        return [seen.pop(key) for seen in self.seen]

    async def wait(self) -> None:
        for process in self.processes:
            await process.wait()


def merged_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The processes' raw figures as one: per question, every player's."""
    questions: dict[int, dict[str, Any]] = {}
    for report in reports:
        for q in report["questions"]:
            into = questions.setdefault(q["index"], {"index": q["index"], "delivery": [], "acks": [], "ended": []})
            for key in ("delivery", "acks", "ended"):
                into[key] += q[key]
    return {
        "questions": [questions[i] for i in sorted(questions)],
        "acked": [pair for report in reports for pair in report["acked"]],
        "cpu_seconds": sum(report["cpu_seconds"] for report in reports),
    }


async def play(args: argparse.Namespace, urls: list[str], pids: list[int], database_url: str, redis_url: str) -> None:
    limit_s = int(args.window) + 1
    seeded = await seed(database_url, args.questions, limit_s)
    http = aiohttp.ClientSession()
    host = RawClient(http)
    await host.connect(urls[0], await login(urls[0], seeded["email"]))
    assert (await host.call("host_session", {"session_id": seeded["session_id"]}))["ok"]
    players = await Players.start(
        {"urls": urls, "n": args.players, "pin": seeded["pin"], "window_ms": args.window * 1000, "concurrency": 100},
        args.player_processes,
    )
    joined = sum(await players.expect("joined", max(120, args.players / 20)))
    print(f"{joined} players joined in {max(players.also('seconds')):.1f} s (half on each instance, "
          f"{args.player_processes} Node processes), {sum(players.also('failed'))} failed")  # fmt: skip
    redis = aioredis.Redis.from_url(redis_url)
    redis_pid = int((await redis.info("server"))["process_id"])
    await redis.aclose()
    cpu_before = [cpu_seconds(pid) for pid in [*pids, redis_pid]]
    kill_at = args.questions // 2 if args.failover else None
    for index in range(args.questions):
        assert (await host.call("start_session" if index == 0 else "next", {}))["ok"]
        if index == kill_at:
            await asyncio.sleep(args.window / 2)
            await players.send(f"arm {urls[0]}")
            await players.expect("armed")
            os.kill(pids[0], signal.SIGKILL)  # the owner: the host connected there first
            await players.send(f"killed {clock_ms():.0f}")
            print(f"  q{index}: SIGKILL of the owner instance mid-window")
            await host.close()
            host = RawClient(http)
            await host.connect(urls[1], await login(urls[1], seeded["email"]))
            assert (await host.call("host_session", {"session_id": seeded["session_id"]}))["ok"]
        await players.send(f"wait {index}")
        await players.expect("done")
        assert (await host.call("next", {}))["ok"]  # reveal -> leaderboard
    cpu_after = [cpu_seconds(pid) if pid != pids[0] or kill_at is None else 0.0 for pid in [*pids, redis_pid]]
    assert (await host.call("next", {}))["state"] == "ended"
    await players.send("final")
    await players.expect("final")
    failover = None
    if args.failover:  # the first session_state of the new owner anyone saw; the last player to resume
        moved = await players.expect("failover", 5)
        failover = {
            "takeover_ms": min(m["takeover_ms"] for m in moved),
            "resumed_ms": max(m["resumed_ms"] for m in moved),
        }
    await players.send("report")
    report = merged_report(await players.expect("report"))
    await players.wait()
    await host.close()
    takeovers = await count_takeovers(http, urls if kill_at is None else urls[1:])
    await http.close()
    stored = await stored_answers(database_url, seeded["session_id"])
    acknowledged = {(pid, index) for pid, index in report["acked"]}
    lost = acknowledged - stored

    for q in report["questions"]:
        print(f"  q{q['index']}: question_started {pct(q['delivery'])}; answer ack {pct(q['acks'])}; "
              f"{len(q['acks'])} answers; deadline -> question_ended {pct(q['ended'])}")  # fmt: skip
    print()
    print("overall")
    # The question the owner died in is reported above, not in the overall figures.
    every = [q for q in report["questions"] if q["index"] != kill_at]
    print("  question_started delivery (started_at -> received):", pct([v for q in every for v in q["delivery"]]))
    print("  answer ack round trip:", pct([v for q in every for v in q["acks"]]))
    print("  deadline -> question_ended received:", pct([v for q in every for v in q["ended"]]),
          f"(grace {250} ms included)")  # fmt: skip
    print(f"  answers acknowledged {len(acknowledged)}, stored {len(stored & acknowledged)}, lost {len(lost)}")
    servers = sum(cpu_after[:2]) - sum(cpu_before[:2]) if kill_at is None else None
    if servers is not None:
        per = servers / (args.players * args.questions) * 1e6
        print(f"  server CPU (2 x lms serve, first question to the end): {servers:.1f} s = {per:.0f} µs per player "
              "per question")  # fmt: skip
    redis_cpu = cpu_after[-1] - cpu_before[-1]
    print(f"  Redis CPU {redis_cpu:.1f} s; load generator (Node) CPU {report['cpu_seconds']:.1f} s")
    whose = "the survivor's, after the SIGKILL" if kill_at is not None else "must be 0: no live owner lost its session"
    print(f"  takeovers (lms_live_takeovers_total of the running instances): {takeovers} ({whose})")
    if failover:
        print(f"  failover: session_state from the new owner {failover['takeover_ms'] / 1000:.2f} s after SIGKILL; "
              f"every moved player resumed {failover['resumed_ms'] / 1000:.2f} s after it")  # fmt: skip
    if lost:
        raise SystemExit(f"{len(lost)} acknowledged answers lost")


async def count_takeovers(http: aiohttp.ClientSession, urls: list[str]) -> int:
    """Sessions an instance took over from another (the lease was free): 0 in a steady run."""
    total = 0.0
    for url in urls:
        async with http.get(f"{url}/metrics") as response:
            text = await response.text()
        lines = text.splitlines()
        total += sum(float(line.split()[-1]) for line in lines if line.startswith("lms_live_takeovers_total"))
    return int(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--window", type=float, default=5.0, help="seconds in which players answer")
    parser.add_argument("--failover", action="store_true", help="SIGKILL the owner mid-question")
    parser.add_argument(
        "--player-processes", type=int, default=2, help="Node processes sharing the players (one per core here)"
    )
    args = parser.parse_args()
    if args.player_processes < 1:
        parser.error("--player-processes must be at least 1")
    ensure_node_modules()
    with platform() as plat:
        urls = [plat.serve(**LIVE_SETTINGS) for _ in range(2)]
        pids = [p.pid for p in plat.servers]
        mode = "failover run" if args.failover else "steady run"
        print(f"live bench ({mode}): {args.players} players, {args.questions} questions, {args.window:g} s window")
        asyncio.run(play(args, urls, pids, plat.database_url, plat.redis_url))


if __name__ == "__main__":
    main()
