"""analytics: one generic plan per statement, and a short way for study time (issue 16)

PL/pgSQL caches a plan per statement and, under ``plan_cache_mode = auto``,
plans again for every call while the custom plans look cheaper than the
generic one. They always did for these functions: a parameter is an array
of one row (one progress report), so every report re-planned each
statement of ``analytics_apply_lesson_progress`` (measured serially on the
bench data set: 780 µs a call, 190 µs with the generic plan; the whole
report 3.0 ms against 1.8 ms). The generic plans (index lookups by id)
suit the bulk statements too: a course-wide refresh is nested loops over
its enrollments either way.

An enrollment UPDATE that moved only the study time of its rows (what a
progress report does to its enrollment) changes one figure, the course's
``time_spent_sum``: ``analytics_enrollments_study_time`` applies just that
and tells the trigger the four-statement ``analytics_apply_enrollments``
is not needed.

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


STUDY_TIME = """
CREATE FUNCTION analytics_enrollments_study_time(added enrollments[], removed enrollments[]) RETURNS boolean
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    IF EXISTS (
        SELECT FROM unnest(added) AS a FULL JOIN unnest(removed) AS r ON r.id = a.id
        WHERE a.id IS NULL OR r.id IS NULL OR a.course_id <> r.course_id OR a.status <> r.status
           OR a.progress_percentage <> r.progress_percentage
    ) THEN
        RETURN false;  -- counts, sums or the histogram move: the whole apply
    END IF;
    PERFORM analytics_lock_courses(ARRAY(SELECT DISTINCT course_id FROM unnest(added)));
    UPDATE course_stats s SET time_spent_sum = s.time_spent_sum + d.seconds
    FROM (
        SELECT a.course_id, sum(a.total_time_spent_seconds - r.total_time_spent_seconds) AS seconds
        FROM unnest(added) AS a JOIN unnest(removed) AS r ON r.id = a.id
        WHERE analytics_studying(a.status)
        GROUP BY a.course_id
    ) AS d
    WHERE s.course_id = d.course_id AND d.seconds <> 0;
    RETURN true;
END $$;
"""


def _enrollments_changed(*, study_time: bool) -> str:
    # 0011's trigger function; with ``study_time``, an UPDATE tries the short way first.
    update = (
        "IF NOT analytics_enrollments_study_time(added, removed) THEN "
        "PERFORM analytics_apply_enrollments(added, removed); END IF;"
        if study_time
        else "PERFORM analytics_apply_enrollments(added, removed);"
    )
    # The two constant texts above, never input.
    return f"""
CREATE OR REPLACE FUNCTION analytics_enrollments_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    added enrollments[];
    removed enrollments[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF EXISTS (SELECT FROM new_rows) THEN
            PERFORM analytics_apply_enrollments(ARRAY(SELECT n::enrollments FROM new_rows n), '{{}}');
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        IF EXISTS (SELECT FROM new_rows) THEN
            added := ARRAY(SELECT n::enrollments FROM new_rows n);
            removed := ARRAY(SELECT o::enrollments FROM old_rows o);
            {update}
        END IF;
    ELSE
        IF EXISTS (SELECT FROM old_rows) THEN
            PERFORM analytics_apply_enrollments('{{}}', ARRAY(SELECT o::enrollments FROM old_rows o));
        END IF;
    END IF;
    RETURN NULL;
END $$;
"""  # noqa: S608


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER FUNCTION analytics_apply_{table}({table}[], {table}[]) SET plan_cache_mode = force_generic_plan"
        )
    op.execute(STUDY_TIME)
    op.execute(_enrollments_changed(study_time=True))


def downgrade() -> None:
    op.execute(_enrollments_changed(study_time=False))
    op.execute("DROP FUNCTION analytics_enrollments_study_time(enrollments[], enrollments[])")
    for table in TABLES:
        op.execute(f"ALTER FUNCTION analytics_apply_{table}({table}[], {table}[]) RESET plan_cache_mode")
