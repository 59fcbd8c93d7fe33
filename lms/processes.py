"""``lms serve --workers N``: N server processes on one port, each a full instance.

Each worker is an ordinary ``lms serve`` (its own event loop, database pool,
Redis clients, Socket.IO server and live runtime) bound with
``SO_REUSEPORT``: the kernel spreads new connections over the processes, so
one machine's cores serve the same port. Workers share nothing but
PostgreSQL and Redis, exactly like instances on different machines:
Socket.IO broadcasts reach every worker's clients through the Redis
fan-out, live sessions have one owner wherever they run.

Socket.IO's long-polling needs every request of a session to reach the
same process, which ``SO_REUSEPORT`` cannot promise; with more than one
worker the server therefore offers the ``websocket`` transport only
(clients that start with polling fail to connect), unless
``LMS_REALTIME_TRANSPORTS`` says otherwise.

This process (the supervisor) serves nothing: it starts the workers,
starts a worker again if one dies, and on SIGTERM or SIGINT stops them all
(each finishes its requests within its shutdown timeout).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

# A worker that keeps dying is started again at most this often.
RESTART_INTERVAL_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 20.0


def worker_count(value: str) -> int:
    """``auto`` (the cores this process may run on) or a positive number."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1 (or auto)")
    return count


def worker_environment(environ: dict[str, str], workers: int) -> dict[str, str]:
    """What each worker runs with: websocket only when there is more than one, unless configured."""
    env = dict(environ)
    if workers > 1 and not env.get("LMS_REALTIME_TRANSPORTS"):
        env["LMS_REALTIME_TRANSPORTS"] = "websocket"
    elif workers > 1 and "polling" in env["LMS_REALTIME_TRANSPORTS"]:
        log.warning("Socket.IO long-polling with %d workers on one port fails without sticky sessions", workers)
    return env


def supervise(argv: Sequence[str], workers: int, *, ready: Callable[[], None] | None = None) -> int:
    """Run ``workers`` processes of ``python -m lms.cli <argv>``; returns when told to stop (0) or on failure."""
    env = worker_environment(dict(os.environ), workers)
    command = [sys.executable, "-m", "lms.cli", *argv]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    running: dict[int, subprocess.Popen[bytes]] = {}
    started_at: dict[int, float] = {}
    try:
        for slot in range(workers):
            running[slot] = subprocess.Popen(command, env=env)
            started_at[slot] = time.monotonic()
        log.info("serving with %d worker processes: %s", workers, ", ".join(str(p.pid) for p in running.values()))
        if ready is not None:
            ready()
        while not stopping:
            for slot, process in list(running.items()):
                if process.poll() is None or stopping:
                    continue
                log.error("server worker %d exited with %s; starting it again", process.pid, process.returncode)
                wait = RESTART_INTERVAL_SECONDS - (time.monotonic() - started_at[slot])
                if wait > 0:
                    time.sleep(wait)
                running[slot] = subprocess.Popen(command, env=env)
                started_at[slot] = time.monotonic()
            time.sleep(0.2)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in running.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("server worker %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("all server workers stopped")
    return 0
