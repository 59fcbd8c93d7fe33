"""analytics apply functions keep one generic plan per statement (issue 16)

PL/pgSQL caches a plan per statement and, under ``plan_cache_mode = auto``,
plans again for every call while the custom plans look cheaper than the
generic one. They always did for these functions: a parameter is an array
of one row (one progress report), so every report re-planned each
statement of ``analytics_apply_lesson_progress`` (measured serially on the
bench data set: 780 µs a call, 190 µs with the generic plan; the whole
report 3.0 ms against 1.8 ms). The generic plans (index lookups by id)
suit the bulk statements too: a course-wide refresh is nested loops over
its enrollments either way.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 16:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# analytics_apply_<table>(added <table>[], removed <table>[]) from 0007_analytics.
TABLES = ("enrollments", "lesson_progress", "quiz_attempts")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER FUNCTION analytics_apply_{table}({table}[], {table}[]) SET plan_cache_mode = force_generic_plan"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER FUNCTION analytics_apply_{table}({table}[], {table}[]) RESET plan_cache_mode")
