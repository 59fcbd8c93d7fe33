"""learning indexes: the published catalogue, published lessons per course

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 13:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_courses_published_catalogue",
        "courses",
        ["published_at", "id"],
        unique=False,
        postgresql_where=sa.text("is_published"),
    )
    op.create_index(
        "ix_lessons_course_id_published",
        "lessons",
        ["course_id"],
        unique=False,
        postgresql_where=sa.text("is_published"),
    )


def downgrade() -> None:
    op.drop_index("ix_lessons_course_id_published", table_name="lessons", postgresql_where=sa.text("is_published"))
    op.drop_index("ix_courses_published_catalogue", table_name="courses", postgresql_where=sa.text("is_published"))
