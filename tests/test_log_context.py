"""One JSON line per event, carrying the request id, the user id, the live session id or the job id."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from jobs.broker import build_producer
from jobs.queue import BrokerJobQueue
from jobs.tasks import all_specs
from lms.db import Database
from lms.devservers import free_port
from lms.logs import JsonFormatter, log_context
from tests.builders import bearer, login, make_user
from tests.conftest import Instance, LmsProcess, Servers, lms_environment, make_config
from tests.test_live_protocol import NS, call, hosted


class JsonLines(logging.Handler):
    """The production formatter, kept as lines (what a log shipper reads)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def records(self, logger: str) -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in self.lines]
        return [e for e in entries if e["logger"] == logger]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def test_a_request_logs_its_request_id_and_once_known_its_user(
    client: Any, db: Database, json_lines: JsonLines
) -> None:
    user = await make_user(db)
    token = (await login(client, user["email"]))["access_token"]
    response = await client.get("/api/v1/auth/me", headers={**bearer(token), "X-Request-ID": "req-log-1"})
    assert response.status == 200
    await client.get("/api/v1/health", headers={"X-Request-ID": "req-log-2"})
    entries = {e["request_id"]: e for e in json_lines.records("lms.access")}
    me, health = entries["req-log-1"], entries["req-log-2"]
    assert me["user_id"] == str(user["id"]) and me["status"] == 200 and me["route"] == "/api/v1/auth/me"
    # The next request (same connection, same server task) carries none of the first one's fields.
    assert "user_id" not in health


def test_fields_bound_in_a_context_go_with_its_records_and_no_further(json_lines: JsonLines) -> None:
    log = logging.getLogger("lms.test")
    with log_context(job_id="j-1", task="t"):
        log.info("inside", extra={"task": "explicit"})
    log.info("outside")
    inside, outside = json_lines.records("lms.test")
    assert inside["job_id"] == "j-1" and inside["task"] == "explicit"  # a record's own extra wins
    assert "job_id" not in outside


async def test_a_live_session_logs_with_its_session_id(
    aiohttp_client: Any, servers: Servers, db: Database, live: Any, json_lines: JsonLines
) -> None:
    from lms.app import create_app

    app = create_app(make_config(servers))
    instance = Instance(app, await aiohttp_client(app))
    game, host = await hosted(live, [instance], db, questions=1)
    assert (await call(host, "end_session"))["ok"]
    await host.next("session_ended", NS)
    for _ in range(200):
        ended = [e for e in json_lines.records("realtime.live.actor") if "ended" in e["msg"]]
        if ended:
            break
        await asyncio.sleep(0.02)
    assert ended and ended[0]["session_id"] == game["id"]


@pytest.mark.slow
async def test_the_worker_and_the_scheduler_log_json_lines_and_a_task_its_job_id_and_serve_metrics(
    servers: Servers,
) -> None:
    env = lms_environment(servers) | {"LMS_LOG_JSON": "true"}
    port = free_port()
    worker, scheduler = LmsProcess(["worker"], env), LmsProcess(["scheduler", "--metrics-port", str(port)], env)
    try:
        worker.wait_for_output("worker ready", timeout=60)
        scheduler.wait_for_output("scheduler ready", timeout=60)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200 and "# TYPE lms_jobs_kicked_total counter" in await response.text()
        producer = build_producer(make_config(servers))
        await producer.startup()
        try:
            task_id = await BrokerJobQueue(producer, all_specs()).kick("diagnostics.noop")
        finally:
            await producer.shutdown()
        worker.wait_for_output(task_id, timeout=30)
    finally:
        worker.stop()
        scheduler.stop()
        worker.close()
        scheduler.close()
    for process in (worker, scheduler):
        lines = [line for line in process.lines if line.strip()]
        assert lines and all(json.loads(line)["level"] for line in lines), process.output
    running = [json.loads(line) for line in worker.lines if task_id in line]
    assert running and all(e["job_id"] == task_id and e["task"] == "diagnostics.noop" for e in running)
