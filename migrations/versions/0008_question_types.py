"""question types: slider, ordering, poll, word cloud; per-question settings, media and time limit

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_TYPES = ("single_choice", "multiple_choice", "true_false", "short_answer")
NEW_TYPES = (*OLD_TYPES, "slider", "ordering", "poll", "word_cloud")


def _types_check(types: tuple[str, ...]) -> None:
    op.drop_constraint("question_type_valid", "quiz_questions", type_="check")
    listed = ", ".join(f"'{t}'" for t in types)
    op.create_check_constraint("question_type_valid", "quiz_questions", f"question_type IN ({listed})")


def upgrade() -> None:
    op.add_column("quiz_questions", sa.Column("settings", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("quiz_questions", sa.Column("image_file_id", sa.UUID(), nullable=True))
    op.add_column("quiz_questions", sa.Column("video", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("quiz_questions", sa.Column("time_limit_seconds", sa.Integer(), nullable=True))
    op.create_foreign_key(
        "fk_quiz_questions_image_file_id_uploaded_files", "quiz_questions", "uploaded_files",
        ["image_file_id"], ["id"], ondelete="SET NULL",
    )  # fmt: skip
    op.create_check_constraint("time_limit_seconds_range", "quiz_questions", "time_limit_seconds BETWEEN 5 AND 600")
    op.alter_column("quiz_questions", "correct_answer", existing_type=postgresql.JSONB(), nullable=True)
    _types_check(NEW_TYPES)


def downgrade() -> None:
    # The new types cannot be stored without their columns: their questions go.
    op.execute(sa.text("DELETE FROM quiz_questions WHERE question_type <> ALL(:old)").bindparams(old=list(OLD_TYPES)))
    op.alter_column("quiz_questions", "correct_answer", existing_type=postgresql.JSONB(), nullable=False)
    _types_check(OLD_TYPES)
    op.drop_constraint("time_limit_seconds_range", "quiz_questions", type_="check")
    op.drop_constraint("fk_quiz_questions_image_file_id_uploaded_files", "quiz_questions", type_="foreignkey")
    op.drop_column("quiz_questions", "time_limit_seconds")
    op.drop_column("quiz_questions", "video")
    op.drop_column("quiz_questions", "image_file_id")
    op.drop_column("quiz_questions", "settings")
