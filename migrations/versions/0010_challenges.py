"""challenges: a live quiz assigned as a self-paced challenge with a deadline (issue 18)

live_challenges (quiz, deadline, per-question time limit, who set it),
challenge_plays (one per student: the question it is on and when the server
started it, the running score) and challenge_answers (one per question,
scored by the live scoring function on server time).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "live_challenges",
        sa.Column("id", UUID, nullable=False),
        sa.Column("quiz_id", UUID, nullable=False),
        sa.Column("created_by", UUID, nullable=False),
        sa.Column("question_time_limit_seconds", sa.Integer(), nullable=False),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "question_time_limit_seconds BETWEEN 5 AND 600", name="ck_live_challenges_challenge_time_limit_range"
        ),
        sa.ForeignKeyConstraint(
            ["quiz_id"], ["quizzes.id"], name="fk_live_challenges_quiz_id_quizzes", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name="fk_live_challenges_created_by_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_live_challenges"),
    )
    op.create_index("ix_live_challenges_quiz_id_created_at", "live_challenges", ["quiz_id", "created_at"])
    op.create_table(
        "challenge_plays",
        sa.Column("id", UUID, nullable=False),
        sa.Column("challenge_id", UUID, nullable=False),
        sa.Column("user_id", UUID, nullable=False),
        sa.Column("current_index", sa.Integer(), server_default="0", nullable=False),
        sa.Column("question_started_at", TS, nullable=False),
        sa.Column("score", sa.Integer(), server_default="0", nullable=False),
        sa.Column("correct_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["challenge_id"],
            ["live_challenges.id"],
            name="fk_challenge_plays_challenge_id_live_challenges",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_challenge_plays_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_challenge_plays"),
        sa.UniqueConstraint("challenge_id", "user_id", name="uq_challenge_plays_challenge_id_user_id"),
    )
    op.create_table(
        "challenge_answers",
        sa.Column("play_id", UUID, nullable=False),
        sa.Column("question_index", sa.Integer(), nullable=False),
        sa.Column("question_id", UUID, nullable=True),
        sa.Column("answer", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.Column("answered_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["play_id"], ["challenge_plays.id"], name="fk_challenge_answers_play_id_challenge_plays", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["question_id"],
            ["quiz_questions.id"],
            name="fk_challenge_answers_question_id_quiz_questions",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("play_id", "question_index", name="pk_challenge_answers"),
    )


def downgrade() -> None:
    op.drop_table("challenge_answers")
    op.drop_table("challenge_plays")
    op.drop_index("ix_live_challenges_quiz_id_created_at", table_name="live_challenges")
    op.drop_table("live_challenges")
