"""What the instance a client is connected to does itself: join, answer, host checks, snapshots.

Transport-free (the ``/live`` namespace parses payloads and calls these), so
the same code serves Socket.IO and the tests of the actor.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from lms.auth.guards import Principal
from lms.auth.permissions import Role
from lms.config import LiveSettings
from lms.courses.access import manages
from lms.live import queries, questions
from lms.live.moderation import denied
from lms.live.nicknames import random_nickname
from lms.quizzes.grading import MAX_SHORT_ANSWER_LENGTH
from lms.quizzes.question_types import POLL, WORD_CLOUD_MAX_LENGTH
from lms.text import display_text
from realtime.live.errors import LiveError
from realtime.live.runtime import LiveRuntime
from realtime.live.snapshots import common_snapshot, host_snapshot, me_entry, player_snapshot

log = logging.getLogger(__name__)

PIN = re.compile(r"^[0-9]{6}$")
# Generated names drawn for one join before giving up (nickname_taken): a session of
# max_players players leaves plenty of numbered names.
MAX_NAME_DRAWS = 24


@dataclass(frozen=True)
class JoinResult:
    session_id: str
    player_id: str
    player_token: str
    nickname: str
    session: dict[str, Any]


def clean_nickname(raw: str, config: LiveSettings) -> str:
    """Trimmed, 1 to 24 characters, and clear of the deny-list however disguised (lms.live.moderation)."""
    try:
        # The rule every shown name follows (lms.text): invisible formatting removed, controls refused.
        nickname = display_text(raw)
    except ValueError as err:
        raise LiveError("invalid_payload", f"A nickname {err}.") from err
    if len(nickname) > config.nickname_max_length:
        raise LiveError(
            "invalid_payload", f"A nickname has 1 to {config.nickname_max_length} characters (spaces trimmed)."
        )
    if denied(nickname, config):
        raise LiveError("nickname_not_allowed", "Choose another nickname.")
    return nickname


async def host_session(rt: LiveRuntime, principal: Principal | None, session_id: str) -> dict[str, Any]:
    """Check the caller may host (owns the quiz's course, or admin); returns the host snapshot."""
    try:
        sid = uuid.UUID(session_id)
    except ValueError:
        raise LiveError("not_found", "No such session.") from None
    async with rt.db.connection() as conn:
        session = await queries.get_session(conn, sid)
    if session is None:
        raise LiveError("not_found", "No such session.")
    if not manages(principal, session):  # the quiz's course is the host's (lms.courses.access)
        # Someone who may not host it does not learn whether it exists either.
        raise LiveError("forbidden" if principal is not None else "unauthorized", "Only the quiz's owner may host.")
    if session["status"] != "ended":
        await rt.ensure(str(sid))
        await rt.store.post(rt.store.keys(sid), {"t": "host"})
    return await snapshot(rt, str(sid), host=True)


PIN_CACHE_SECONDS = 2.0


async def session_by_pin(rt: LiveRuntime, pin: str) -> Any:
    """The open session a pin names, read from PostgreSQL at most every couple of seconds per instance.

    A classroom joins within seconds: one read serves thousands of joins
    instead of a database round trip each. What may change meanwhile (the
    session ending, its lock, capacity) is checked by the join script in
    Redis, not taken from this row; unknown pins are not remembered.
    """
    now = time.monotonic()
    cached = rt.pin_cache.get(pin)
    if cached is not None and now - cached[0] < PIN_CACHE_SECONDS:
        return cached[1]
    async with rt.db.connection() as conn:
        session = await queries.get_latest_session_by_pin(conn, pin)
    if session is not None and session["status"] != "ended":
        if len(rt.pin_cache) > 10_000:
            rt.pin_cache.clear()
        rt.pin_cache[pin] = (now, session)
    return session


async def join_session(
    rt: LiveRuntime,
    principal: Principal | None,
    *,
    pin: str,
    nickname: str | None,
    player_token: str | None,
    team: int | None = None,
) -> JoinResult:
    if not PIN.match(pin):
        raise LiveError("not_found")
    session = await session_by_pin(rt, pin)
    if session is None:
        raise LiveError("not_found")
    if session["status"] == "ended":
        raise LiveError("session_ended")
    session_id = str(session["id"])
    student = principal is not None and principal.role == Role.STUDENT
    user_id = str(principal.id) if student and principal is not None else None
    if user_id is None and not session["allow_guests"]:
        raise LiveError("guests_not_allowed")
    if team is not None and not session["team_count"]:
        raise LiveError("no_teams", "This session is not played in teams.")
    if team is not None and not 1 <= team <= session["team_count"]:
        raise LiveError("invalid_payload", f"A team is a number from 1 to {session['team_count']}.")
    if not nickname and user_id is not None and principal is not None:
        nickname = principal.full_name[: rt.config.live.nickname_max_length]
    # A guest who sends neither a nickname nor a token is given a generated one, as is
    # every new player when the host assigns names (the join script says so: names_assigned).
    generated = nickname is None and not player_token
    name = clean_nickname(nickname, rt.config.live) if nickname is not None else ""
    await rt.ensure(session_id)
    keys = rt.store.keys(session_id)
    new_token = secrets.token_urlsafe(24)
    now_ms = int(time.time() * 1000)

    async def attempt(new_name: str, *, resume_only: bool = False, generated: bool = False) -> Any:
        return await rt.store.join(
            keys,
            presented_token=player_token,
            new_token=new_token,
            user_id=user_id,
            new_player_id=str(uuid.uuid4()),
            nickname=new_name,
            player={"nickname": new_name, "user_id": user_id, "joined_at": now_ms, "team": team},
            presence_expiry_ms=now_ms + int(rt.config.live.presence_ttl_seconds * 1000),
            resume_only=resume_only,
            generated=generated,
        )

    draws = 0
    while True:
        if generated:
            name = random_nickname(rt.config.live, draws)
            draws += 1
        try:
            # Only a returning player may leave the nickname out.
            joined = await attempt(name, resume_only=not name, generated=generated)
            break
        except LiveError as err:
            if err.code == "names_assigned" and not generated:
                generated = True  # the chosen nickname is ignored, not refused
            elif err.code == "nickname_taken" and generated and draws < MAX_NAME_DRAWS:
                pass
            elif err.code == "nickname_required":
                raise LiveError("invalid_payload", "A nickname is required.") from None
            else:
                raise
    token = player_token if joined.resumed and joined.how == "token" and player_token else new_token
    final_name = (joined.player or {}).get("nickname", name) if joined.resumed else name
    view = await snapshot(rt, session_id, player_id=joined.player_id, nickname=final_name)
    return JoinResult(session_id, joined.player_id, token, final_name, view)


async def snapshot(
    rt: LiveRuntime, session_id: str, *, host: bool = False, player_id: str | None = None, nickname: str = ""
) -> dict[str, Any]:
    keys = rt.store.keys(session_id)
    view = await rt.store.view(keys, player_id=player_id, host=host)
    if view.snap is None:
        raise LiveError("session_ended")
    common = common_snapshot(view.snap, now=view.now, player_count=view.player_count)
    if host:
        snapshot = host_snapshot(
            common,
            players=view.players or {},
            scores=view.scores or {},
            connected=view.connected or set(),
            kicked=view.kicked or set(),
            answer_count=view.answer_count if view.snap.get("state") == "question" else 0,
        )
        question = common.get("question")
        if common["state"] == "question" and question and question.get("question_type") == POLL:
            # A host who (re)connects mid-poll sees the bars at once, not at the next answer_count.
            tallies = await rt.store.tallies(keys, int(common["question_index"]))
            snapshot["distribution"] = questions.poll_so_far(question.get("options") or [], tallies)
        return snapshot
    if player_id is None:
        return common
    return player_snapshot(common, me_entry(player_id, nickname, view.mine, answered_current=view.answered_current))


def text_check(answer: Any, config: LiveSettings) -> str:
    """A text that could be a word-cloud answer, through the nickname check (hosts see these words):
    ``0`` fine, ``1`` on the deny-list, ``2`` not showable. The answer script applies it to word clouds only."""
    if not isinstance(answer, str) or len(answer) > WORD_CLOUD_MAX_LENGTH:
        return "0"
    return _text_verdict(answer, config)


@functools.lru_cache(maxsize=4096)
def _text_verdict(answer: str, config: LiveSettings) -> str:
    """:func:`text_check` of a short text, remembered: a classroom sends the same few answers (a choice's
    option id, the same words) thousands of times, and the deny-list check was a top item of the answer path."""
    try:
        clean_nickname(answer, _word_cloud_rules(config))  # the one deny-list check
    except LiveError as err:
        return "1" if err.code == "nickname_not_allowed" else "2"
    return "0"


@functools.lru_cache(maxsize=8)
def _word_cloud_rules(config: LiveSettings) -> LiveSettings:
    """The nickname rules with room for a word-cloud answer (longer than a nickname may be)."""
    return config.model_copy(update={"nickname_max_length": WORD_CLOUD_MAX_LENGTH})


async def submit_answer(rt: LiveRuntime, session_id: str, player_id: str, question_index: int, answer: Any) -> int:
    """Accepted (epoch ms, Redis time) or :class:`LiveError`; only returns after Redis recorded it."""
    if isinstance(answer, str) and len(answer) > MAX_SHORT_ANSWER_LENGTH:
        raise LiveError("invalid_answer", f"An answer has at most {MAX_SHORT_ANSWER_LENGTH} characters.")
    check = text_check(answer, rt.config.live)
    return await rt.store.submit_answer(rt.store.keys(session_id), player_id, question_index, answer, check)


async def leave(rt: LiveRuntime, session_id: str, player_id: str) -> None:
    await rt.store.leave(rt.store.keys(session_id), player_id)
