"""Bodies and responses of the live-session REST routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lms.api.pagination import PageQuery

LiveStatus = Literal["lobby", "running", "ended"]


class LiveSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow_guests: bool = False
    # Omitted: the configured default (live.default_question_time_limit_seconds).
    question_time_limit_seconds: int | None = Field(default=None, ge=5, le=600)


class LiveSessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    pin: str
    status: LiveStatus
    quiz_id: uuid.UUID
    allow_guests: bool
    question_time_limit_seconds: int
    total_questions: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    host_url: str = Field(description="The host page of this session.")
    join_url: str = Field(description="The player page; players enter the pin there.")


class LiveSessionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    pin: str
    status: LiveStatus
    allow_guests: bool
    question_time_limit_seconds: int
    total_questions: int
    player_count: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class LiveSessionListQuery(PageQuery):
    status: LiveStatus | None = None


class LiveSessionLookup(BaseModel):
    """What the join screen shows for a pin."""

    quiz_title: str
    status: LiveStatus
    player_count: int = Field(description="Players connected right now, on every instance.")
    allow_guests: bool


class LeaderboardEntry(BaseModel):
    player_id: uuid.UUID
    nickname: str
    user_id: uuid.UUID | None
    score: int
    rank: int | None
    correct_count: int
    kicked: bool


class QuestionResult(BaseModel):
    index: int
    question_id: uuid.UUID | None
    text: str
    question_type: str
    correct_answer: Any
    distribution: dict[str, int] = Field(description="Players per option id (per answer text for short answers).")
    answered: int
    correct: int


class LiveResults(BaseModel):
    id: uuid.UUID
    quiz_id: uuid.UUID
    quiz_title: str
    pin: str
    status: LiveStatus
    total_questions: int
    questions_asked: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    leaderboard: list[LeaderboardEntry]
    questions: list[QuestionResult]
