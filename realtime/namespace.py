"""The one namespace base: sign-in (required or optional), an event table, one token bucket, one ack shape.

Every namespace (``/``, ``/dashboard``, ``/live``) is an :class:`EventNamespace`
and keeps only its own events in :attr:`EventNamespace.events`.

Connecting: ``io(url + ns, {auth: {token}})`` with an access token. It must
pass every check a REST call makes (signature, expiry, revocation, active
account, not issued before a password change); otherwise the connection is
refused and the client's ``connect_error`` carries the reason as ``message``.
Namespaces with ``auth_required = False`` (``/live``: guests play without an
account) also accept a connection without a token; a token, when sent, must
be valid all the same.

Revocation: when every token of a user issued up to a time is revoked
(logout-all, a password change, deactivation), the connections that
authenticated with such a token get ``auth_expired`` and are disconnected,
on every instance (:meth:`EventNamespace.end_sessions`).

Token expiry (namespaces with ``close_on_expiry``, the authenticated ones):
the connection keeps the privileges of its token only until the token's
``exp``. ``auth_expiring`` ``{expires_at}`` is sent
``realtime.auth_expiry_warning_seconds`` before; the client answers by
emitting ``authenticate`` ``{token}`` with a fresh access token of the same
user (ack ``{ok, expires_at}``). Without it, ``auth_expired`` ``{message}``
is sent at ``exp`` and the server closes the connection. Each namespace
connection authenticates on its own, so a client re-authenticates each one.
On ``/live`` an expired token ends no game: host commands check it instead.

Client events: one payload argument and an ack; the payload is validated
against the event's model (``invalid_payload`` otherwise), a per-connection
token bucket limits the rate (``rate_limited``), and a refusal is an
:class:`~realtime.protocol.EventError` (or a subclass, such as the live
side's ``LiveError``), answered ``{"ok": false, "error": {code, message}}``.
Nothing a client sends disconnects it or reaches the namespace as an exception.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import socketio
from pydantic import BaseModel, ValidationError

from lms.api.problems import RETRY_AFTER_SECONDS, ServiceUnavailable, Unauthorized
from lms.auth.guards import Principal, principal_from_token
from lms.logs import bind_log_context
from realtime import protocol
from realtime.context import Realtime
from realtime.protocol import Ack, EventError

log = logging.getLogger(__name__)

Handler = Callable[[str, Any, Any], Awaitable[Ack]]

SIGNED_OUT = "You were signed out (everywhere, a password change or a deactivated account); sign in again."


@dataclass
class SocketState:
    """Per-connection state, kept in the Socket.IO session under ``"conn"``.

    Engine.IO sessions live in this process's memory, so the object is
    mutated in place (token bucket, rooms) without a save. Namespaces
    subclass it with their own fields. ``principal`` is the account as of
    the token the connection last authenticated with (None: a guest): the
    same object REST guards check, so the access rules
    (:mod:`lms.courses.access` ...) take it as they are.
    """

    principal: Principal | None
    tokens: float
    refilled_at: float
    timer: asyncio.TimerHandle | None = None


@dataclass
class Client(SocketState):
    """A connection of ``/`` or ``/dashboard`` (always signed in)."""

    # `/`: the courses this student is counted online in.
    course_ids: tuple[str, ...] = ()
    # `/dashboard`: the courses this connection watches.
    watching: set[str] = field(default_factory=set)

    def signed_in(self) -> Principal:
        if self.principal is None:
            raise EventError(protocol.UNAUTHORIZED, "Not signed in on this namespace.")
        return self.principal

    @property
    def user_id(self) -> uuid.UUID:
        return self.signed_in().id

    @property
    def role(self) -> str:
        return self.signed_in().role

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.is_admin

    @property
    def expires_at(self) -> float:
        return self.signed_in().expires_at

    @property
    def issued_at(self) -> float:
        return self.signed_in().issued_at


@dataclass(frozen=True)
class EventSpec:
    model: type[BaseModel]
    handler: Handler


class EventNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    # Whether a connection must present an access token.
    auth_required = True
    # Whether a connection is closed when its token expires (auth_expiring, then auth_expired).
    close_on_expiry = True

    def __init__(self, namespace: str, rt: Realtime) -> None:
        super().__init__(namespace)
        self.rt = rt
        self.events: dict[str, EventSpec] = {"authenticate": EventSpec(protocol.Authenticate, self.reauthenticate)}

    # -- hooks for subclasses ---------------------------------------------

    def new_connection(self, sid: str, principal: Principal | None, environ: dict[str, Any]) -> SocketState:
        """The state of a connection just accepted."""
        return Client(principal, float(self.rt.config.event_burst), time.monotonic())

    def log_context(self, conn: Any) -> None:
        """Fields every log line of this event's task carries (lms.logs)."""
        bind_log_context(user_id=str(conn.principal.id) if conn.principal is not None else None)

    def handled(self, event: str, outcome: str) -> None:
        """An event was answered (``outcome``: ``ok`` or the error code): the namespace's own counters."""

    async def joined(self, sid: str, conn: Any) -> None:
        """The connection was accepted (rooms, presence)."""

    async def left(self, sid: str, conn: Any) -> None:
        """The connection is gone (presence)."""

    async def reauthenticated(self, sid: str, conn: Any) -> None:
        """The connection presented a fresh token (the role may have changed)."""

    # -- dispatch ---------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self._connect(args[0], args[1], args[2] if len(args) > 2 else None)
        if event == "disconnect":
            return await self._disconnect(args[0])
        return await self._client_event(event, args[0], args[1:])

    async def _client_event(self, event: Any, sid: str, args: tuple[Any, ...]) -> Ack:
        spec = self.events.get(event) if isinstance(event, str) else None
        label = event if spec is not None else "unknown"
        try:
            conn = await self.connection(sid)
            if conn is None:
                raise EventError(protocol.UNAUTHORIZED, f"Not connected to {self.namespace}.")
            self.log_context(conn)  # this event's own task: nothing to undo
            self._take_token(conn)
            if spec is None:
                raise EventError(protocol.UNKNOWN_EVENT, f"No event {str(event)[:64]!r} on {self.namespace}.")
            if len(args) != 1:
                raise EventError(protocol.INVALID_PAYLOAD, "Send exactly one payload object.")
            try:
                payload = spec.model.model_validate(args[0])
            except ValidationError as err:
                raise EventError(protocol.INVALID_PAYLOAD, protocol.describe(err)) from err
            ack = await spec.handler(sid, conn, payload)
        except EventError as err:
            self._count(label, err.code)
            return protocol.failure(err.code, err.message)
        except Exception:
            log.exception("%s %s failed", self.namespace, label)
            self._count(label, protocol.INTERNAL_ERROR)
            return protocol.failure(protocol.INTERNAL_ERROR, "Something went wrong; try again.")
        self._count(label, "ok")
        return ack

    def _count(self, label: str, outcome: str) -> None:
        self.rt.metrics.events_in.labels(self.namespace, label, outcome).inc()
        self.handled(label, outcome)

    def _take_token(self, conn: SocketState) -> None:
        config = self.rt.config
        now = time.monotonic()
        conn.tokens = min(config.event_burst, conn.tokens + (now - conn.refilled_at) * config.events_per_second)
        conn.refilled_at = now
        if conn.tokens < 1:
            raise EventError(protocol.RATE_LIMITED, f"Too many events; at most {config.events_per_second:g} a second.")
        conn.tokens -= 1

    async def connection(self, sid: str) -> Any:
        """This namespace's state of the connection (a :class:`SocketState`), None if it is gone."""
        try:
            session = await self.get_session(sid)
        except KeyError:
            return None
        value = session.get("conn")
        return value if isinstance(value, SocketState) else None

    # -- connect, expiry, disconnect --------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        principal = None
        if token is not None or self.auth_required:
            if not isinstance(token, str) or not token:
                self.rt.metrics.refused(self.namespace, "no_token" if token is None else "bad_token")
                raise socketio.exceptions.ConnectionRefusedError(
                    "Send an access token: io(url, {auth: {token: '<access token>'}})."
                )
            principal = await self._principal(token)
        conn = self.new_connection(sid, principal, environ)
        await self.save_session(sid, {"conn": conn})
        try:
            await self.joined(sid, conn)
        except Exception as err:
            log.exception("%s: setting up a connection failed", self.namespace)
            self.rt.metrics.refused(self.namespace, "error")
            raise socketio.exceptions.ConnectionRefusedError("The server could not set up the connection.") from err
        self._schedule_expiry(sid, conn)
        self.rt.metrics.accepted(self.namespace, self.rt.sio.transport(sid, namespace=self.namespace))
        return True

    async def _principal(self, token: str) -> Principal:
        try:
            return await principal_from_token(self.rt.app, token)
        except Unauthorized as err:
            self.rt.metrics.refused(self.namespace, "bad_token")
            raise socketio.exceptions.ConnectionRefusedError(err.detail or "Not signed in.") from err
        except ServiceUnavailable as err:  # not a bad token: the client keeps it and connects again
            log.warning("%s: token check unavailable: %s", self.namespace, err.__cause__)
            self.rt.metrics.refused(self.namespace, "unavailable")
            raise socketio.exceptions.ConnectionRefusedError(
                "The server cannot check the token right now; keep it and try again shortly.",
                {"code": "unavailable", "retry_after": RETRY_AFTER_SECONDS},
            ) from err
        except Exception as err:  # database down: refuse, the client retries
            log.exception("%s: cannot check an access token", self.namespace)
            self.rt.metrics.refused(self.namespace, "error")
            raise socketio.exceptions.ConnectionRefusedError(
                "The server cannot check the token right now; try again."
            ) from err

    async def reauthenticate(self, sid: str, conn: SocketState, payload: protocol.Authenticate) -> Ack:
        """``authenticate`` ``{token}``: a fresh token of the same user (or, where guests may connect, a first one)."""
        try:
            principal = await principal_from_token(self.rt.app, payload.token)
        except Unauthorized as err:
            raise EventError(protocol.UNAUTHORIZED, err.detail or "The token is not valid.") from err
        except ServiceUnavailable as err:
            raise EventError("unavailable", "The token cannot be checked right now; try again shortly.") from err
        if conn.principal is not None and principal.id != conn.principal.id:
            raise EventError(protocol.FORBIDDEN, "The token belongs to another user; connect again instead.")
        conn.principal = principal
        self._schedule_expiry(sid, conn)
        await self.reauthenticated(sid, conn)
        return protocol.ok(expires_at=int(principal.expires_at))

    def _schedule_expiry(self, sid: str, conn: SocketState) -> None:
        if not self.close_on_expiry or conn.principal is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
        loop = asyncio.get_running_loop()
        remaining = conn.principal.expires_at - time.time()
        warn_in = remaining - self.rt.config.auth_expiry_warning_seconds
        if warn_in > 0:
            conn.timer = loop.call_later(warn_in, self._expiring, sid, conn)
        else:
            conn.timer = loop.call_later(max(remaining, 0), self._expired, sid, conn)

    def _expiring(self, sid: str, conn: SocketState) -> None:
        assert conn.principal is not None
        expires_at = conn.principal.expires_at
        conn.timer = asyncio.get_running_loop().call_later(max(expires_at - time.time(), 0), self._expired, sid, conn)
        self.rt.spawn(self._send_local(sid, "auth_expiring", {"expires_at": int(expires_at)}))

    def _expired(self, sid: str, conn: SocketState) -> None:
        conn.timer = None
        self.rt.spawn(self._close_expired(sid))

    async def _close_expired(self, sid: str) -> None:
        message = "The access token expired; connect again with a fresh token."
        await self._send_local(sid, "auth_expired", {"message": message})
        await self.disconnect(sid)

    async def end_sessions(self, user_id: uuid.UUID, cutoff: float) -> None:
        """The user's tokens up to ``cutoff`` were revoked: close this instance's connections that use one."""
        for sid, _ in list(self.rt.fanout.get_participants(self.namespace, self.participants_of(user_id))):
            conn = await self.connection(sid)
            principal = conn.principal if conn is not None else None
            if principal is not None and principal.id == user_id and principal.issued_at <= cutoff:
                await self._send_local(sid, "auth_expired", {"message": SIGNED_OUT})
                await self.disconnect(sid)

    def participants_of(self, user_id: uuid.UUID) -> str | None:
        """The room whose members include every connection of the user here (None: the whole namespace)."""
        return None

    async def _send_local(self, sid: str, event: str, data: dict[str, Any]) -> None:
        # The connection is ours: no need to publish to the other instances.
        await self.emit(event, data, to=sid, ignore_queue=True)
        self.rt.metrics.events_out.labels(self.namespace, event).inc()

    async def _disconnect(self, sid: str) -> None:
        conn = await self.connection(sid)
        if conn is None:
            return
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        try:
            await self.left(sid, conn)
        except Exception:
            log.exception("%s: cleaning up after a connection failed", self.namespace)


# The namespaces of signed-in users (``/``, ``/dashboard``).
AuthenticatedNamespace = EventNamespace
