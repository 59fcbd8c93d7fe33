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


# The answer buttons of the "buttons" player view, by option position (Kahoot's four, then two more).
BUTTONS = (
    ("A", "#e21b3c", "triangle"), ("B", "#1368ce", "diamond"), ("C", "#d89e00", "circle"),
    ("D", "#26890c", "square"), ("E", "#864cbf", "star"), ("F", "#0aa3a3", "hexagon"),
)  # fmt: skip


def buttons_question(question: dict[str, Any]) -> dict[str, Any]:
    """A question as the "buttons" player view sends it: no question or option text, a label, colour and shape each.

    The host's screen shows the question and the answers; the player's device
    only the buttons to press (realtime/README.md, "Player view").
    """
    out = {k: v for k, v in question.items() if k != "text"}
    # An ordering question's items are what the player arranges: they keep their texts.
    keep_text = question.get("question_type") == "ordering"
    buttons = []
    for position, option in enumerate(question.get("options") or []):
        label, colour, shape = BUTTONS[position % len(BUTTONS)]
        entry = {k: v for k, v in option.items() if k != "text" or keep_text}
        buttons.append(entry | {"label": label, "colour": colour, "shape": shape})
    out["options"] = buttons
    out["player_view"] = "buttons"
    return out


def common_snapshot(snap: dict[str, Any], *, now: int, player_count: int) -> dict[str, Any]:
    session: dict[str, Any] = {k: snap.get(k) for k in COMMON}
    session["player_view"] = snap.get("player_view") or "full"
    session["free_nicknames"] = snap.get("free_nicknames", True)
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
    if common.get("player_view") == "buttons" and common.get("question"):
        return common | {"question": buttons_question(common["question"]), "me": me}
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
