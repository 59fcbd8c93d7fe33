"""Namespace ``/``: a signed-in user's own devices.

Each connection joins ``user:{id}``; ``notification`` and ``progress_updated``
reach every device of the user on every instance. A student's connections
also make them count as online in the courses they study
(:mod:`lms.enrollments.studying`; see :mod:`realtime.presence`).
"""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from lms.appkeys import DB
from lms.enrollments.studying import studied_course_ids
from realtime.context import Realtime
from realtime.namespace import AuthenticatedNamespace, Client
from realtime.presence import PresenceEntry
from realtime.rooms import USERS_NAMESPACE, user_room

log = logging.getLogger(__name__)


class DevicesNamespace(AuthenticatedNamespace):
    def __init__(self, rt: Realtime) -> None:
        super().__init__(USERS_NAMESPACE, rt)

    def participants_of(self, user_id: uuid.UUID) -> str | None:
        return user_room(user_id)

    async def joined(self, sid: str, client: Client) -> None:
        await self.enter_room(sid, user_room(client.user_id))
        async with self.rt.app[DB].connection() as conn:
            client.course_ids = tuple(str(c) for c in await studied_course_ids(conn, client.user_id))
        if client.course_ids:
            try:
                came_online = await self.rt.store.connect(self._presence(sid, client))
            except (RedisError, OSError) as err:
                # Presence catches up at the next refresh; the connection is fine.
                log.warning("presence of user %s not recorded: %s", client.user_id, err)
                return
            self.rt.presence_changed(came_online)

    async def left(self, sid: str, client: Client) -> None:
        if not client.course_ids:
            return
        try:
            went_offline = await self.rt.store.disconnect(self._presence(sid, client))
        except (RedisError, OSError) as err:
            log.warning("presence of user %s not cleared (it expires): %s", client.user_id, err)
            return
        self.rt.presence_changed(went_offline)

    @staticmethod
    def _presence(sid: str, client: Client) -> PresenceEntry:
        return PresenceEntry(str(client.user_id), sid, client.course_ids)
