"""files and certificates: lessons may reference an uploaded file

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lessons", sa.Column("file_id", postgresql.UUID(as_uuid=True), nullable=True))
    op.create_foreign_key(
        "fk_lessons_file_id_uploaded_files", "lessons", "uploaded_files", ["file_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(
        "ix_lessons_file_id", "lessons", ["file_id"], unique=False, postgresql_where=sa.text("file_id IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_lessons_file_id", table_name="lessons", postgresql_where=sa.text("file_id IS NOT NULL"))
    op.drop_constraint("fk_lessons_file_id_uploaded_files", "lessons", type_="foreignkey")
    op.drop_column("lessons", "file_id")
