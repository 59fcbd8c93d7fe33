"""A lean HTTP/1.1 load generator, and the bare aiohttp handler every figure is compared with.

The aiohttp client spends more CPU per request than a bare aiohttp server
does, so with it a benchmark on two cores measures the client. This one
writes prepared request bytes on keep-alive connections (one request in
flight per connection, like a browser's fetches) and reads responses by
their Content-Length: a few microseconds per request.

    python -m bench.load --reference            # the bare handler alone, for a quick look

The reference (:func:`reference_server`) is an ``aiohttp.web`` app with one
JSON handler, served by ``web.run_app`` like ``lms serve``: the floor of
the framework on this machine. Benchmarks measure it in the same run and
print each figure as a share of it, which holds on a noisy machine.

Besides requests per second, :func:`drive` reads the CPU time the server
processes (and PostgreSQL's, when given) spent per request from ``/proc``:
on a machine shared with other work that figure moves far less than the
rate, and it is what the README's capacity table is built from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.harness import ms, percentiles
from lms.devservers import free_port

RequestBytes = Callable[[int], bytes]


def request_bytes(
    method: str, path: str, host: str, *, headers: dict[str, str] | None = None, body: object = None
) -> bytes:
    """One HTTP/1.1 request, keep-alive."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    payload = b""
    if body is not None:
        payload = json.dumps(body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self._complete_response()
        if status and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def _complete_response(self) -> int:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return 0
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return 0
        del self.buffer[: end + 4 + length]
        return int(head[0].split(" ", 2)[1])

    async def send(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, now (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    wanted = set(roots)
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in wanted and pid not in wanted}
        wanted |= more
        grew = bool(more)
    return sum(times.get(pid, 0.0) for pid in wanted)


@dataclass
class Result:
    total: int
    elapsed: float
    latencies: list[float]
    errors: int
    statuses: dict[int, int]
    # CPU seconds spent during the run, per named group of processes.
    cpu: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        return self.total / self.elapsed

    def cpu_us(self, group: str) -> float:
        return (self.cpu or {}).get(group, 0.0) / self.total * 1e6

    def line(self, name: str, reference: Result | None = None) -> str:
        p = percentiles(self.latencies)
        share = f"   {self.rate / reference.rate:5.1%} of bare" if reference is not None else ""
        cpu = "".join(f"   {group} {self.cpu_us(group):5.0f} µs/req" for group in (self.cpu or {}))
        if reference is not None and reference.cpu and self.cpu and "server" in self.cpu:
            cpu += f" ({reference.cpu_us('server') / self.cpu_us('server'):5.1%} of bare per core)"
        odd = {s: n for s, n in self.statuses.items() if s >= 300}
        return (
            f"{name:<44} {self.rate:8.0f} req/s   p50 {ms(p['p50'])}   p99 {ms(p['p99'])}"
            f"{share}{cpu}   errors {self.errors}/{self.total}{f' {odd}' if odd else ''}"
        )


async def drive(
    url: str,
    make: RequestBytes,
    total: int,
    concurrency: int,
    ok: tuple[int, ...] = (200,),
    cpu: dict[str, list[int]] | None = None,
) -> Result:
    """``total`` requests on ``concurrency`` connections; ``make(i)`` gives the bytes of request ``i``.

    ``cpu`` names groups of processes (``{"server": [pid], "postgres": [pid]}``) whose CPU time is read.
    """
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal errors, next_index
        _, conn = await loop.create_connection(_Connection, parts.hostname, parts.port)
        try:
            while next_index < total:
                i = next_index
                next_index += 1
                started = time.perf_counter()
                try:
                    status = await conn.send(make(i))
                except ConnectionError:
                    errors += 1
                    _, conn = await loop.create_connection(_Connection, parts.hostname, parts.port)
                    continue
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                errors += status not in ok
        finally:
            if conn.transport is not None:
                conn.transport.close()

    groups = cpu or {}
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    spent = {name: cpu_seconds(pids) - before[name] for name, pids in groups.items()} if groups else None
    return Result(total, elapsed, latencies, errors, statuses, spent)


async def warm_up(url: str, make: RequestBytes, concurrency: int, requests: int = 500) -> None:
    """Requests at the concurrency about to be measured, so that the measurement finds a steady state.

    The server's pool then holds every connection the run will use, each with its statements prepared
    (lms/prepared.py). Warmed at 10 clients, a pool of 20 opened its other ten during a 50-client run:
    those requests waited for a connection's start-up and a PREPARE, and were the run's slowest hundredth.
    """
    await drive(url, make, max(requests, 4 * concurrency), concurrency)


# --- the bare aiohttp handler -------------------------------------------------------


def _serve_reference(port: int) -> None:
    from aiohttp import web

    async def me(request: web.Request) -> web.Response:
        return web.json_response(
            {"id": "0b5e4a52-7c1e-4a8e-9d0c-2f7f3e1c9a10", "email": "bench@example.com", "full_name": "Bench",
             "role": "student", "is_active": True}
        )  # fmt: skip

    app = web.Application()
    app.router.add_get("/me", me)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


@dataclass
class Reference:
    url: str
    pid: int


@contextlib.contextmanager
def reference_server() -> Iterator[Reference]:
    """The bare aiohttp JSON handler in its own process."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench.load", "--serve-reference", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/me", timeout=1).close()  # noqa: S310 - our loopback server
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the reference server did not start") from None
                time.sleep(0.1)
        yield Reference(url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


async def measure_reference(reference: Reference, total: int, concurrency: int) -> Result:
    host = urlsplit(reference.url).netloc
    data = request_bytes("GET", "/me", host)
    await drive(reference.url, lambda i: data, min(total, 2000), concurrency)  # warm up
    return await drive(reference.url, lambda i: data, total, concurrency, cpu={"server": [reference.pid]})


async def _main(args: argparse.Namespace) -> None:
    with reference_server() as reference:
        result = await measure_reference(reference, args.requests, args.concurrency)
        print(result.line(f"bare aiohttp handler (c={args.concurrency})"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve-reference", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--reference", action="store_true", help="measure the bare handler")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    arguments = parser.parse_args()
    if arguments.serve_reference:
        _serve_reference(arguments.serve_reference)
    else:
        asyncio.run(_main(arguments))
