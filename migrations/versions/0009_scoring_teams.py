"""scoring and teams: a live session's scoring mode, streak bonus and team count; double-points questions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "quiz_questions", sa.Column("double_points", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.add_column("live_sessions", sa.Column("scoring", sa.String(20), server_default="speed", nullable=False))
    op.add_column("live_sessions", sa.Column("streak_bonus_points", sa.Integer(), server_default="0", nullable=False))
    op.add_column("live_sessions", sa.Column("team_count", sa.Integer(), nullable=True))
    op.create_check_constraint(
        "ck_live_sessions_scoring_valid", "live_sessions", "scoring IN ('speed', 'kahoot_like', 'accuracy')"
    )
    op.create_check_constraint(
        "ck_live_sessions_streak_bonus_range", "live_sessions", "streak_bonus_points BETWEEN 0 AND 1000"
    )
    op.create_check_constraint(
        "ck_live_sessions_team_count_range", "live_sessions", "team_count IS NULL OR team_count BETWEEN 2 AND 10"
    )
    op.add_column("live_players", sa.Column("team", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("live_players", "team")
    op.drop_constraint("ck_live_sessions_team_count_range", "live_sessions", type_="check")
    op.drop_constraint("ck_live_sessions_streak_bonus_range", "live_sessions", type_="check")
    op.drop_constraint("ck_live_sessions_scoring_valid", "live_sessions", type_="check")
    op.drop_column("live_sessions", "team_count")
    op.drop_column("live_sessions", "streak_bonus_points")
    op.drop_column("live_sessions", "scoring")
    op.drop_column("quiz_questions", "double_points")
