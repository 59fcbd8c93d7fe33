"""What every authenticated namespace does: sign-in, token expiry, event dispatch.

Connecting: ``io(url + ns, {auth: {token}})`` with an access token. It must
pass every check a REST call makes (signature, expiry, revocation, active
account, not issued before a password change); otherwise the connection is
refused and the client's ``connect_error`` carries the reason as ``message``.

Revocation: when every token of a user issued up to a time is revoked
(logout-all, a password change, deactivation), the connections that
authenticated with such a token get ``auth_expired`` and are disconnected,
on every instance (:meth:`AuthenticatedNamespace.end_sessions`).

Token expiry: the connection keeps the privileges of its token only until the
token's ``exp``. ``auth_expiring`` ``{expires_at}`` is sent
``realtime.auth_expiry_warning_seconds`` before; the client answers by
emitting ``authenticate`` ``{token}`` with a fresh access token of the same
user (ack ``{ok, expires_at}``). Without it, ``auth_expired`` ``{message}``
is sent at ``exp`` and the server closes the connection. Each namespace
connection authenticates on its own, so a client re-authenticates each one.

Client events: one payload argument and an ack; the payload is validated
against a model (``invalid_payload`` otherwise) and a per-connection token
bucket limits the rate (``rate_limited``). Nothing a client sends disconnects
it or reaches the namespace as an exception.
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

Handler = Callable[[str, "Client", Any], Awaitable[Ack]]

SIGNED_OUT = "You were signed out (everywhere, a password change or a deactivated account); sign in again."


@dataclass
class Client:
    """Per-connection state, kept in the Socket.IO session under ``"client"``.

    Engine.IO sessions live in this process's memory, so the object is
    mutated in place (token bucket, watched courses) without a save.
    """

    user_id: uuid.UUID
    role: str
    expires_at: float
    tokens: float
    refilled_at: float
    # The iat of the token the connection last authenticated with.
    issued_at: float = 0.0
    timer: asyncio.TimerHandle | None = None
    # `/`: the courses this student is counted online in.
    course_ids: tuple[str, ...] = ()
    # `/dashboard`: the courses this connection watches.
    watching: set[str] = field(default_factory=set)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class EventSpec:
    model: type[BaseModel]
    handler: Handler


class AuthenticatedNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, namespace: str, rt: Realtime) -> None:
        super().__init__(namespace)
        self.rt = rt
        self.events: dict[str, EventSpec] = {"authenticate": EventSpec(protocol.Authenticate, self.reauthenticate)}

    # -- hooks for subclasses ---------------------------------------------

    async def joined(self, sid: str, client: Client) -> None:
        """The connection was accepted (rooms, presence)."""

    async def left(self, sid: str, client: Client) -> None:
        """The connection is gone (presence)."""

    async def reauthenticated(self, sid: str, client: Client) -> None:
        """The connection presented a fresh token (the role may have changed)."""

    # -- dispatch ---------------------------------------------------------

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            return await self._connect(args[0], args[2] if len(args) > 2 else None)
        if event == "disconnect":
            return await self._disconnect(args[0])
        return await self._client_event(event, args[0], args[1:])

    async def _client_event(self, event: Any, sid: str, args: tuple[Any, ...]) -> Ack:
        spec = self.events.get(event) if isinstance(event, str) else None
        label = event if spec is not None else "unknown"
        try:
            client = await self.client(sid)
            if client is None:
                raise EventError(protocol.UNAUTHORIZED, "Not signed in on this namespace.")
            bind_log_context(user_id=str(client.user_id))  # this event's own task: nothing to undo
            self._take_token(client)
            if spec is None:
                raise EventError(protocol.UNKNOWN_EVENT, f"No event {str(event)[:64]!r} on {self.namespace}.")
            if len(args) != 1:
                raise EventError(protocol.INVALID_PAYLOAD, "Send exactly one payload object.")
            try:
                payload = spec.model.model_validate(args[0])
            except ValidationError as err:
                raise EventError(protocol.INVALID_PAYLOAD, protocol.describe(err)) from err
            ack = await spec.handler(sid, client, payload)
        except EventError as err:
            self.rt.metrics.events_in.labels(self.namespace, label, err.code).inc()
            return protocol.failure(err.code, err.message)
        except Exception:
            log.exception("%s %s failed", self.namespace, label)
            self.rt.metrics.events_in.labels(self.namespace, label, protocol.INTERNAL_ERROR).inc()
            return protocol.failure(protocol.INTERNAL_ERROR, "Something went wrong; try again.")
        self.rt.metrics.events_in.labels(self.namespace, label, "ok").inc()
        return ack

    def _take_token(self, client: Client) -> None:
        config = self.rt.config
        now = time.monotonic()
        client.tokens = min(config.event_burst, client.tokens + (now - client.refilled_at) * config.events_per_second)
        client.refilled_at = now
        if client.tokens < 1:
            raise EventError(protocol.RATE_LIMITED, f"Too many events; at most {config.events_per_second:g} a second.")
        client.tokens -= 1

    async def client(self, sid: str) -> Client | None:
        try:
            session = await self.get_session(sid)
        except KeyError:
            return None
        value = session.get("client")
        return value if isinstance(value, Client) else None

    # -- connect, expiry, disconnect --------------------------------------

    async def _connect(self, sid: str, auth: Any) -> bool:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            self.rt.metrics.refused(self.namespace, "no_token")
            raise socketio.exceptions.ConnectionRefusedError(
                "Send an access token: io(url, {auth: {token: '<access token>'}})."
            )
        principal = await self._principal(token)
        config = self.rt.config
        client = Client(
            user_id=principal.id, role=principal.role, expires_at=principal.expires_at,
            tokens=float(config.event_burst), refilled_at=time.monotonic(), issued_at=principal.issued_at,
        )  # fmt: skip
        await self.save_session(sid, {"client": client})
        try:
            await self.joined(sid, client)
        except Exception as err:
            log.exception("%s: setting up connection of user %s failed", self.namespace, client.user_id)
            self.rt.metrics.refused(self.namespace, "error")
            raise socketio.exceptions.ConnectionRefusedError("The server could not set up the connection.") from err
        self._schedule_expiry(sid, client)
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

    async def reauthenticate(self, sid: str, client: Client, payload: protocol.Authenticate) -> Ack:
        try:
            principal = await principal_from_token(self.rt.app, payload.token)
        except Unauthorized as err:
            raise EventError(protocol.UNAUTHORIZED, err.detail or "The token is not valid.") from err
        except ServiceUnavailable as err:
            raise EventError("unavailable", "The token cannot be checked right now; try again shortly.") from err
        if principal.id != client.user_id:
            raise EventError(protocol.FORBIDDEN, "The token belongs to another user; connect again instead.")
        client.role = principal.role
        client.expires_at = principal.expires_at
        client.issued_at = principal.issued_at
        self._schedule_expiry(sid, client)
        await self.reauthenticated(sid, client)
        return protocol.ok(expires_at=int(principal.expires_at))

    def _schedule_expiry(self, sid: str, client: Client) -> None:
        if client.timer is not None:
            client.timer.cancel()
        loop = asyncio.get_running_loop()
        remaining = client.expires_at - time.time()
        warn_in = remaining - self.rt.config.auth_expiry_warning_seconds
        if warn_in > 0:
            client.timer = loop.call_later(warn_in, self._expiring, sid, client)
        else:
            client.timer = loop.call_later(max(remaining, 0), self._expired, sid, client)

    def _expiring(self, sid: str, client: Client) -> None:
        loop = asyncio.get_running_loop()
        client.timer = loop.call_later(max(client.expires_at - time.time(), 0), self._expired, sid, client)
        self.rt.spawn(self._send_local(sid, "auth_expiring", {"expires_at": int(client.expires_at)}))

    def _expired(self, sid: str, client: Client) -> None:
        client.timer = None
        self.rt.spawn(self._close_expired(sid))

    async def _close_expired(self, sid: str) -> None:
        message = "The access token expired; connect again with a fresh token."
        await self._send_local(sid, "auth_expired", {"message": message})
        await self.disconnect(sid)

    async def end_sessions(self, user_id: uuid.UUID, cutoff: float) -> None:
        """The user's tokens up to ``cutoff`` were revoked: close this instance's connections that use one."""
        for sid, _ in list(self.rt.fanout.get_participants(self.namespace, self.participants_of(user_id))):
            client = await self.client(sid)
            if client is not None and client.user_id == user_id and client.issued_at <= cutoff:
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
        client = await self.client(sid)
        if client is None:
            return
        if client.timer is not None:
            client.timer.cancel()
            client.timer = None
        try:
            await self.left(sid, client)
        except Exception:
            log.exception("%s: cleaning up after user %s failed", self.namespace, client.user_id)
