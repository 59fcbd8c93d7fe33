"""The live side across real processes: two `lms serve` instances sharing Redis.

Clients are python-socketio's AsyncClient and the JavaScript socket.io-client
4.x run by Node (tests/js/socket_client.js); a REST call served by one
instance reaches clients connected to the other; presence survives an
instance being killed; the job emitter publishes from another process.
"""

from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lms.auth.tokens import TokenType, issue
from lms.db import Database
from lms.devservers import free_port
from tests.builders import PASSWORD, login, make_course, make_enrollment, make_user
from tests.conftest import LiveClient, LmsProcess, Servers, lms_environment, make_config
from tests.node import node_env, node_script
from tests.polling import eventually_blocking

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DASH = "/dashboard"



@dataclass
class Serve:
    url: str
    process: LmsProcess


def start_serve(servers: Servers, **settings: Any) -> Serve:
    port = free_port()
    process = LmsProcess(["serve", "--host", "127.0.0.1", "--port", str(port)], lms_environment(servers, **settings))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.process.poll() is None, process.output
        try:
            with urllib.request.urlopen(url + "/api/v1/ready", timeout=2) as response:  # noqa: S310 - loopback
                return response.status == 200
        except OSError:
            return False

    try:
        eventually_blocking(ready, timeout=60, what="lms serve ready", interval=0.2)
    except AssertionError:
        process.close()
        raise AssertionError("lms serve did not become ready:\n" + process.output) from None
    return Serve(url, process)


@pytest.fixture
def serves(servers: Servers) -> Any:
    started: list[Serve] = []
    try:
        for _ in range(2):
            started.append(start_serve(servers))
        yield started
    finally:
        for serve in started:
            serve.process.close()


async def rest(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, url, json=body, headers=headers) as response:
        text = await response.text()
        return response.status, (json.loads(text) if text else None)


async def sign_in(url: str, user: Any) -> str:
    status, body = await rest("POST", url + "/api/v1/auth/login", body={"email": user["email"], "password": PASSWORD})
    assert status == 200, body
    return str(body["access_token"])


class NodeClient:
    """tests/js/socket_client.js in a Node process: the official JavaScript client."""

    def __init__(self, url: str, token: str | None, *namespaces: str) -> None:
        self.process = subprocess.Popen(
            node_script("socket_client.js", url, token or "-", *(namespaces or ("/",))),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=node_env(),
        )  # fmt: skip
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.kept: list[dict[str, Any]] = []
        self._ids = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.messages.put(json.loads(line))
            except json.JSONDecodeError:
                self.messages.put({"ns": None, "event": "output", "data": line})

    async def next(self, event: str, ns: str = "/", timeout: float = 15) -> Any:
        return await asyncio.to_thread(self._wait, lambda m: m.get("event") == event and m.get("ns") == ns, timeout)

    def _wait(self, match: Any, timeout: float) -> Any:
        for i, kept in enumerate(self.kept):
            if match(kept):
                return self.kept.pop(i)["data"]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"node client: nothing matching within {timeout} s; kept {self.kept}")
            try:
                message = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            if match(message):
                return message["data"]
            self.kept.append(message)

    async def call(self, event: str, *args: Any, ns: str = "/") -> Any:
        self._ids += 1
        ident = self._ids
        self._send({"id": ident, "ns": ns, "emit": event, "args": list(args)})
        return await asyncio.to_thread(self._wait, lambda m: m.get("ack") == ident, 15)

    def _send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"close": True})
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def node() -> Any:
    made: list[NodeClient] = []

    def make(url: str, token: str | None, *namespaces: str) -> NodeClient:
        made.append(NodeClient(url, token, *namespaces))
        return made[-1]

    yield make
    for client in made:
        client.close()


# -----------------------------------------------------------------------------


async def test_rest_calls_on_one_instance_reach_both_clients_on_the_other(
    serves: list[Serve], live: Any, node: Any, db: Database
) -> None:
    a, b = serves
    instructor = await make_user(db, role="instructor", full_name="Ada Teacher")
    student = await make_user(db, full_name="Sam Student")
    newcomer = await make_user(db, full_name="Nia Newcomer")
    course = await make_course(db, instructor, is_published=True, lessons=2)
    enrollment = await make_enrollment(db, student, course)
    cid = str(course["id"])
    lesson_id = await first_lesson(db, course["id"])

    # Watchers on A: one Python client, one JavaScript client.
    py_watch: LiveClient = await live().connect(a.url, await sign_in(a.url, instructor), DASH)
    assert (await py_watch.call("watch_course", {"course_id": cid}, namespace=DASH))["online_students"] == 0
    js_watch = node(a.url, await sign_in(a.url, instructor), DASH)
    await js_watch.next("connect", DASH)
    assert (await js_watch.call("watch_course", {"course_id": cid}, ns=DASH))["ok"] is True
    # The student's devices on A, both kinds; they make the student online.
    py_device: LiveClient = await live().connect(a.url, await sign_in(a.url, student))
    js_device = node(a.url, await sign_in(a.url, student), "/")
    await js_device.next("connect")
    assert await py_watch.next("presence", DASH) == {"course_id": cid, "online_students": 1}

    # Progress reported to instance B.
    student_token = await sign_in(b.url, student)
    body = {"time_spent_seconds": 60, "completion_percentage": 100}
    path = f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson_id}/progress"
    status, result = await rest("PUT", b.url + path, student_token, body)
    assert status == 200, result
    expected = {
        "course_id": cid, "enrollment_id": str(enrollment["id"]), "student_id": str(student["id"]),
        "lesson_id": str(lesson_id), "completion_percentage": 100.0, "progress_percentage": 50.0, "completed": True,
    }  # fmt: skip
    assert await py_watch.next("lesson_progress", DASH) == expected
    assert await js_watch.next("lesson_progress", DASH) == expected
    assert await py_device.next("progress_updated") == expected
    assert await js_device.next("progress_updated") == expected

    # An enrollment made on B.
    newcomer_token = await sign_in(b.url, newcomer)
    status, created = await rest("POST", b.url + "/api/v1/enrollments", newcomer_token, {"course_id": cid})
    assert status == 201, created
    enrolled = {
        "course_id": cid, "enrollment_id": created["id"], "student_id": str(newcomer["id"]),
        "student_name": "Nia Newcomer", "status": "active",
    }  # fmt: skip
    assert await py_watch.next("enrollment_created", DASH) == enrolled
    assert await js_watch.next("enrollment_created", DASH) == enrolled


async def first_lesson(db: Database, course_id: Any) -> Any:
    async with db.connection() as conn:
        return await conn.fetch_val(
            "SELECT id FROM lessons WHERE course_id = %(c)s ORDER BY position LIMIT 1", {"c": course_id}
        )


async def test_javascript_client_refusals_and_malformed_payloads(
    serves: list[Serve], node: Any, db: Database, config: Any
) -> None:
    a = serves[0]
    instructor = await make_user(db, role="instructor")
    student = await make_user(db)
    course = await make_course(db, instructor, is_published=True)

    anonymous = node(a.url, None, "/")
    assert "Send an access token" in await anonymous.next("connect_error")
    expired, _ = issue(config, TokenType.ACCESS, str(student["id"]), exp=int(time.time()) - 5)
    assert "expired" in (await node(a.url, expired, DASH).next("connect_error", DASH)).lower()

    as_student = node(a.url, await sign_in(a.url, student), DASH)
    await as_student.next("connect", DASH)
    refused = await as_student.call("watch_course", {"course_id": str(course["id"])}, ns=DASH)
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    for junk in ([], ["nope"], [{"course_id": 42}], [None]):
        ack = await as_student.call("watch_course", *junk, ns=DASH)
        assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", (junk, ack)
    # Still connected and answering.
    assert (await as_student.call("unwatch_course", {"course_id": str(course["id"])}, ns=DASH))["ok"] is True


async def test_presence_drops_students_of_an_instance_that_died(serves: list[Serve], live: Any, db: Database) -> None:
    a, b = serves
    instructor = await make_user(db, role="instructor")
    student = await make_user(db)
    course = await make_course(db, instructor, is_published=True)
    await make_enrollment(db, student, course)
    cid = str(course["id"])
    watcher: LiveClient = await live().connect(a.url, await sign_in(a.url, instructor), DASH)
    await watcher.call("watch_course", {"course_id": cid}, namespace=DASH)
    device: LiveClient = await live().connect(b.url, await sign_in(b.url, student))
    assert await watcher.next("presence", DASH) == {"course_id": cid, "online_students": 1}

    b.process.process.send_signal(signal.SIGKILL)  # no goodbye: its entries must expire
    b.process.process.wait()
    await device.next("disconnect")
    # Test settings: 3 s TTL, sweeps every second.
    assert await watcher.next("presence", DASH, timeout=20) == {"course_id": cid, "online_students": 0}
    second: LiveClient = await live().connect(a.url, await sign_in(a.url, instructor), DASH)
    assert (await second.call("watch_course", {"course_id": cid}, namespace=DASH))["online_students"] == 0


EMIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from lms.config import load_config
    from realtime.emitter import Emitter

    async def main():
        emitter = Emitter.open(load_config())
        sent = await emitter.notify_user(sys.argv[1], "certificate_ready", {"certificate_id": "c-1"})
        await emitter.close()
        sys.exit(0 if sent else 3)

    asyncio.run(main())
    """
)


async def test_emitter_in_another_process_reaches_the_users_devices_on_every_instance(
    serves: list[Serve], live: Any, db: Database, servers: Servers
) -> None:
    a, b = serves
    user, other = await make_user(db), await make_user(db)
    phone: LiveClient = await live().connect(a.url, await sign_in(a.url, user))
    laptop: LiveClient = await live().connect(b.url, await sign_in(b.url, user), transport="polling")
    bystander: LiveClient = await live().connect(a.url, await sign_in(a.url, other))

    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", EMIT_SCRIPT, str(user["id"])],
        env=lms_environment(servers), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    for device in (phone, laptop):
        note = await device.next("notification")
        assert note["type"] == "certificate_ready" and note["data"] == {"certificate_id": "c-1"}
        assert note["created_at"].endswith("+00:00")
    assert bystander.pending("notification") == []


async def test_worker_resources_carry_an_emitter_that_reaches_clients(
    servers: Servers, instances: Any, live: Any, db: Database
) -> None:
    from jobs.resources import close_resources, open_resources

    user = await make_user(db)
    tokens = await login(instances[1].http, user["email"])
    device: LiveClient = await live().connect(instances[1].url, tokens["access_token"])

    class NoJobs:
        async def enqueue(self, task_name: str, /, **kwargs: Any) -> None:
            raise AssertionError("not used")

    resources = await open_resources(make_config(servers), NoJobs())
    try:
        assert await resources.emitter.notify_user(user["id"], "payment_completed", {"payment_id": "p-1"})
    finally:
        await close_resources(resources)
    assert (await device.next("notification"))["data"] == {"payment_id": "p-1"}
    with pytest.raises(ValueError, match="unknown notification type"):
        await resources.emitter.notify_user(user["id"], "gossip", {})


async def test_serve_stops_promptly_with_clients_connected(
    servers: Servers, live: Any, node: Any, db: Database
) -> None:
    serve = start_serve(servers)
    try:
        user = await make_user(db)
        python_client: LiveClient = await live().connect(serve.url, await sign_in(serve.url, user))
        js_client = node(serve.url, await sign_in(serve.url, user), "/")
        await js_client.next("connect")
        serve.process.process.send_signal(signal.SIGTERM)
        # Well within aiohttp's shutdown timeout (10 s), which open websockets would use up.
        assert await asyncio.to_thread(serve.process.process.wait, 8) == 0
        await python_client.next("disconnect")
        assert await js_client.next("disconnect") == "transport close"  # socket.io-client reconnects after this
    finally:
        serve.process.close()
