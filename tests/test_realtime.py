"""Socket.IO: authentication, namespaces, fan-out between two instances, presence, robustness.

Two instances of the app run in this process on real ports, each with its own
Socket.IO server and Redis fan-out; clients are python-socketio AsyncClients.
Real-process tests (``lms serve``, Node clients, a job worker) are in
test_realtime_processes.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import socketio
from redis.asyncio import RedisCluster

from lms.appkeys import CONFIG
from lms.auth.tokens import TokenType, issue
from lms.config import RedisSettings, Settings
from lms.db import Database
from lms.events import EVENTS, CourseCompleted, EnrollmentCreated, LessonProgressChanged, QuizAttemptSubmitted
from realtime.context import REALTIME
from tests.builders import bearer, login, make_course, make_enrollment, make_user
from tests.conftest import Instance, LiveClient
from tests.polling import eventually

DASH = "/dashboard"


async def token_for(instance: Instance, user: dict[str, Any]) -> str:
    tokens = await login(instance.http, user["email"])
    return str(tokens["access_token"])


async def course_with_student(db: Database) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    instructor = await make_user(db, role="instructor", full_name="Ada Teacher")
    student = await make_user(db, role="student", full_name="Sam Student")
    course = await make_course(db, instructor, is_published=True)
    enrollment = await make_enrollment(db, student, course)
    return instructor, student, course, enrollment


def progress_event(course: Any, enrollment: Any, student: Any, pct: str = "40") -> LessonProgressChanged:
    return LessonProgressChanged(
        course_id=course["id"], enrollment_id=enrollment["id"], student_id=student["id"], lesson_id=uuid.uuid4(),
        completion_percentage=Decimal("100"), progress_percentage=Decimal(pct), completed=True,
    )  # fmt: skip


# -- authentication -----------------------------------------------------------


async def refused(live: Any, instance: Instance, token: str | None, namespace: str = "/") -> str:
    client: LiveClient = live()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(instance.url, token, namespace)
    return str(client.refusals[namespace]["message"])


async def test_connection_without_a_token_is_refused(instances: list[Instance], live: Any) -> None:
    assert "Send an access token" in await refused(live, instances[0], None)
    assert "Send an access token" in await refused(live, instances[0], "", DASH)


async def test_expired_and_forged_tokens_are_refused(instances: list[Instance], live: Any, db: Database) -> None:
    user = await make_user(db)
    settings: Settings = instances[0].app[CONFIG]
    expired, _ = issue(settings, TokenType.ACCESS, str(user["id"]), exp=int(time.time()) - 5)
    assert "expired" in (await refused(live, instances[0], expired)).lower()
    assert "not valid" in await refused(live, instances[0], "not-a-jwt", DASH)
    refresh, _ = issue(settings, TokenType.REFRESH, str(user["id"]))
    assert "not valid" in await refused(live, instances[0], refresh)


async def test_revoked_token_is_refused(instances: list[Instance], live: Any, db: Database) -> None:
    user = await make_user(db)
    token = await token_for(instances[0], user)
    response = await instances[0].http.post("/api/v1/auth/logout", json={}, headers=bearer(token))
    assert response.status == 204
    # Revocation lives in Redis: the other instance refuses it too.
    assert "revoked" in await refused(live, instances[1], token)


async def test_deactivated_account_is_refused(instances: list[Instance], live: Any, db: Database) -> None:
    user = await make_user(db)
    token = await token_for(instances[0], user)
    async with db.connection() as conn:
        await conn.execute("UPDATE users SET is_active = false WHERE id = %(id)s", {"id": user["id"]})
    assert "not active" in await refused(live, instances[0], token)


async def test_unknown_namespace_is_refused(instances: list[Instance], live: Any, db: Database) -> None:
    user = await make_user(db)
    token = await token_for(instances[0], user)
    client: LiveClient = live()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(instances[0].url, token, "/nope")


# -- namespace / --------------------------------------------------------------


async def test_progress_reaches_every_device_of_the_student_on_every_instance(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    _, student, course, enrollment = await course_with_student(db)
    phone = await live().connect(a.url, await token_for(a, student))
    laptop = await live().connect(b.url, await token_for(b, student), transport="polling")
    other = await live().connect(a.url, await token_for(a, await make_user(db)))

    await a.app[EVENTS].publish(progress_event(course, enrollment, student, "40"))

    for device in (phone, laptop):
        got = await device.next("progress_updated")
        assert got == {
            "course_id": str(course["id"]), "enrollment_id": str(enrollment["id"]), "student_id": str(student["id"]),
            "lesson_id": got["lesson_id"], "completion_percentage": 100.0, "progress_percentage": 40.0,
            "completed": True,
        }  # fmt: skip
    # Another user's devices hear nothing (checked after the others got theirs).
    assert other.pending("progress_updated") == []


# -- namespace /dashboard -----------------------------------------------------


async def test_domain_events_reach_watchers_whichever_instance_raised_them(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a, b = instances
    instructor, student, course, enrollment = await course_with_student(db)
    watcher = await live().connect(a.url, await token_for(a, instructor), DASH)
    ack = await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
    assert ack == {"ok": True, "course_id": str(course["id"]), "online_students": 0}

    ids = {"course_id": course["id"], "enrollment_id": enrollment["id"], "student_id": student["id"]}
    quiz_id, attempt_id = uuid.uuid4(), uuid.uuid4()
    await b.app[EVENTS].publish(
        EnrollmentCreated(**ids, student_name="Sam Student", status="active"),
        progress_event(course, enrollment, student, "50"),
        QuizAttemptSubmitted(
            course_id=course["id"], quiz_id=quiz_id, attempt_id=attempt_id, student_id=student["id"],
            percentage=Decimal("87.5"), is_passed=True,
        ),
        CourseCompleted(**ids),
    )  # fmt: skip

    s = {k: str(v) for k, v in ids.items()}
    assert await watcher.next("enrollment_created", DASH) == s | {"student_name": "Sam Student", "status": "active"}
    assert (await watcher.next("lesson_progress", DASH))["progress_percentage"] == 50.0
    assert await watcher.next("quiz_attempt_submitted", DASH) == {
        "course_id": s["course_id"], "quiz_id": str(quiz_id), "attempt_id": str(attempt_id),
        "student_id": s["student_id"], "percentage": 87.5, "is_passed": True,
    }  # fmt: skip
    assert await watcher.next("course_completed", DASH) == s

    # After unwatch_course nothing more arrives for that course.
    assert (await watcher.call("unwatch_course", {"course_id": s["course_id"]}, namespace=DASH))["ok"] is True
    await b.app[EVENTS].publish(CourseCompleted(**ids))
    marker = await live().connect(a.url, await token_for(a, instructor), DASH)
    await marker.call("watch_course", {"course_id": s["course_id"]}, namespace=DASH)
    await b.app[EVENTS].publish(CourseCompleted(**ids))
    await marker.next("course_completed", DASH)
    assert watcher.pending("course_completed", DASH) == []


async def test_watch_course_is_for_the_owner_or_an_admin(instances: list[Instance], live: Any, db: Database) -> None:
    a = instances[0]
    _, student, course, _ = await course_with_student(db)
    rival = await make_user(db, role="instructor")
    admin = await make_user(db, role="admin")
    payload = {"course_id": str(course["id"])}

    as_student = await live().connect(a.url, await token_for(a, student), DASH)
    assert (await as_student.call("watch_course", payload, namespace=DASH))["error"]["code"] == "forbidden"
    as_rival = await live().connect(a.url, await token_for(a, rival), DASH)
    assert (await as_rival.call("watch_course", payload, namespace=DASH))["error"]["code"] == "forbidden"
    missing = {"course_id": str(uuid.uuid4())}
    assert (await as_rival.call("watch_course", missing, namespace=DASH))["error"]["code"] == "not_found"
    as_admin = await live().connect(a.url, await token_for(a, admin), DASH)
    assert (await as_admin.call("watch_course", payload, namespace=DASH))["ok"] is True

    # The refused watchers really are outside the room.
    await a.app[EVENTS].publish(CourseCompleted(course["id"], enrollment_id=uuid.uuid4(), student_id=student["id"]))
    await as_admin.next("course_completed", DASH)
    assert as_rival.pending("course_completed", DASH) == []
    assert as_student.pending("course_completed", DASH) == []


# -- presence -----------------------------------------------------------------


async def test_presence_counts_students_across_instances(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    instructor, student, course, _ = await course_with_student(db)
    other_student = await make_user(db)
    await make_enrollment(db, other_student, course)
    watcher = await live().connect(a.url, await token_for(a, instructor), DASH)
    cid = str(course["id"])
    assert (await watcher.call("watch_course", {"course_id": cid}, namespace=DASH))["online_students"] == 0

    phone = await live().connect(b.url, await token_for(b, student))
    assert await watcher.next("presence", DASH) == {"course_id": cid, "online_students": 1}
    laptop = await live().connect(a.url, await token_for(a, student))  # same student: still one
    other = await live().connect(a.url, await token_for(a, other_student))
    assert await watcher.next("presence", DASH) == {"course_id": cid, "online_students": 2}
    # A second watcher on the other instance gets the cluster-wide count at once.
    second = await live().connect(b.url, await token_for(b, instructor), DASH)
    assert (await second.call("watch_course", {"course_id": cid}, namespace=DASH))["online_students"] == 2

    await phone.close()  # the laptop keeps the student online
    await other.close()
    assert await watcher.next("presence", DASH) == {"course_id": cid, "online_students": 1}
    await laptop.close()
    assert await watcher.next("presence", DASH) == {"course_id": cid, "online_students": 0}
    assert await second.next("presence", DASH) in ({"course_id": cid, "online_students": n} for n in (1, 0))


# -- token expiry and re-authentication ---------------------------------------


def short_token(instance: Instance, user: Any, seconds: int) -> str:
    settings = instance.app[CONFIG]
    token, _ = issue(settings, TokenType.ACCESS, str(user["id"]), exp=int(time.time()) + seconds)
    return token


async def test_connection_is_closed_when_the_token_expires(instances: list[Instance], live: Any, db: Database) -> None:
    user = await make_user(db)
    client = await live().connect(instances[0].url, short_token(instances[0], user, 3))
    assert "expires_at" in await client.next("auth_expiring")
    assert "expired" in (await client.next("auth_expired"))["message"]
    await client.next("disconnect")


async def test_reauthenticating_keeps_the_connection_open(instances: list[Instance], live: Any, db: Database) -> None:
    a = instances[0]
    instructor, _, course, _ = await course_with_student(db)
    client = await live().connect(a.url, short_token(a, instructor, 3), DASH)
    cid = str(course["id"])
    assert (await client.call("watch_course", {"course_id": cid}, namespace=DASH))["ok"] is True
    old = (await client.next("auth_expiring", DASH))["expires_at"]

    ack = await client.call("authenticate", {"token": await token_for(a, instructor)}, namespace=DASH)
    assert ack["ok"] is True and ack["expires_at"] > old + 60
    # What the server will do next: warn before the new token ends, nothing when the old one does.
    namespace = a.app[REALTIME].sio.namespace_handlers[DASH]
    server_side = await namespace.connection(client.sio.get_sid(DASH))
    assert server_side is not None and server_side.expires_at == ack["expires_at"]
    loop = asyncio.get_running_loop()
    assert server_side.timer is not None and server_side.timer.when() > loop.time() + (old - time.time()) + 30
    await a.app[EVENTS].publish(CourseCompleted(course["id"], enrollment_id=uuid.uuid4(), student_id=uuid.uuid4()))
    await client.next("course_completed", DASH)


async def test_reauthentication_is_refused_for_bad_or_foreign_tokens(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a = instances[0]
    user, stranger = await make_user(db), await make_user(db)
    client = await live().connect(a.url, await token_for(a, user))
    bad = await client.call("authenticate", {"token": "garbage"})
    assert bad["ok"] is False and bad["error"]["code"] == "unauthorized"
    foreign = await client.call("authenticate", {"token": await token_for(a, stranger)})
    assert foreign["ok"] is False and foreign["error"]["code"] == "forbidden"


# -- robustness ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((), "invalid_payload"),
        (("a string",), "invalid_payload"),
        (([1, 2, 3],), "invalid_payload"),
        (({},), "invalid_payload"),
        (({"course_id": "not-a-uuid"},), "invalid_payload"),
        (({"course_id": None},), "invalid_payload"),
        (({"course_id": str(uuid.uuid4())}, "extra"), "invalid_payload"),
    ],
)
async def test_malformed_payloads_are_refused_without_disconnecting(
    instances: list[Instance], live: Any, db: Database, args: tuple[Any, ...], code: str
) -> None:
    a = instances[0]
    instructor, _, course, _ = await course_with_student(db)
    client = await live().connect(a.url, await token_for(a, instructor), DASH)
    ack = await client.call("watch_course", *args, namespace=DASH)
    assert ack["ok"] is False and ack["error"]["code"] == code and ack["error"]["message"]
    ok = await client.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
    assert ok["ok"] is True


async def test_unknown_events_and_bad_arguments_do_not_break_the_connection(
    instances: list[Instance], live: Any, db: Database
) -> None:
    a = instances[0]
    user = await make_user(db)
    client = await live().connect(a.url, await token_for(a, user))
    ack = await client.call("no_such_event", {"x": 1})
    assert ack["ok"] is False and ack["error"]["code"] == "unknown_event"
    # Well-formed Socket.IO packets with arguments no event takes, on a raw
    # websocket (packets that are not Socket.IO close the connection:
    # test_realtime_protocol.py).
    async with aiohttp.ClientSession() as http:
        url = a.url + "/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_str()).startswith("0{")
            await ws.send_str('40{"token":"' + await token_for(a, user) + '"}')
            assert (await ws.receive_str()).startswith("40{")
            for odd in ("42[123]", '42["authenticate"]', '42["authenticate",1,2]', '42["x",{}]'):
                await ws.send_str(odd)
            await ws.send_str('421["authenticate",{"token":"bad"}]')
            reply = await ws.receive_str()
            assert reply.startswith("431[") and '"unauthorized"' in reply
    assert (await client.call("authenticate", {"token": "x"}))["error"]["code"] == "unauthorized"


async def test_client_events_are_rate_limited_per_connection(
    aiohttp_client: Any, servers: Any, live: Any, db: Database
) -> None:
    from lms.app import create_app
    from tests.conftest import make_config

    config = make_config(servers, realtime={"events_per_second": 0.5, "event_burst": 3})
    app = create_app(config)
    http = await aiohttp_client(app)
    instance = Instance(app, http)
    user = await make_user(db)
    client = await live().connect(instance.url, await token_for(instance, user))
    other = await live().connect(instance.url, await token_for(instance, user))
    codes = [(await client.call("authenticate", {"token": "x"}))["error"]["code"] for _ in range(5)]
    assert codes == ["unauthorized"] * 3 + ["rate_limited"] * 2
    # Another connection has its own budget.
    assert (await other.call("authenticate", {"token": "x"}))["error"]["code"] == "unauthorized"


async def test_websocket_compression_is_declined(instances: list[Instance]) -> None:
    async with aiohttp.ClientSession() as http:
        url = instances[0].url + "/socket.io/?EIO=4&transport=websocket"
        async with http.ws_connect(url, compress=15) as ws:
            assert ws.compress == 0
            assert (await ws.receive_str()).startswith("0{")


# -- fan-out health -----------------------------------------------------------


async def ready(instance: Instance) -> tuple[int, dict[str, Any]]:
    response = await instance.http.get("/api/v1/ready")
    return response.status, await response.json()


async def test_readiness_includes_the_fanout_listener(instances: list[Instance]) -> None:
    status, body = await ready(instances[0])
    assert status == 200 and body["checks"]["socketio_fanout"] == "ok"


async def delivered_across(a: Instance, b: Instance, live: Any, db: Database) -> None:
    """An event raised on ``b`` reaches a watcher on ``a`` (retried while the fan-out recovers)."""
    instructor, student, course, enrollment = await course_with_student(db)
    watcher = await live().connect(a.url, await token_for(a, instructor), DASH)
    await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)

    async def arrived() -> bool:
        await b.app[EVENTS].publish(progress_event(course, enrollment, student))
        try:
            await watcher.next("lesson_progress", DASH, timeout=0.5)
        except AssertionError:  # lost while the fan-out recovers: publish again
            return False
        return True

    await eventually(arrived, what="cross-instance delivery")


async def test_listener_that_died_or_went_deaf_is_restarted(instances: list[Instance], live: Any, db: Database) -> None:
    a, b = instances
    fanout = a.app[REALTIME].fanout
    assert fanout.listener is not None
    fanout.listener.cancel()  # the listener task dies
    await eventually(lambda: fanout.listener_restarts == 1, what="restart after death")
    await delivered_across(a, b, live, db)

    fanout.last_heard -= 3600  # as if it had heard nothing for an hour
    assert not fanout.is_up()
    await eventually(lambda: fanout.listener_restarts == 2, what="restart when deaf")
    await eventually(lambda: fanout.is_up(), what="listener up again")
    await delivered_across(a, b, live, db)


async def test_a_stopped_fanout_restarts_nothing(instances: list[Instance]) -> None:
    fanout = instances[0].app[REALTIME].fanout
    listener = fanout.listener
    assert listener is not None and not listener.done()
    await fanout.stop()
    assert listener.done() and fanout.listener is listener
    # What a watchdog whose cancellation a library swallowed would do next: nothing.
    fanout._supervise()
    assert fanout.listener is listener and fanout.listener_restarts == 0


async def test_killed_pubsub_connection_recovers(
    instances: list[Instance], live: Any, db: Database, redis: Any
) -> None:
    a, b = instances
    for instance in instances:
        fanout = instance.app[REALTIME].fanout
        await eventually(lambda f=fanout: f.is_up(), what="listener up")
    if isinstance(redis, RedisCluster):  # every node: the listeners subscribe wherever the cluster sends them
        killed = await redis.client_kill_filter(_type="pubsub", target_nodes=RedisCluster.ALL_NODES)
        assert sum(killed.values()) >= 2
    else:
        assert await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 2
    await delivered_across(a, b, live, db)
    await delivered_across(b, a, live, db)


async def test_metrics_count_clients_events_and_emits(instances: list[Instance], live: Any, db: Database) -> None:
    a = instances[0]
    instructor, student, course, enrollment = await course_with_student(db)
    watcher = await live().connect(a.url, await token_for(a, instructor), DASH)
    await live().connect(a.url, await token_for(a, student))
    await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)
    await watcher.call("watch_course", {}, namespace=DASH)
    await a.app[EVENTS].publish(progress_event(course, enrollment, student))
    await watcher.next("lesson_progress", DASH)
    sent = 'lms_socketio_events_out_total{event="lesson_progress",namespace="/dashboard"} 1.0'

    async def scrape() -> str:
        text = await (await a.http.get("/metrics")).text()
        return text if sent in text else ""  # counted once the publish returned

    text = await eventually(scrape, what="events out counted")
    assert 'lms_socketio_clients{namespace="/"} 1.0' in text
    assert 'lms_socketio_clients{namespace="/dashboard"} 1.0' in text
    assert 'lms_socketio_events_in_total{event="watch_course",namespace="/dashboard",outcome="ok"} 1.0' in text
    assert 'outcome="invalid_payload"} 1.0' in text
    assert 'lms_socketio_emit_seconds_count{namespace="/dashboard"}' in text
    assert "lms_socketio_fanout_up 1.0" in text


# -- the dashboard page (browser test: test_dashboard_page.py) ----------------


async def test_dashboard_page_is_served_with_its_own_csp(instances: list[Instance]) -> None:
    http = instances[0].http
    course_id = uuid.uuid4()
    response = await http.get(f"/dashboard/courses/{course_id}")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert f'data-course-id="{course_id}"' in page
    assert "/static/vendor/socket.io/socket.io.min.js" in page and "/static/dashboard.js" in page
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert (await http.get("/static/dashboard.js")).status == 200
    assert (await http.get("/dashboard/courses/not-a-uuid")).status == 404


async def test_redis_outage_fails_soft_and_the_fanout_recovers(
    aiohttp_client: Any, servers: Any, live: Any, db: Database, tmp_path: Any
) -> None:
    from lms.app import create_app
    from lms.devservers import EmbeddedRedis
    from tests.conftest import make_config
    from tests.test_token_checks import past_the_reuse_bound

    redis_server = EmbeddedRedis(tmp_path / "redis")
    config = make_config(servers, redis={"url": redis_server.start(), "socket_timeout_seconds": 1})
    try:
        a, b = [Instance(app, await aiohttp_client(app)) for app in (create_app(config), create_app(config))]
        instructor, student, course, enrollment = await course_with_student(db)
        token = await token_for(a, instructor)
        watcher = await live().connect(a.url, token, DASH)
        await watcher.call("watch_course", {"course_id": str(course["id"])}, namespace=DASH)

        redis_server.stop()
        stopped = time.monotonic()

        async def not_ready() -> dict[str, Any] | None:
            status, body = await ready(a)
            return body if status == 503 and body["checks"]["socketio_fanout"] != "ok" else None

        body = await eventually(not_ready, what="readiness failing")
        assert "socketio_fanout" in body["failed"]
        # The server keeps serving; an event raised here still reaches this instance's clients.
        assert (await a.http.get("/api/v1/health")).status == 200
        await a.app[EVENTS].publish(progress_event(course, enrollment, student, "75"))
        assert (await watcher.next("lesson_progress", DASH))["progress_percentage"] == 75.0
        assert a.app[REALTIME].fanout.publish_failures > 0
        # New connections cannot be checked for revocation: refused, not crashed
        # (once the token's last check is older than auth.principal_cache_seconds).
        await past_the_reuse_bound(config, stopped)
        assert "try again" in await refused(live, a, token)

        redis_server.start()  # same port, empty

        async def is_ready() -> bool:
            return (await ready(a))[0] == 200 and (await ready(b))[0] == 200

        await eventually(is_ready, timeout=60, what="readiness back")
        await delivered_across(a, b, live, db)
    finally:
        redis_server.stop()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "stock"])
async def test_broadcasts_arrive_in_order_on_every_transport_and_instance(
    aiohttp_client: Any, servers: Any, live: Any, db: Database, direct: bool
) -> None:
    from lms.app import create_app
    from tests.conftest import make_config

    config = make_config(servers, realtime={"direct_broadcast": direct})
    a, b = [Instance(app, await aiohttp_client(app)) for app in (create_app(config), create_app(config))]
    instructor, student, course, enrollment = await course_with_student(db)
    cid = {"course_id": str(course["id"])}
    websocket = await live().connect(a.url, await token_for(a, instructor), DASH)
    polling = await live().connect(a.url, await token_for(a, instructor), DASH, transport="polling")
    remote = await live().connect(b.url, await token_for(b, instructor), DASH)
    for watcher in (websocket, polling, remote):
        assert (await watcher.call("watch_course", cid, namespace=DASH))["ok"] is True

    for pct in range(1, 41):
        await a.app[EVENTS].publish(progress_event(course, enrollment, student, str(pct)))
    for watcher in (websocket, polling, remote):
        seen = [(await watcher.next("lesson_progress", DASH))["progress_percentage"] for _ in range(40)]
        assert seen == [float(p) for p in range(1, 41)]
        # Acks interleave with broadcasts on the same connection and still work.
        assert (await watcher.call("unwatch_course", cid, namespace=DASH))["ok"] is True

    text = await (await a.http.get("/metrics")).text()
    direct_count = float(text.split('lms_socketio_deliveries{path="direct"} ')[1].split()[0])
    queued_count = float(text.split('lms_socketio_deliveries{path="queued"} ')[1].split()[0])
    if direct:
        assert direct_count >= 40 and queued_count >= 40  # the websocket client, the polling one
    else:
        assert direct_count == 0  # python-socketio's own delivery (not counted here)


# -- sessions ended: logout-all, password change, deactivation (issue 10) -------------


@pytest.mark.parametrize("how", ["logout-all", "password change", "deactivation"])
async def test_ending_all_sessions_closes_the_users_sockets_on_every_instance(
    instances: list[Instance], live: Any, db: Database, how: str
) -> None:
    from tests.builders import PASSWORD
    from tests.test_live_actor import live_game

    a, b = instances
    game = await live_game(db)
    teacher = game["teacher"]
    token = await token_for(a, teacher)
    devices = await live().connect(b.url, token)
    dashboard = await live().connect(a.url, token, DASH)
    host = await live().connect(b.url, token, "/live")
    assert (await host.call("host_session", {"session_id": game["id"]}, namespace="/live"))["ok"]
    bystander = await live().connect(b.url, await token_for(b, await make_user(db)))

    if how == "logout-all":
        response = await a.http.post("/api/v1/auth/logout-all", headers=bearer(token))
    elif how == "password change":
        body = {"current_password": PASSWORD, "new_password": "another long passphrase 77"}
        response = await a.http.post("/api/v1/users/me/password", json=body, headers=bearer(token))
    else:
        admin = await token_for(a, await make_user(db, role="admin"))
        response = await a.http.patch(
            f"/api/v1/users/{teacher['id']}", json={"is_active": False}, headers=bearer(admin)
        )
    assert response.status in (200, 204), await response.text()

    for client, namespace in ((devices, "/"), (dashboard, DASH), (host, "/live")):
        assert "signed out" in (await client.next("auth_expired", namespace))["message"]
        assert await client.next("disconnect", namespace) == "server disconnect"  # clients do not reconnect
    assert (await bystander.call("authenticate", {"token": "x"}))["error"]["code"] == "unauthorized"


async def test_watchdogs_restart_nothing_once_stopping(servers: Any) -> None:
    """After stop() began, a watchdog that still gets to its check (its cancel swallowed by a publish
    in flight) restarts no listener: the one-off restart around shutdown is gone."""
    import redis.asyncio as aioredis

    from realtime.channels import Channels
    from realtime.fanout import RedisFanout

    settings = RedisSettings(url=servers.redis_url)
    fanout = RedisFanout(settings, channel=f"lms:test:{uuid.uuid4().hex}", heartbeat_interval=0.05)
    socketio.AsyncServer(client_manager=fanout, async_mode="aiohttp")
    fanout.start()
    assert await fanout.wait_subscribed(5.0)
    await fanout.stop()
    assert fanout.listener is not None and fanout.listener.done()
    fanout._supervise()  # what the watchdog runs every interval
    assert fanout.listener_restarts == 0 and fanout.listener.done()
    fanout.start()  # a late start does not come back to life either
    assert fanout.listener.done()

    redis = aioredis.Redis.from_url(servers.redis_url)

    async def ignore(channel: str, data: bytes) -> None:
        raise AssertionError("nothing is published here")

    channels = Channels(redis=redis, on_message=ignore, heartbeat_channel=f"hb:{uuid.uuid4().hex}",
                        heartbeat_interval=0.05)  # fmt: skip
    try:
        assert await channels.start(5.0)
        listener = channels._listener
        await channels.stop()
        assert listener is not None and listener.done()
        channels._supervise()
        assert channels.restarts == 0 and channels._listener is listener
    finally:
        await redis.aclose()
