"""The ``/live`` Socket.IO namespace (realtime/README.md): thin handlers over :mod:`realtime.live.edge`.

Connecting needs no token (guests play without an account); a token, when
sent, must be valid (``connect_error`` otherwise) and makes the connection
an authenticated user: a student who plays under their account, or a host.
Host authority is checked against the account on ``host_session`` and the
token's expiry on every host command.

Per-connection state is a :class:`Peer` in the Socket.IO session. Rooms:
``live:<session>`` (everyone), ``live:<session>:hosts`` and
``live:<session>:players``. There is no room per player: python-socketio
scans every room of a namespace on each disconnect, so rooms are kept few;
an event for one player goes to the sids of the players room whose Peer is
that player.

Events the owner publishes reach every instance through the live channel;
:meth:`LiveNamespace.deliver` hands each to this instance's own clients
(``ignore_queue``: no second trip through Redis).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, StrictBool, StrictInt

from lms.appkeys import CLIENT_IP
from lms.auth.guards import Principal
from lms.config import Settings
from lms.live.scoring import MAX_TEAMS, MIN_TEAMS
from lms.logs import bind_log_context
from lms.quizzes.schemas import PlayedAnswer
from realtime.context import Realtime
from realtime.fanout import Frame, Outbox, RedisFanout
from realtime.live import edge
from realtime.live.errors import LiveError
from realtime.live.guessing import PinGuesses
from realtime.live.runtime import LiveRuntime
from realtime.live.snapshots import player_snapshot
from realtime.namespace import EventNamespace, EventSpec, SocketState
from realtime.protocol import Payload, ok

log = logging.getLogger(__name__)

NAMESPACE = "/live"


def room(session_id: str, part: str | None = None) -> str:
    return f"live:{session_id}" if part is None else f"live:{session_id}:{part}"


# -- payloads ------------------------------------------------------------------


class Empty(Payload):
    pass


class HostSession(Payload):
    session_id: str = Field(max_length=64)


class JoinSession(Payload):
    pin: str = Field(max_length=16)
    nickname: str | None = Field(default=None, max_length=200)
    player_token: str | None = Field(default=None, max_length=200)
    # Team mode: the team to play in (1..team_count); omitted: the smallest team.
    team: StrictInt | None = Field(default=None, ge=1, le=MAX_TEAMS)


class SetTeams(Payload):
    # null ends team mode; required, so that an empty payload is not taken for "no teams".
    team_count: StrictInt | None = Field(ge=MIN_TEAMS, le=MAX_TEAMS)


class ChooseTeam(Payload):
    team: StrictInt = Field(ge=1, le=MAX_TEAMS)


class SubmitAnswer(Payload):
    question_index: StrictInt = Field(ge=0, le=10_000)
    answer: PlayedAnswer


class KickPlayer(Payload):
    player_id: uuid.UUID
    # False (the default): the player may join again (as a new player). True: a ban; its token,
    # its account and this connection may not join the session again.
    ban: StrictBool = False


class SetSessionOptions(Payload):
    """Host options; an omitted field stays as it is."""

    # False: every new player gets a generated name (a chosen nickname is ignored).
    free_nicknames: StrictBool | None = None
    # "buttons": players get only what the answer buttons need (the question is on the host's screen).
    player_view: Literal["full", "buttons"] | None = None


def client_address(environ: dict[str, Any]) -> str:
    """The address the request context middleware worked out (trusted proxies), else the peer's."""
    request = environ.get("aiohttp.request")
    if request is None:
        return ""
    return str(request.get(CLIENT_IP) or request.remote or "")


@dataclass
class Peer(SocketState):
    """A ``/live`` connection: a guest or a signed-in user, host or player of at most one session."""

    session_id: str | None = None
    role: str | None = None  # "host" or "player"
    player_id: str | None = None
    nickname: str = ""
    # The client's address (behind trusted proxies), for the pin guessing limit.
    address: str = ""
    # A connection is at most one player, for its whole life: the pin and
    # token of that player once it joined, and whether the host banned it (a plain kick
    # frees the connection to join again).
    player_pin: str | None = None
    player_token: str = ""
    banned: bool = False
    # The session whose channel this connection counts for (LiveRuntime.watch).
    watching: str | None = None


class LiveNamespace(EventNamespace):
    auth_required = False  # guests play without an account
    close_on_expiry = False  # an expired token ends no game; host commands check it

    def __init__(self, rt: Realtime, config: Settings) -> None:
        super().__init__(NAMESPACE, rt)
        self.app = rt.app
        self.config = config
        self.runtime: LiveRuntime | None = None
        self.pin_guesses: PinGuesses | None = None
        # session id -> player id -> this instance's sids of that player (one lookup per delivery, not a scan).
        self.players_here: dict[str, dict[str, list[str]]] = {}
        self.events.update(
            {
                "host_session": EventSpec(HostSession, self._on_host_session),
                "join_session": EventSpec(JoinSession, self._on_join_session),
                "submit_answer": EventSpec(SubmitAnswer, self._on_submit_answer),
                "kick_player": EventSpec(KickPlayer, self._on_kick_player),
                "choose_team": EventSpec(ChooseTeam, self._on_choose_team),
                "set_teams": EventSpec(SetTeams, self._on_set_teams),
                "set_session_options": EventSpec(SetSessionOptions, self._on_set_session_options),
                "start_session": EventSpec(Empty, self._on_start_session),
                "next": EventSpec(Empty, self._on_next),
                "lock_session": EventSpec(Empty, self._on_lock_session),
                "unlock_session": EventSpec(Empty, self._on_unlock_session),
                "end_session": EventSpec(Empty, self._on_end_session),
                "sync": EventSpec(Empty, self._on_sync),
                "clock": EventSpec(Empty, self._on_clock),
            }
        )

    @property
    def live(self) -> LiveRuntime:
        assert self.runtime is not None, "the live runtime starts with the app"
        return self.runtime

    @property
    def guesses(self) -> PinGuesses:
        assert self.pin_guesses is not None, "the live runtime starts with the app"
        return self.pin_guesses

    def new_connection(self, sid: str, principal: Principal | None, environ: dict[str, Any]) -> Peer:
        burst = float(self.config.realtime.event_burst)
        return Peer(principal, burst, time.monotonic(), address=client_address(environ))

    async def peer(self, sid: str) -> Peer | None:
        conn = await self.connection(sid)
        return conn if isinstance(conn, Peer) else None

    async def left(self, sid: str, conn: Peer) -> None:
        # The manager removes a disconnected sid from its rooms itself.
        await self._leave_current(sid, conn, leave_rooms=False)

    def log_context(self, conn: Peer) -> None:
        # This event's own task: the fields go with it and no further.
        user_id = str(conn.principal.id) if conn.principal is not None else None
        bind_log_context(session_id=conn.session_id, user_id=user_id)

    def handled(self, event: str, outcome: str) -> None:
        if event == "submit_answer":
            self.rt.metrics.live.answers.labels("accepted" if outcome == "ok" else outcome).inc()

    async def _leave_current(self, sid: str, peer: Peer, *, leave_rooms: bool = True) -> None:
        """Leave the session this connection was in (a player's last connection counts as leaving)."""
        if peer.session_id is None:
            return
        session_id, player_id = peer.session_id, peer.player_id
        if leave_rooms:
            for name in self.rooms(sid, namespace=NAMESPACE):
                if isinstance(name, str) and name.startswith(room(session_id)):
                    await self.leave_room(sid, name)
        # A player with a second tab open is marked gone too; that tab's
        # presence refresh brings it back within a third of the presence TTL.
        if peer.role == "player" and player_id is not None:
            self._index(session_id, player_id, sid, add=False)
            try:
                await edge.leave(self.live, session_id, player_id)
            except Exception:  # presence expires on its own
                log.warning("/live: could not mark player %s as gone", player_id, exc_info=True)
        peer.session_id = peer.role = peer.player_id = None
        await self._unwatch(peer)

    async def _unwatch(self, peer: Peer) -> None:
        if peer.watching is not None:
            session_id, peer.watching = peer.watching, None
            await self.live.unwatch(session_id)

    async def _enter(self, sid: str, peer: Peer, session_id: str, role: str, player_id: str | None) -> None:
        if peer.session_id is not None and (peer.session_id, peer.player_id) != (session_id, player_id):
            await self._leave_current(sid, peer)
        peer.session_id, peer.role, peer.player_id = session_id, role, player_id
        if peer.watching != session_id:
            await self._unwatch(peer)
            await self.live.watch(session_id)
            peer.watching = session_id
        await self.enter_room(sid, room(session_id))
        if role == "host":
            await self.enter_room(sid, room(session_id, "hosts"))
        else:
            assert player_id is not None
            await self.enter_room(sid, room(session_id, "players"))
            self._index(session_id, player_id, sid, add=True)

    async def _state_to(self, sid: str, snapshot: dict[str, Any]) -> None:
        await self.emit("session_state", snapshot, to=sid, ignore_queue=True)
        self.rt.metrics.events_out.labels(NAMESPACE, "session_state").inc()

    # -- client events --------------------------------------------------------

    async def _on_host_session(self, sid: str, peer: Peer, payload: HostSession) -> dict[str, Any]:
        if peer.principal is not None and peer.principal.expires_at < time.time():
            raise LiveError("unauthorized", "The access token expired; send `authenticate` with a fresh one.")
        snapshot = await edge.host_session(self.live, peer.principal, payload.session_id)
        await self._enter(sid, peer, snapshot["id"], "host", None)
        await self._state_to(sid, snapshot)
        return ok(session=snapshot)

    async def _on_join_session(self, sid: str, peer: Peer, payload: JoinSession) -> dict[str, Any]:
        if peer.banned:
            raise LiveError("kicked")
        if peer.player_pin is not None:
            return await self._join_again(sid, peer, payload)
        await self.guesses.check(peer.address)
        try:
            joined = await edge.join_session(
                self.live, peer.principal, pin=payload.pin, nickname=payload.nickname,
                player_token=payload.player_token, team=payload.team,
            )  # fmt: skip
        except LiveError as err:
            if err.code == "not_found":
                await self.guesses.failed(peer.address)
            raise
        await self._enter(sid, peer, joined.session_id, "player", joined.player_id)
        peer.nickname = joined.nickname
        peer.player_pin, peer.player_token = payload.pin, joined.player_token
        await self._with_team(joined.session, joined.player_id)
        await self._state_to(sid, joined.session)
        return ok(
            player_id=joined.player_id, player_token=joined.player_token, nickname=joined.nickname,
            session=joined.session,
        )  # fmt: skip

    async def _with_team(self, session: dict[str, Any], player_id: str) -> None:
        """Team mode: the join's ack names the player's team, which the session's owner decides (balancing
        needs the one writer). Asked once per join; if the owner does not answer in time (a takeover), the
        ack says ``team: null`` and ``team_assigned`` follows."""
        me = session.get("me")
        if not session.get("teams") or me is None or me.get("team") is not None:
            return
        result = await self.live.command(session["id"], "team_of", {"player_id": player_id}, by=player_id)
        if result.get("ok"):
            me["team"] = result.get("team")

    async def _join_again(self, sid: str, peer: Peer, payload: JoinSession) -> dict[str, Any]:
        """One connection, one player: the same join again (a retry) gets the same player; any other is refused."""
        same = (
            payload.pin == peer.player_pin
            and payload.player_token in (None, peer.player_token)
            and (payload.nickname is None or " ".join(payload.nickname.split()).casefold() == peer.nickname.casefold())
        )
        if not same or peer.session_id is None or peer.player_id is None:
            raise LiveError(
                "already_joined",
                f"This connection already plays as {peer.nickname!r}; connect again to join as someone else.",
            )
        snapshot = await edge.snapshot(self.live, peer.session_id, player_id=peer.player_id, nickname=peer.nickname)
        await self._state_to(sid, snapshot)
        return ok(player_id=peer.player_id, player_token=peer.player_token, nickname=peer.nickname, session=snapshot)

    async def _on_submit_answer(self, sid: str, peer: Peer, payload: SubmitAnswer) -> dict[str, Any]:
        if peer.role != "player" or peer.session_id is None or peer.player_id is None:
            raise LiveError("not_joined")
        accepted = await edge.submit_answer(
            self.live, peer.session_id, peer.player_id, payload.question_index, payload.answer
        )
        return ok(accepted_at=accepted)

    async def _on_choose_team(self, sid: str, peer: Peer, payload: ChooseTeam) -> dict[str, Any]:
        if peer.role != "player" or peer.session_id is None or peer.player_id is None:
            raise LiveError("not_joined")
        args = {"player_id": peer.player_id, "team": payload.team}
        result = await self.live.command(peer.session_id, "choose_team", args, by=peer.player_id)
        if result.get("ok"):
            result = ok(team=payload.team)
        return result

    async def _host_command(self, peer: Peer, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if peer.role != "host" or peer.session_id is None or peer.principal is None:
            raise LiveError("forbidden", "Only a host of this session may do this.")
        if peer.principal.expires_at < time.time():
            raise LiveError("unauthorized", "The access token expired; send `authenticate` with a fresh one.")
        return await self.live.command(peer.session_id, name, args, by=str(peer.principal.id))

    async def _on_start_session(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        return await self._host_command(peer, "start_session", {})

    async def _on_next(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        return await self._host_command(peer, "next", {})

    async def _on_kick_player(self, sid: str, peer: Peer, payload: KickPlayer) -> dict[str, Any]:
        return await self._host_command(peer, "kick_player", {"player_id": str(payload.player_id), "ban": payload.ban})

    async def _on_set_session_options(self, sid: str, peer: Peer, payload: SetSessionOptions) -> dict[str, Any]:
        return await self._host_command(peer, "set_session_options", payload.model_dump(exclude_none=True))

    async def _on_set_teams(self, sid: str, peer: Peer, payload: SetTeams) -> dict[str, Any]:
        return await self._host_command(peer, "set_teams", {"team_count": payload.team_count})

    async def _on_lock_session(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        return await self._host_command(peer, "lock_session", {})

    async def _on_unlock_session(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        return await self._host_command(peer, "unlock_session", {})

    async def _on_end_session(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        return await self._host_command(peer, "end_session", {})

    async def _on_sync(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        if peer.session_id is None:
            raise LiveError("not_joined")
        snapshot = await edge.snapshot(
            self.live, peer.session_id, host=peer.role == "host", player_id=peer.player_id, nickname=peer.nickname
        )
        await self._state_to(sid, snapshot)
        return ok(session=snapshot)

    async def _on_clock(self, sid: str, peer: Peer, payload: Empty) -> dict[str, Any]:
        keys = self.live.store.keys(peer.session_id or "none")
        return ok(server_now=await self.live.store.now_ms(keys))

    # -- delivery of the owners' events ---------------------------------------

    def _index(self, session_id: str, player_id: str, sid: str, *, add: bool) -> None:
        """Keep :attr:`players_here` (session -> player -> sids on this instance) current."""
        players = self.players_here.setdefault(session_id, {})
        sids = players.setdefault(player_id, [])
        if add and sid not in sids:
            sids.append(sid)
        elif not add and sid in sids:
            sids.remove(sid)
        if not sids:
            del players[player_id]
        if not players:
            del self.players_here[session_id]

    async def local_players(self) -> dict[str, list[str]]:
        """session id -> players connected to this instance (for their presence entries)."""
        return {session_id: list(players) for session_id, players in self.players_here.items()}

    async def deliver(self, session_id: str, events: list[dict[str, Any]]) -> None:
        """One owner step's events to this instance's clients of the session, in order.

        Every frame is built once (a room's event once for the room, a
        per-player event once for its player) and collected per socket in an
        :class:`~realtime.fanout.Outbox`: a socket's frames of the step go out
        in one write. Recipients are resolved as each event comes, so an
        event after a ``detach`` no longer reaches the detached player.
        """
        rooms = self.server.manager.rooms.get(NAMESPACE, {})
        if room(session_id) not in rooms:
            return  # nobody of this session here
        started = time.perf_counter()
        players = self.players_here.get(session_id, {})
        outbox = Outbox()
        for event in events:
            try:
                await self._collect(session_id, event, rooms, players, outbox)
            except Exception:  # the next event still goes out
                log.exception("/live: delivering %s failed", event.get("event") or event.get("op"))
        await self.fanout.send_outbox(outbox)
        self.rt.metrics.live.broadcast_seconds.observe(time.perf_counter() - started)

    @property
    def fanout(self) -> RedisFanout:
        manager = self.server.manager
        assert isinstance(manager, RedisFanout), "realtime/server.py makes every server's manager a RedisFanout"
        return manager

    def _to_room(self, name: str, frame: Frame, outbox: Outbox) -> int:
        recipients = 0
        for _, eio_sid in self.fanout.get_participants(NAMESPACE, name):
            outbox.add(eio_sid, frame)
            recipients += 1
        return recipients

    def _to_sids(self, sids: list[str], frame: Frame, outbox: Outbox) -> int:
        manager = self.fanout
        recipients = 0
        for sid in sids:
            eio_sid = manager.eio_sid_from_sid(sid, NAMESPACE)
            if eio_sid is not None:
                outbox.add(eio_sid, frame)
                recipients += 1
        return recipients

    def _each(self, event: str, by_player: dict[str, Any], players: dict[str, list[str]], outbox: Outbox) -> int:
        """Each local player its own payload: one encoding per player here, no room scan."""
        sent = 0
        for player_id, sids in players.items():
            data = by_player.get(player_id)
            if data is not None:
                sent += self._to_sids(sids, Frame.of(NAMESPACE, event, data), outbox)
        return sent

    async def _collect(
        self,
        session_id: str,
        event: dict[str, Any],
        rooms: dict[Any, Any],
        players: dict[str, list[str]],
        outbox: Outbox,
    ) -> None:
        target = event.get("to")
        name = event.get("event")
        sent = 0
        if target == "each":
            sent = self._each(event["event"], event["data"], players, outbox)
        elif target in ("all", "hosts", "players"):
            room_name = room(session_id) if target == "all" else room(session_id, target)
            if rooms.get(room_name):
                self._to_room(room_name, Frame.of(NAMESPACE, event["event"], event["data"]), outbox)
                sent = 1  # counted once per room, as an emit to the room
        elif isinstance(target, str) and target.startswith("player:"):
            sids = players.get(target[len("player:") :], [])
            sent = self._to_sids(sids, Frame.of(NAMESPACE, event["event"], event["data"]), outbox)
        elif event.get("op") == "state":
            name = "session_state"
            sent = self._state(session_id, event, rooms, players, outbox)
        elif event.get("op") == "detach":
            await self._detach(session_id, str(event["player_id"]), players, banned=bool(event.get("banned")))
        if sent and name:
            self.rt.metrics.events_out.labels(NAMESPACE, name).inc(sent)

    def _state(
        self,
        session_id: str,
        event: dict[str, Any],
        rooms: dict[Any, Any],
        players: dict[str, list[str]],
        outbox: Outbox,
    ) -> int:
        hosts = room(session_id, "hosts")
        sent = 0
        if rooms.get(hosts):
            sent += self._to_room(hosts, Frame.of(NAMESPACE, "session_state", event["host"]), outbox)
        me = event["me"]
        for player_id, sids in players.items():
            if player_id in me:
                snapshot = player_snapshot(event["common"], me[player_id])
                sent += self._to_sids(sids, Frame.of(NAMESPACE, "session_state", snapshot), outbox)
        return sent

    async def _detach(self, session_id: str, player_id: str, players: dict[str, list[str]], *, banned: bool) -> None:
        """A kicked player's connections here leave the session (they stay connected to /live).

        A banned one's connection may not join again; a kicked one's may, as a new player.
        """
        for sid in list(players.get(player_id, [])):
            self._index(session_id, player_id, sid, add=False)
            peer = await self.peer(sid)
            for name in (room(session_id), room(session_id, "players")):
                await self.leave_room(sid, name)
            if peer is not None and peer.session_id == session_id:
                peer.session_id = peer.role = peer.player_id = None
                peer.player_pin, peer.player_token = None, ""
                peer.banned = peer.banned or banned
                await self._unwatch(peer)
