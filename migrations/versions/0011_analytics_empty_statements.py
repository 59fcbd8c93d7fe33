"""analytics triggers skip statements that changed no row (issue 16)

``INSERT ... ON CONFLICT DO UPDATE`` fires both the INSERT and the UPDATE
statement-level triggers of its table, one of them with empty transition
tables, and an UPDATE that matches nothing fires its trigger too. Each
call of an ``analytics_apply_*`` function costs about half a millisecond
even with nothing to apply (locking, three statements over empty arrays):
a progress report's upsert paid for two. The trigger functions now return
at once when their transition tables are empty.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables whose changes the stats rows follow (0007_analytics: analytics_<table>_changed
# calls analytics_apply_<table>(added, removed)).
TABLES = ("enrollments", "lesson_progress", "quiz_attempts")


def _changed_function(table: str, *, skip_empty: bool) -> str:
    apply = f"analytics_apply_{table}"
    # The table names are the constants above, never input.
    new = f"ARRAY(SELECT n::{table} FROM new_rows n)"  # noqa: S608
    old = f"ARRAY(SELECT o::{table} FROM old_rows o)"  # noqa: S608
    guard_new = "IF EXISTS (SELECT FROM new_rows) THEN" if skip_empty else "IF true THEN"
    guard_old = "IF EXISTS (SELECT FROM old_rows) THEN" if skip_empty else "IF true THEN"
    return f"""
CREATE OR REPLACE FUNCTION analytics_{table}_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {guard_new} PERFORM {apply}({new}, '{{}}'); END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        {guard_new} PERFORM {apply}({new}, {old}); END IF;
    ELSE
        {guard_old} PERFORM {apply}('{{}}', {old}); END IF;
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    for table in TABLES:
        op.execute(_changed_function(table, skip_empty=True))


def downgrade() -> None:
    for table in TABLES:
        op.execute(_changed_function(table, skip_empty=False))
