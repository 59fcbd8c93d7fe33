"""What observability costs: GET /auth/me with tracing and error tracking off, and on.

    python3 bench/telemetry.py [--requests 3000] [--concurrency 20] [--rounds 5] [--baseline DIR]

Starts embedded PostgreSQL and Redis and, side by side, one process each of:
- a bare aiohttp handler answering a small JSON (the reference);
- `lms serve` as configured by default (no OTLP endpoint, no Sentry DSN);
- `lms serve` with traces exported over OTLP/HTTP to a local collector
  process that accepts and drops them (every request sampled);
- `lms serve` with Sentry on (a local endpoint that accepts envelopes);
- with ``--baseline DIR``: `lms serve` from another checkout (e.g. `git
  archive main`), to compare "off" with the code before telemetry existed.

GET /auth/me is the token check path: JWT, a Redis revocation lookup and a
user SELECT, so a traced request makes a server span, a Redis span and a
few SQL spans. Targets are driven in turns, round after round, so that
the machine's noise falls on all of them alike; the figures are medians
over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.auth import PASSWORD, seed_users
from bench.harness import ms, percentiles, platform
from lms.devservers import free_port

SINK = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def accept(request):
        await request.read()
        if request.path == "/v1/traces":
            return web.Response(body=b"", content_type="application/x-protobuf")
        return web.json_response({"id": "0" * 32})

    async def me(request):
        return web.json_response({"id": "00000000-0000-0000-0000-000000000000", "email": "a@example.com"})

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    app.router.add_post("/api/{project}/envelope/", accept)
    app.router.add_get("/api/v1/auth/me", me)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def spawn(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, cwd=cwd)


async def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def drive(url: str, headers: dict[str, str], total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    left = total
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                started = time.perf_counter()
                async with http.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status}")
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return total / (time.perf_counter() - began), latencies


async def main(args: argparse.Namespace) -> None:
    with platform() as env:
        [email] = await seed_users(env.database_url, 1, 4)
        sink_port = free_port()
        sink = spawn([sys.executable, "-c", SINK, str(sink_port)])
        sink_url = f"http://127.0.0.1:{sink_port}"
        baseline: list[subprocess.Popen[bytes]] = []
        try:
            await wait_up(sink_url + "/api/v1/auth/me")
            quiet = {"LMS_RATE_LIMIT_ENABLED": "false", "LMS_LOG_LEVEL": "WARNING"}
            targets = {
                "bare aiohttp handler": sink_url,
                "lms, telemetry off": env.serve(**quiet),
                "lms, traces on (OTLP)": env.serve(**quiet, LMS_OTEL_EXPORTER_OTLP_ENDPOINT=sink_url),
                "lms, Sentry on": env.serve(**quiet, LMS_SENTRY_DSN=f"http://key@127.0.0.1:{sink_port}/1"),
            }
            if args.baseline:
                port = free_port()
                checkout = args.baseline
                process = spawn(
                    [sys.executable, "-m", "lms.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=env.env(**quiet, PYTHONPATH=str(checkout)),
                    cwd=checkout,
                )
                baseline.append(process)
                targets[f"lms at {checkout.name} (no telemetry code)"] = f"http://127.0.0.1:{port}"
                await wait_up(targets[f"lms at {checkout.name} (no telemetry code)"] + "/api/v1/health")
            async with aiohttp.ClientSession() as http:
                first = next(u for n, u in targets.items() if n.startswith("lms, telemetry off"))
                async with http.post(f"{first}/api/v1/auth/login", json={"email": email, "password": PASSWORD}) as r:
                    token = (await r.json())["access_token"]
            headers = {"Authorization": f"Bearer {token}"}

            rates: dict[str, list[float]] = {name: [] for name in targets}
            latencies: dict[str, list[float]] = {name: [] for name in targets}
            for url in targets.values():  # warm up
                await drive(url + "/api/v1/auth/me", headers, 300, args.concurrency)
            for _ in range(args.rounds):
                for name, url in targets.items():
                    rate, lat = await drive(url + "/api/v1/auth/me", headers, args.requests, args.concurrency)
                    rates[name].append(rate)
                    latencies[name].extend(lat)

            print(
                f"GET /api/v1/auth/me, {args.requests} requests x {args.rounds} rounds at concurrency "
                f"{args.concurrency} (median req/s over rounds; latency percentiles over all requests)"
            )
            bare = statistics.median(rates["bare aiohttp handler"])
            off = statistics.median(rates["lms, telemetry off"])
            for name in targets:
                rate = statistics.median(rates[name])
                p = percentiles(latencies[name])
                print(
                    f"  {name:<44} {rate:8.0f} req/s  p50 {ms(p['p50'])}  p99 {ms(p['p99'])}  "
                    f"x bare {rate / bare:5.2f}  x off {rate / off:5.2f}"
                )
        finally:
            # The servers first: Sentry's client sends what it holds as it stops.
            for process in [*env.servers, *baseline, sink]:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--baseline",
        type=lambda d: Path(d).absolute(),
        help="a checkout of the code before telemetry (git archive main | tar -x -C DIR)",
    )
    asyncio.run(main(parser.parse_args()))
