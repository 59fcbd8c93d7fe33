"""The ``session`` snapshot of the live protocol (realtime/README.md), for a player or for a host.

Built in two places from the same owner snapshot (``snap``): by any instance
from Redis (``sync``, join, host) and by the owner for everyone at once
after a takeover. Nothing here reveals a correct answer while a question is
open: ``question`` is the public payload and ``reveal`` exists only after
the question ended.
"""

from __future__ import annotations

from typing import Any

from lms.live import scoring

# Owner snapshot fields copied as they are into the client snapshot.
COMMON = ("id", "pin", "quiz_title", "state", "question_index", "total_questions", "locked", "time_limit_ms")


def common_snapshot(snap: dict[str, Any], *, now: int, player_count: int) -> dict[str, Any]:
    session: dict[str, Any] = {k: snap.get(k) for k in COMMON}
    session["player_count"] = player_count
    session["server_now"] = now
    session["scoring"] = scoring.ScoringRules.of(snap.get("scoring")).public()
    session["teams"] = scoring.teams_of(snap.get("team_count"))
    state = snap.get("state")
    if state in ("question", "reveal", "leaderboard") and snap.get("question"):
        session["question"] = snap["question"]
    if state == "question":
        session["deadline"] = snap.get("deadline")
        session["started_at"] = snap.get("started_at")
    if state == "reveal" and snap.get("reveal"):
        session["reveal"] = snap["reveal"]
    if state == "leaderboard" and snap.get("leaderboard"):
        session["leaderboard"] = snap["leaderboard"]
    if state == "ended" and snap.get("ended"):
        session["ended"] = snap["ended"]
    return session


def me_entry(player_id: str, nickname: str, scores: dict[str, Any] | None, *, answered_current: bool) -> dict[str, Any]:
    scores = scores or {}
    return {
        "player_id": player_id,
        "nickname": nickname,
        "score": int(scores.get("score", 0)),
        "rank": scores.get("rank"),
        "streak": int(scores.get("streak", 0)),
        "answered_current": answered_current,
        "team": scores.get("team"),
    }


def player_snapshot(common: dict[str, Any], me: dict[str, Any]) -> dict[str, Any]:
    return common | {"me": me}


def host_snapshot(
    common: dict[str, Any],
    *,
    players: dict[str, dict[str, Any]],
    scores: dict[str, dict[str, Any]],
    connected: set[str],
    kicked: set[str],
    answer_count: int,
) -> dict[str, Any]:
    listed = [
        {
            "player_id": pid,
            "nickname": info.get("nickname", ""),
            "score": int(scores.get(pid, {}).get("score", 0)),
            "connected": pid in connected,
            "team": scores.get(pid, {}).get("team"),
        }
        for pid, info in players.items()
        if pid not in kicked
    ]
    listed.sort(key=lambda p: (-p["score"], p["nickname"].lower()))
    return common | {"players": listed, "answer_count": answer_count}
