"""`lms serve --workers N`: processes sharing one port (SO_REUSEPORT), each a full instance."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import urllib.request
from typing import Any

import aiohttp
import pytest

from lms.db import Database
from lms.devservers import free_port
from lms.processes import worker_count, worker_environment
from tests.builders import make_course, make_enrollment, make_user
from tests.conftest import LiveClient, LmsProcess, Servers, lms_environment
from tests.test_realtime_processes import DASH, first_lesson, rest, sign_in


@pytest.mark.no_services
def test_auto_is_one_worker_per_core_and_nonsense_is_refused() -> None:
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    assert worker_count("3") == 3
    for bad in ("0", "-1", "many"):
        with pytest.raises(ValueError):  # noqa: PT011 - int() and our check both raise ValueError
            worker_count(bad)


@pytest.mark.no_services
def test_more_than_one_worker_offers_websocket_only_unless_configured() -> None:
    assert "LMS_REALTIME_TRANSPORTS" not in worker_environment({}, 1)
    assert worker_environment({}, 2)["LMS_REALTIME_TRANSPORTS"] == "websocket"
    chosen = {"LMS_REALTIME_TRANSPORTS": "polling,websocket"}
    assert worker_environment(chosen, 2)["LMS_REALTIME_TRANSPORTS"] == "polling,websocket"


def established_on(pid: int, port: int) -> int:
    """How many TCP connections to ``port`` process ``pid`` holds (Linux /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                    count += 1
    return count


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
async def test_two_workers_share_the_port_and_each_others_broadcasts(
    servers: Servers, db: Database, live: Any
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    supervisor = LmsProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], lms_environment(servers)
    )
    try:
        supervisor.wait_for_output("serving on", timeout=90)
        pids = [int(p) for p in re.search(r"2 worker processes: (\d+), (\d+)", supervisor.output).groups()]  # type: ignore[union-attr]

        # REST on the shared port; polling is not offered with two workers.
        assert (await rest("GET", url + "/api/v1/health"))[0] == 200
        async with aiohttp.ClientSession() as http, http.get(url + "/socket.io/?EIO=4&transport=polling") as r:
            assert r.status == 400

        instructor = await make_user(db, role="instructor")
        student = await make_user(db)
        course = await make_course(db, instructor, is_published=True, lessons=2)
        enrollment = await make_enrollment(db, student, course)
        token = await sign_in(url, instructor)
        watchers: list[LiveClient] = []
        # New connections until both workers hold some (the kernel picks by the connection's addresses).
        while len(watchers) < 40 and not all(established_on(pid, port) for pid in pids):
            watcher: LiveClient = await live().connect(url, token, DASH)
            await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
            watchers.append(watcher)
        assert all(established_on(pid, port) for pid in pids), "the kernel never picked one of the workers"

        # A progress report, served by one worker, reaches every watcher: those of the other worker through Redis.
        lesson_id = await first_lesson(db, course["id"])
        path = f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson_id}/progress"
        status, _ = await rest("PUT", url + path, await sign_in(url, student), {"completion_percentage": 40})
        assert status == 200
        for watcher in watchers:
            assert (await watcher.next("lesson_progress", DASH))["enrollment_id"] == str(enrollment["id"])

        # SIGTERM to the supervisor stops every worker, then the supervisor.
        assert supervisor.stop(signal.SIGTERM, timeout=60) == 0
        assert not any(alive(pid) for pid in pids)
    finally:
        supervisor.close()


@pytest.mark.slow
async def test_a_worker_that_dies_is_started_again(servers: Servers) -> None:
    port = free_port()
    supervisor = LmsProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"], lms_environment(servers)
    )
    try:
        supervisor.wait_for_output("serving on", timeout=90)
        first = int(re.search(r"2 worker processes: (\d+)", supervisor.output).group(1))  # type: ignore[union-attr]
        os.kill(first, signal.SIGKILL)
        supervisor.wait_for_output("starting it again", timeout=30)
        deadline = time.monotonic() + 60
        while True:  # the port keeps answering: the other worker, then the new one
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert supervisor.stop(signal.SIGTERM, timeout=60) == 0
    finally:
        supervisor.close()
