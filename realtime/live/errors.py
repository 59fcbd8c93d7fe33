"""The live side's refusals: :class:`~realtime.protocol.EventError` with the protocol's codes and messages."""

from __future__ import annotations

from realtime.protocol import EventError


class LiveError(EventError):
    """A refusal with a protocol error code (``session_locked``, ``too_late`` ...), answered ``ok: false``."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code, message or MESSAGES.get(code, code.replace("_", " ")))


MESSAGES = {
    "not_found": "No open session has this pin.",
    "session_locked": "The host has locked this session.",
    "session_ended": "This session has ended.",
    "nickname_taken": "Someone in this session already uses this nickname.",
    "guests_not_allowed": "This session is for signed-in students only.",
    "kicked": "The host removed you from this session.",
    "session_full": "This session is full.",
    "not_in_question": "No question is open.",
    "wrong_question": "That question is not the current one.",
    "too_late": "Time is up for this question.",
    "already_answered": "You have already answered this question.",
    "invalid_answer": "That is not an answer to this question.",
    "answer_not_allowed": "Choose other words.",
    "not_joined": "Join the session first.",
    "already_joined": "This connection already plays in a session; connect again to join as someone else.",
}
