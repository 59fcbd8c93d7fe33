"""analytics: the apply functions look stats rows up by index, whatever the tables' size (issue 16)

The generic plans of 0012 take each ``unnest()`` of an array parameter for
10 rows. Against a stats table of a few thousand rows a sequential scan
then looks cheaper than 10 index lookups, so on a small or middling
catalogue every progress report read the whole of ``lesson_stats`` and
``course_stats``, and a graded attempt the whole of ``quiz_stats``: the
work grew with the catalogue, not with the change. An array holds one row
for a report and at most a course's enrollments for a bulk statement, so
index lookups suit every call; ``enable_seqscan = off`` for these functions
alone makes the planner take them (it still scans where no index applies).

Measured serially on a catalogue of 200 courses and 4,000 lessons: 740 µs
of PostgreSQL CPU per progress report before, 540 µs after (the bench data
set's 20,000 lessons already planned index scans: 527 µs).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 03:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every function that updates or locks stats rows from the arrays the change triggers pass.
FUNCTIONS = (
    "analytics_apply_enrollments(enrollments[], enrollments[])",
    "analytics_apply_lesson_progress(lesson_progress[], lesson_progress[])",
    "analytics_apply_quiz_attempts(quiz_attempts[], quiz_attempts[])",
    "analytics_enrollments_study_time(enrollments[], enrollments[])",
    "analytics_lock_courses(uuid[])",
)


def upgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SET enable_seqscan = off")


def downgrade() -> None:
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} RESET enable_seqscan")
