"""Socket.IO fan-out: one room of N clients split across two `lms serve` instances.

    python -m bench.fanout [--clients 1000 5000] [--rate 2] [--messages 20] [--size 400] [--stock | --direct]
                           [--client-processes 2]

Each N is measured twice in the same run, with the platform's delivery and
with stock python-socketio's (``realtime.direct_broadcast`` off) as the
reference, so the ratio holds on a noisy machine (``--direct``/``--stock``:
only one of them).

For each N: embedded PostgreSQL and Redis, two fresh `lms serve` processes,
N websocket clients (bench/fanout_clients.js: Node speaking the Socket.IO
protocol over `ws`, cheaper per message than the server; two processes
share them, see ``Clients``) connected round-robin to the two instances,
all watching one course on /dashboard.
This process then emits a ~``--size``-byte event to the room ``--rate``
times a second through the write-only emitter (Redis pub/sub, as a job
would); each instance delivers to its own clients. Clients record arrival
against the send timestamp (same machine, same clock).

Printed per N:
- delivery latency per broadcast: first, p50, p99 and last recipient
  (medians over the broadcasts; the worst broadcast in brackets);
- server CPU per recipient: user+system time of both server processes
  (/proc/<pid>/stat) during the broadcasts, minus their idle rate measured
  just before, divided by the deliveries;
- memory per connection: growth of both servers' RSS from before the
  clients connected to after, divided by N;
- CPU of a bystander: a third `lms serve` with no member of the room, per
  broadcast (it should receive nothing: rooms have their own channels);
- the load generator's own CPU per delivery, to show it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import bcrypt
from sqlalchemy import insert

from bench.harness import NODE_MODULES, Platform, ensure_node_modules, percentiles, platform, shares
from lms.config import load_config
from lms.db import Database
from lms.tables import courses, users
from realtime.context import DASHBOARD_NAMESPACE, course_room
from realtime.emitter import Emitter

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchmark passphrase 42"
WARMUP_MESSAGES = 3
IDLE_SECONDS = 3.0

# Production-like timers (the test settings tick much faster).
SERVER_ENV = {
    "LMS_REALTIME_HEARTBEAT_INTERVAL_SECONDS": "5",
    "LMS_REALTIME_PRESENCE_TTL_SECONDS": "60",
    "LMS_REALTIME_PING_INTERVAL_SECONDS": "25",
    "LMS_DATABASE_POOL_MAX": "10",
}


def cpu_seconds(pid: int) -> float:
    """CPU time of the process's threads, in nanoseconds' resolution (/proc/<pid>/task/*/schedstat).

    /proc/<pid>/stat counts in clock ticks (10 ms): over a run the bystander's
    few ticks, less an idle rate extrapolated from others, came out as
    -1,800 µs per broadcast. A thread that ends meanwhile takes its time with
    it; the servers' threads (the loop, the lease renewal, the executor's)
    live as long as they do.
    """
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            total += int(stat.read_text().split()[0])
    return total / 1e9


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def seed(database_url: str) -> tuple[str, str]:
    """An admin (admins may watch any course) and a course; returns (email, course id)."""
    email = f"bench-admin-{uuid.uuid4().hex[:6]}@example.com"
    db = await Database.connect(database_url, min_size=1, max_size=1)
    async with db.transaction() as conn:
        user = await conn.fetch_one(
            insert(users).values(
                email=email, full_name="Bench Admin", role="admin",
                password_hash=bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode(),
            ).returning(users.c.id)
        )  # fmt: skip
        assert user is not None
        course = await conn.fetch_one(
            insert(courses)
            .values(title="Fan-out", slug=f"fanout-{uuid.uuid4().hex[:6]}", instructor_id=user["id"])
            .returning(courses.c.id)
        )
        assert course is not None
    await db.close()
    return email, str(course["id"])


def frame_bytes(pad: str) -> int:
    """Size of the websocket frame's text for one broadcast."""
    data = {"seq": 10, "sent_at": time.time() * 1000, "pad": pad}
    return len("42" + DASHBOARD_NAMESPACE + "," + json.dumps(["bench", data], separators=(",", ":")))


def sign_in(url: str, email: str) -> str:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url + "/api/v1/auth/login",
        data=json.dumps({"email": email, "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return str(json.loads(response.read())["access_token"])


class Clients:
    """The load generator: ``processes`` Node processes, each with its share of the N clients.

    One Node process reads every frame on one core: at 5,000 clients its
    ~9 µs per delivery alone spread a broadcast's arrivals over 45 ms, more
    than the servers took to write them. Two processes (the default) read in
    parallel, as 5,000 separate devices would; they share this machine's two
    cores with the servers all the same.
    """

    def __init__(self, urls: list[str], n: int, token: str, course_id: str, processes: int) -> None:
        self.processes = []
        for share in shares(n, processes):
            spec = {"urls": urls, "n": share, "token": token, "course_id": course_id, "concurrency": 50}
            self.processes.append(subprocess.Popen(
                ["node", str(ROOT / "bench" / "fanout_clients.js"), json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            ))  # fmt: skip

    async def read(self) -> list[dict[str, Any]]:
        """The next line of every process."""
        return list(await asyncio.gather(*(asyncio.to_thread(_read_line, p) for p in self.processes)))

    def send(self, command: str) -> None:
        for process in self.processes:
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _read_line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError("the load generator exited")
    result: dict[str, Any] = json.loads(line)
    return result


def merged_report(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Per broadcast, the latencies of every client of every process: first, p50, p99, last."""
    by_seq: dict[int, list[float]] = {}
    for report in reports:
        for seq, values in report["latencies"].items():
            by_seq.setdefault(int(seq), []).extend(values)
    messages = []
    for seq, values in sorted(by_seq.items()):
        p = percentiles(values)
        messages.append({
            "seq": seq, "count": len(values), "first": min(values), "p50": p["p50"], "p99": p["p99"], "last": p["max"],
        })  # fmt: skip
    return {
        "messages": messages,
        "deliveries": sum(r["deliveries"] for r in reports),
        "client_cpu_us": sum(r["client_cpu_us"] for r in reports),
    }


async def run_one(p: Platform, n: int, args: argparse.Namespace, *, stock: bool) -> dict[str, Any]:
    email, course_id = await seed(p.database_url)
    env = SERVER_ENV | ({"LMS_REALTIME_DIRECT_BROADCAST": "false"} if stock else {})
    urls = [p.serve(**env), p.serve(**env)]
    pids = [s.pid for s in p.servers[-2:]]
    p.serve(**env)  # the bystander: nobody connects to it
    bystander = p.servers[-1].pid
    token = sign_in(urls[0], email)
    config = load_config("test", environ={}, overrides={"redis": {"url": p.redis_url}})
    emitter = Emitter.open(config)
    await asyncio.sleep(1.0)
    rss_before = sum(rss_bytes(pid) for pid in pids)

    clients = Clients(urls, n, token, course_id, args.client_processes)
    try:
        joined = await clients.read()
        connected = {"connected": sum(j["connected"] for j in joined), "seconds": max(j["seconds"] for j in joined)}
        if connected["connected"] != n:
            raise RuntimeError(f"only {connected['connected']} of {n} clients connected")
        await asyncio.sleep(2.0)
        rss_after = sum(rss_bytes(pid) for pid in pids)

        pad = "x" * max(0, args.size - frame_bytes(""))

        async def broadcast(seq: int) -> None:
            data = {"seq": seq, "sent_at": time.time() * 1000, "pad": pad}
            await emitter.emit("bench", data, room=course_room(course_id), namespace=DASHBOARD_NAMESPACE)

        for seq in range(-WARMUP_MESSAGES, 0):
            await broadcast(seq)
            await asyncio.sleep(1 / args.rate)
        clients.send(f"wait {-1}")
        await clients.read()

        idle_start = [cpu_seconds(pid) for pid in pids]
        bystander_idle_start = cpu_seconds(bystander)
        await asyncio.sleep(IDLE_SECONDS)
        idle_rate = sum(cpu_seconds(pid) - s for pid, s in zip(pids, idle_start, strict=True)) / IDLE_SECONDS
        bystander_idle_rate = (cpu_seconds(bystander) - bystander_idle_start) / IDLE_SECONDS

        clients.send("mark")
        cpu_start, started = [cpu_seconds(pid) for pid in pids], time.monotonic()
        bystander_start = cpu_seconds(bystander)
        for seq in range(args.messages):
            await broadcast(seq)
            await asyncio.sleep(max(0.0, started + (seq + 1) / args.rate - time.monotonic()))
        clients.send(f"wait {args.messages - 1}")
        await clients.read()
        elapsed = time.monotonic() - started
        busy = sum(cpu_seconds(pid) - s for pid, s in zip(pids, cpu_start, strict=True)) - idle_rate * elapsed
        bystander_rate = (cpu_seconds(bystander) - bystander_start) / elapsed
        bystander_busy = (bystander_rate - bystander_idle_rate) * elapsed
        clients.send("report")
        report = merged_report(await clients.read())
        listeners = await room_listeners(p.redis_url, config.realtime.channel, course_id)
    finally:
        clients.close()
        await emitter.close()
        for server in p.servers[-3:]:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                print(f"lms serve {server.pid} did not stop within 15 s of SIGTERM; killed", file=sys.stderr)
                server.kill()
                server.wait()
    deliveries = report["deliveries"]
    frame = frame_bytes(pad)
    return {
        "n": n,
        "delivery": "python-socketio stock" if stock else "direct websocket writes",
        "client_processes": args.client_processes,
        "connect_seconds": connected["seconds"],
        "frame_bytes": frame,
        "messages": report["messages"],
        "deliveries": deliveries,
        "expected": n * args.messages,
        "server_cpu_us_per_recipient": busy / deliveries * 1e6,
        "idle_cpu_percent": idle_rate * 100,
        "memory_kb_per_connection": (rss_after - rss_before) / n / 1024,
        "client_cpu_us_per_delivery": report["client_cpu_us"] / deliveries,
        "bystander_cpu_us_per_broadcast": bystander_busy / args.messages * 1e6,
        # Its own timers (lease supervisor, presence) keep it busy at about this rate either way.
        "bystander_cpu_ms_per_second": {"broadcasting": bystander_rate * 1e3, "idle": bystander_idle_rate * 1e3},
        "room_listeners": listeners,
    }


async def room_listeners(redis_url: str, channel: str, course_id: str) -> str:
    """How many instances a broadcast to the course reaches through Redis (PUBSUB NUMSUB)."""
    import redis.asyncio as aioredis

    try:
        from realtime.fanout import room_channel
    except ImportError:  # a version with one channel for everything
        target = channel
    else:
        target = room_channel(channel, DASHBOARD_NAMESPACE, course_room(course_id)) or channel
    client = aioredis.Redis.from_url(redis_url)
    try:
        ((_, count),) = await client.pubsub_numsub(target)
        if target != channel and not count:  # sharded on Redis 7
            ((_, count),) = await client.execute_command("PUBSUB", "SHARDNUMSUB", target)
    finally:
        await client.aclose()
    return f"{count} of 3 instances subscribed to {target}"


def summarize(result: dict[str, Any]) -> str:
    messages = result["messages"]
    bystander = result["bystander_cpu_ms_per_second"]

    def stat(key: str) -> str:
        values = [m[key] for m in messages]
        return f"{statistics.median(values):7.1f} ms (worst {max(values):7.1f})"

    lines = [
        f"[{result['delivery']}] N = {result['n']:,} clients (two instances), "
        f"{len(messages)} broadcasts of {result['frame_bytes']} bytes, "
        f"{result['deliveries']:,}/{result['expected']:,} deliveries; connected in {result['connect_seconds']:.1f} s",
        f"  latency first  {stat('first')}",
        f"  latency p50    {stat('p50')}",
        f"  latency p99    {stat('p99')}",
        f"  latency last   {stat('last')}",
        f"  server CPU per recipient   {result['server_cpu_us_per_recipient']:6.1f} µs "
        f"(both servers; idle {result['idle_cpu_percent']:.1f}% subtracted)",
        f"  memory per connection      {result['memory_kb_per_connection']:6.1f} KB (both servers' RSS growth / N)",
        f"  bystander CPU per broadcast {result['bystander_cpu_us_per_broadcast']:+6.1f} µs (a third instance with no "
        f"member of the room: {bystander['broadcasting']:.2f} ms/s during the broadcasts, {bystander['idle']:.2f} "
        "ms/s idle)",
        f"  room's channel             {result['room_listeners']}",
        f"  load generator CPU         {result['client_cpu_us_per_delivery']:6.1f} µs per delivery "
        f"({result['client_processes']} Node process{'es' if result['client_processes'] > 1 else ''})",
    ]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--rate", type=float, default=2.0, help="broadcasts per second")
    parser.add_argument("--messages", type=int, default=20, help="broadcasts measured per N")
    parser.add_argument("--size", type=int, default=400, help="approximate frame size in bytes")
    parser.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    parser.add_argument(
        "--client-processes", type=int, default=2, help="Node processes sharing the clients (one per core here)"
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--stock", action="store_true", help="only python-socketio's own delivery (the reference)")
    only.add_argument("--direct", action="store_true", help="only the platform's delivery, no reference")
    args = parser.parse_args()
    if args.client_processes < 1:
        parser.error("--client-processes must be at least 1")
    if shutil.which("node") is None:
        sys.exit("needs node (Node 18 or later) on PATH")
    ensure_node_modules()
    results = []
    modes = [True] if args.stock else [False] if args.direct else [False, True]
    print(f"{args.rate:g} broadcasts/s", flush=True)
    with platform() as p:
        for n in args.clients:
            for stock in modes:
                result = await run_one(p, n, args, stock=stock)
                results.append(result)
                print(summarize(result), flush=True)
            if len(modes) == 2:
                direct, reference = results[-2:]
                ratio = reference["server_cpu_us_per_recipient"] / direct["server_cpu_us_per_recipient"]
                print(f"  N = {n:,}: stock python-socketio costs {ratio:.1f}x the server CPU per recipient", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
