"""Namespace ``/dashboard``: instructors watching their courses live.

``watch_course`` joins ``course:{id}`` after the ownership check (the course's
instructor or an admin) and answers with the cluster-wide count of online
students. Domain events of the course reach that room whichever process
raised them (``realtime/rooms.py``); ``presence`` follows students coming
and going.
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from lms.api.problems import Forbidden, NotFound
from lms.appkeys import DB
from lms.courses.access import load_course
from realtime import protocol
from realtime.context import Realtime
from realtime.namespace import AuthenticatedNamespace, Client, EventSpec
from realtime.protocol import Ack, CourseRef, EventError
from realtime.rooms import DASHBOARD_NAMESPACE, course_room

log = logging.getLogger(__name__)

MAX_WATCHED_COURSES = 100


class DashboardNamespace(AuthenticatedNamespace):
    def __init__(self, rt: Realtime) -> None:
        super().__init__(DASHBOARD_NAMESPACE, rt)
        self.events["watch_course"] = EventSpec(CourseRef, self.watch_course)
        self.events["unwatch_course"] = EventSpec(CourseRef, self.unwatch_course)

    async def watch_course(self, sid: str, client: Client, payload: CourseRef) -> Ack:
        course_id = str(payload.course_id)
        await self._check_access(client, payload.course_id)
        if course_id not in client.watching and len(client.watching) >= MAX_WATCHED_COURSES:
            raise EventError("too_many_courses", f"Watch at most {MAX_WATCHED_COURSES} courses per connection.")
        await self.enter_room(sid, course_room(course_id))
        client.watching.add(course_id)
        online: int | None
        try:
            removed, online = (await self.rt.store.sweep([course_id]))[course_id]
        except (RedisError, OSError) as err:
            log.warning("presence of course %s unavailable: %s", course_id, err)
            online = None
        else:
            if removed:
                self.rt.send_presence(course_id, online)
        return protocol.ok(course_id=course_id, online_students=online)

    async def unwatch_course(self, sid: str, client: Client, payload: CourseRef) -> Ack:
        course_id = str(payload.course_id)
        await self.leave_room(sid, course_room(course_id))
        client.watching.discard(course_id)
        return protocol.ok(course_id=course_id)

    async def _check_access(self, client: Client, course_id: uuid.UUID) -> None:
        """The rule of the course's REST routes: its instructor or an admin (a draft is not found by others)."""
        try:
            async with self.rt.app[DB].connection() as conn:
                await load_course(conn, client.principal, course_id=course_id, manage=True)
        except NotFound:
            raise EventError(protocol.NOT_FOUND, "No such course.") from None
        except Forbidden:
            raise EventError(protocol.FORBIDDEN, "Only the course's instructor or an admin may watch it.") from None

    async def reauthenticated(self, sid: str, client: Client) -> None:
        # A fresh token may carry another role: keep only what it still allows.
        for course_id in sorted(client.watching):
            try:
                await self._check_access(client, uuid.UUID(course_id))
            except EventError:
                await self.leave_room(sid, course_room(course_id))
                client.watching.discard(course_id)
