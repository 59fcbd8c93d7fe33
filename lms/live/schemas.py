"""Bodies and responses of the live-session REST routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from lms.api.pagination import PageQuery
from lms.live.scoring import DEFAULT_STREAK_BONUS_POINTS, MAX_STREAK_BONUS_POINTS, MAX_TEAMS, MIN_TEAMS
from lms.tables import ScoringMode

LiveStatus = Literal["lobby", "running", "ended"]

SCORING_DESCRIPTION = (
    "How correct answers earn points. `speed` (default): `round(points × 1000 × (1 − t/T/2))`, between half and "
    "all of the question's points × 1000 by how fast (t: time to answer, T: the time limit). `kahoot_like`: "
    "Kahoot's rule on Kahoot's scale, `round((1 − (t/T)/2) × 1000)`: every question is a standard 1000-point "
    "question whatever its points weight. `accuracy`: `points × 1000`, no time factor. A double-points question "
    "awards twice as much in every mode. Wrong or missing answers: 0."
)
STREAK_DESCRIPTION = (
    "A correct answer that makes a streak of n correct answers in a row adds "
    "`streak_bonus_points × min(n − 1, 5)` (not doubled); a wrong or missing answer resets the streak."
)
TEAMS_DESCRIPTION = (
    f"Team mode: the number of teams ({MIN_TEAMS} to {MAX_TEAMS}); omitted or null: no teams. "
    "Players pick a team when joining (`join_session` `team`) or in the lobby (`choose_team`), or are put in "
    "the smallest team. A team's score is the average of its members' scores."
)


class LiveSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow_guests: bool = False
    # Omitted: the configured default (live.default_question_time_limit_seconds).
    question_time_limit_seconds: int | None = Field(default=None, ge=5, le=600)
    scoring: ScoringMode = Field(default="speed", description=SCORING_DESCRIPTION)
    streak_bonus: StrictBool = Field(default=False, description="Whether correct-answer streaks earn a bonus.")
    streak_bonus_points: StrictInt = Field(
        default=DEFAULT_STREAK_BONUS_POINTS,
        ge=1,
        le=MAX_STREAK_BONUS_POINTS,
        description="The bonus per streak step, when `streak_bonus` is on (ignored when off). " + STREAK_DESCRIPTION,
    )
    team_count: StrictInt | None = Field(default=None, ge=MIN_TEAMS, le=MAX_TEAMS, description=TEAMS_DESCRIPTION)

    def stored_streak_bonus(self) -> int:
        """The column's value: the bonus per step, 0 when off."""
        return self.streak_bonus_points if self.streak_bonus else 0


class ScoringOut(BaseModel):
    mode: ScoringMode = Field(description=SCORING_DESCRIPTION)
    streak_bonus: bool
    streak_bonus_points: int = Field(description="0 when `streak_bonus` is off. " + STREAK_DESCRIPTION)


class TeamOut(BaseModel):
    team: int = Field(description="1 to team_count.")
    name: str


class TeamStanding(TeamOut):
    score: int = Field(description="The average of the members' scores, rounded (halves up).")
    rank: int = Field(description="Competition ranking (1, 2, 2, 4) by score.")
    members: int = Field(description="Players in the team (kicked ones not counted).")


class LiveSessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    pin: str
    status: LiveStatus
    scoring: ScoringOut
    team_count: int | None = Field(description=TEAMS_DESCRIPTION)
    teams: list[TeamOut] = Field(description="The session's teams (empty without team mode).")
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
    scoring: ScoringOut
    team_count: int | None = Field(description=TEAMS_DESCRIPTION)
    teams: list[TeamOut] = Field(description="The session's teams (empty without team mode).")
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
    team: int | None = Field(default=None, description="The player's team in team mode, else null.")


class QuestionResult(BaseModel):
    index: int
    question_id: uuid.UUID | None
    text: str
    question_type: str
    correct_answer: Any
    distribution: dict[str, int] = Field(description="Players per option id (per answer text for short answers).")
    answered: int
    correct: int
    double_points: bool = Field(default=False, description="Whether this question awarded double points.")


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
    scoring: ScoringOut = Field(description="How points were awarded in this session.")
    team_count: int | None = Field(description=TEAMS_DESCRIPTION)
    leaderboard: list[LeaderboardEntry]
    teams: list[TeamStanding] = Field(description="The team leaderboard, best first (empty without team mode).")
    questions: list[QuestionResult]
