"""analytics: aggregates kept current by triggers in the writing transaction

Course, lesson and quiz figures are read from small stats rows instead of
being summed over every enrollment, lesson progress row and attempt on each
request. Statement-level triggers (transition tables: a bulk statement such
as a course-wide progress refresh updates each stats row once) apply the
difference between the rows before and after every write, whichever code
wrote them. Lock order, to keep concurrent writers free of deadlocks: the
course_stats rows of the touched courses first (in course id order), then
lesson, bucket and study rows.

Existing data is summed once at upgrade; study time already recorded is
attributed to the quarter hour of each lesson progress row's last update.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("active", "completed", "dropped", "expired", "pending_payment")

FUNCTIONS = r"""
CREATE FUNCTION analytics_studying(status text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT status IN ('active', 'completed') $$;

-- Tenths: 0 is [0, 10), 9 is [90, 100].
CREATE FUNCTION analytics_bucket(percentage numeric) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT least(floor(percentage / 10), 9)::smallint $$;

CREATE FUNCTION analytics_lock_courses(course_ids uuid[]) RETURNS void LANGUAGE sql AS $$
    SELECT 1 FROM course_stats WHERE course_id = ANY(course_ids) ORDER BY course_id FOR UPDATE
$$;

-- Stats rows are born with their course, lesson or quiz.
CREATE FUNCTION analytics_course_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO course_stats (course_id) SELECT id FROM new_rows;
    INSERT INTO course_progress_buckets (course_id, bucket)
        SELECT id, b FROM new_rows CROSS JOIN generate_series(0, 9) AS b;
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_lesson_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lesson_stats (lesson_id) SELECT id FROM new_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_quiz_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO quiz_stats (quiz_id) SELECT id FROM new_rows;
    INSERT INTO quiz_score_buckets (quiz_id, bucket) SELECT id, b FROM new_rows CROSS JOIN generate_series(0, 9) AS b;
    RETURN NULL;
END $$;

-- Enrollments: counts by status, sums over studying ones, the progress
-- histogram; an enrollment that starts or stops studying brings its lesson
-- progress into the lesson figures or takes it out.
CREATE FUNCTION analytics_apply_enrollments(added enrollments[], removed enrollments[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM analytics_lock_courses(ARRAY(
        SELECT course_id FROM unnest(added) UNION SELECT course_id FROM unnest(removed)
    ));
    WITH d AS (
        SELECT course_id, status, progress_percentage, total_time_spent_seconds, 1 AS sign FROM unnest(added)
        UNION ALL
        SELECT course_id, status, progress_percentage, total_time_spent_seconds, -1 FROM unnest(removed)
    ), per_course AS (
        SELECT course_id,
               coalesce(sum(sign) FILTER (WHERE status = 'active'), 0) AS active,
               coalesce(sum(sign) FILTER (WHERE status = 'completed'), 0) AS completed,
               coalesce(sum(sign) FILTER (WHERE status = 'dropped'), 0) AS dropped,
               coalesce(sum(sign) FILTER (WHERE status = 'expired'), 0) AS expired,
               coalesce(sum(sign) FILTER (WHERE status = 'pending_payment'), 0) AS pending_payment,
               coalesce(sum(sign * progress_percentage) FILTER (WHERE analytics_studying(status)), 0) AS progress,
               coalesce(sum(sign * total_time_spent_seconds) FILTER (WHERE analytics_studying(status)), 0) AS seconds
        FROM d GROUP BY course_id
    )
    UPDATE course_stats s
    SET active = s.active + p.active, completed = s.completed + p.completed, dropped = s.dropped + p.dropped,
        expired = s.expired + p.expired, pending_payment = s.pending_payment + p.pending_payment,
        progress_sum = s.progress_sum + p.progress, time_spent_sum = s.time_spent_sum + p.seconds
    FROM per_course p
    WHERE s.course_id = p.course_id;

    UPDATE course_progress_buckets b SET enrollments = b.enrollments + x.n
    FROM (
        SELECT course_id, bucket, sum(sign) AS n FROM (
            SELECT course_id, analytics_bucket(progress_percentage) AS bucket, 1 AS sign
            FROM unnest(added) WHERE analytics_studying(status)
            UNION ALL
            SELECT course_id, analytics_bucket(progress_percentage), -1
            FROM unnest(removed) WHERE analytics_studying(status)
        ) AS d
        GROUP BY course_id, bucket HAVING sum(sign) <> 0
    ) AS x
    WHERE b.course_id = x.course_id AND b.bucket = x.bucket;

    UPDATE lesson_stats ls
    SET started = ls.started + x.started, completed = ls.completed + x.completed,
        time_spent_sum = ls.time_spent_sum + x.seconds
    FROM (
        SELECT lp.lesson_id, sum(f.sign) AS started,
               coalesce(sum(f.sign) FILTER (WHERE lp.status = 'completed'), 0) AS completed,
               sum(f.sign * lp.time_spent_seconds) AS seconds
        FROM (
            SELECT a.id, CASE WHEN analytics_studying(a.status) THEN 1 ELSE -1 END AS sign
            FROM unnest(added) AS a JOIN unnest(removed) AS r ON r.id = a.id
            WHERE analytics_studying(a.status) <> analytics_studying(r.status)
        ) AS f
        JOIN lesson_progress lp ON lp.enrollment_id = f.id
        GROUP BY lp.lesson_id
    ) AS x
    WHERE ls.lesson_id = x.lesson_id;
END $$;

CREATE FUNCTION analytics_enrollments_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM analytics_apply_enrollments(ARRAY(SELECT n::enrollments FROM new_rows n), '{}');
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM analytics_apply_enrollments(ARRAY(SELECT n::enrollments FROM new_rows n), ARRAY(SELECT o::enrollments FROM old_rows o));
    ELSE
        PERFORM analytics_apply_enrollments('{}', ARRAY(SELECT o::enrollments FROM old_rows o));
    END IF;
    RETURN NULL;
END $$;

-- Before the cascade removes its lesson progress (afterwards nobody knows
-- whether those rows counted).
CREATE FUNCTION analytics_enrollment_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF analytics_studying(OLD.status) THEN
        PERFORM analytics_lock_courses(ARRAY[OLD.course_id]);
        UPDATE lesson_stats ls
        SET started = ls.started - x.started, completed = ls.completed - x.completed,
            time_spent_sum = ls.time_spent_sum - x.seconds
        FROM (
            SELECT lesson_id, count(*) AS started, count(*) FILTER (WHERE status = 'completed') AS completed,
                   sum(time_spent_seconds) AS seconds
            FROM lesson_progress WHERE enrollment_id = OLD.id GROUP BY lesson_id
        ) AS x
        WHERE ls.lesson_id = x.lesson_id;
    END IF;
    RETURN OLD;
END $$;

-- Lesson progress: the lesson figures (rows of studying enrollments) and the
-- student's study log (time added and lessons completed, per quarter hour of
-- the row's update; removing a row does not rewrite the log).
CREATE FUNCTION analytics_apply_lesson_progress(added lesson_progress[], removed lesson_progress[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM analytics_lock_courses(ARRAY(
        SELECT DISTINCT e.course_id
        FROM (SELECT enrollment_id FROM unnest(added) UNION SELECT enrollment_id FROM unnest(removed)) AS d
        JOIN enrollments e ON e.id = d.enrollment_id
    ));
    UPDATE lesson_stats ls
    SET started = ls.started + x.started, completed = ls.completed + x.completed,
        time_spent_sum = ls.time_spent_sum + x.seconds
    FROM (
        SELECT d.lesson_id, sum(sign) AS started,
               coalesce(sum(sign) FILTER (WHERE d.status = 'completed'), 0) AS completed,
               sum(sign * d.time_spent_seconds) AS seconds
        FROM (
            SELECT lesson_id, enrollment_id, status, time_spent_seconds, 1 AS sign FROM unnest(added)
            UNION ALL
            SELECT lesson_id, enrollment_id, status, time_spent_seconds, -1 FROM unnest(removed)
        ) AS d
        JOIN enrollments e ON e.id = d.enrollment_id AND analytics_studying(e.status)
        GROUP BY d.lesson_id
    ) AS x
    WHERE ls.lesson_id = x.lesson_id;

    INSERT INTO study_activity (student_id, bucket, seconds, reports, lessons_completed)
    SELECT e.student_id, date_bin('15 minutes', a.updated_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
           sum(greatest(a.time_spent_seconds - coalesce(r.time_spent_seconds, 0), 0)), count(*),
           count(*) FILTER (WHERE a.status = 'completed' AND r.status IS DISTINCT FROM 'completed')
    FROM unnest(added) AS a
    LEFT JOIN unnest(removed) AS r ON r.id = a.id
    JOIN enrollments e ON e.id = a.enrollment_id
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (student_id, bucket) DO UPDATE
    SET seconds = study_activity.seconds + excluded.seconds,
        reports = study_activity.reports + excluded.reports,
        lessons_completed = study_activity.lessons_completed + excluded.lessons_completed;
END $$;

CREATE FUNCTION analytics_lesson_progress_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM analytics_apply_lesson_progress(ARRAY(SELECT n::lesson_progress FROM new_rows n), '{}');
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM analytics_apply_lesson_progress(ARRAY(SELECT n::lesson_progress FROM new_rows n), ARRAY(SELECT o::lesson_progress FROM old_rows o));
    ELSE
        PERFORM analytics_apply_lesson_progress('{}', ARRAY(SELECT o::lesson_progress FROM old_rows o));
    END IF;
    RETURN NULL;
END $$;

-- Quiz attempts: graded ones count (attempts, passes, score sum, tenths).
CREATE FUNCTION analytics_apply_quiz_attempts(added quiz_attempts[], removed quiz_attempts[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM unnest(added) WHERE status = 'graded' AND percentage IS NOT NULL
        UNION ALL
        SELECT 1 FROM unnest(removed) WHERE status = 'graded' AND percentage IS NOT NULL
    ) THEN
        RETURN;  -- an attempt started or answers saved: nothing graded changed
    END IF;
    UPDATE quiz_stats s
    SET attempts = s.attempts + x.attempts, passed = s.passed + x.passed,
        percentage_sum = s.percentage_sum + x.percentage
    FROM (
        SELECT quiz_id, sum(sign) AS attempts, coalesce(sum(sign) FILTER (WHERE is_passed), 0) AS passed,
               sum(sign * percentage) AS percentage
        FROM (
            SELECT quiz_id, is_passed, percentage, 1 AS sign FROM unnest(added)
            WHERE status = 'graded' AND percentage IS NOT NULL
            UNION ALL
            SELECT quiz_id, is_passed, percentage, -1 FROM unnest(removed)
            WHERE status = 'graded' AND percentage IS NOT NULL
        ) AS d
        GROUP BY quiz_id
    ) AS x
    WHERE s.quiz_id = x.quiz_id;

    UPDATE quiz_score_buckets b SET attempts = b.attempts + x.n
    FROM (
        SELECT quiz_id, bucket, sum(sign) AS n FROM (
            SELECT quiz_id, analytics_bucket(percentage) AS bucket, 1 AS sign FROM unnest(added)
            WHERE status = 'graded' AND percentage IS NOT NULL
            UNION ALL
            SELECT quiz_id, analytics_bucket(percentage), -1 FROM unnest(removed)
            WHERE status = 'graded' AND percentage IS NOT NULL
        ) AS d
        GROUP BY quiz_id, bucket HAVING sum(sign) <> 0
    ) AS x
    WHERE b.quiz_id = x.quiz_id AND b.bucket = x.bucket;
END $$;

CREATE FUNCTION analytics_quiz_attempts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM analytics_apply_quiz_attempts(ARRAY(SELECT n::quiz_attempts FROM new_rows n), '{}');
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM analytics_apply_quiz_attempts(ARRAY(SELECT n::quiz_attempts FROM new_rows n), ARRAY(SELECT o::quiz_attempts FROM old_rows o));
    ELSE
        PERFORM analytics_apply_quiz_attempts('{}', ARRAY(SELECT o::quiz_attempts FROM old_rows o));
    END IF;
    RETURN NULL;
END $$;
"""

# (table, trigger function, events) for statement-level triggers with transition tables:
# PostgreSQL allows them one event per trigger.
CHANGE_TRIGGERS = (
    ("enrollments", "analytics_enrollments_changed", ("INSERT", "UPDATE", "DELETE")),
    ("lesson_progress", "analytics_lesson_progress_changed", ("INSERT", "UPDATE", "DELETE")),
    ("quiz_attempts", "analytics_quiz_attempts_changed", ("INSERT", "UPDATE", "DELETE")),
    ("courses", "analytics_course_created", ("INSERT",)),
    ("lessons", "analytics_lesson_created", ("INSERT",)),
    ("quizzes", "analytics_quiz_created", ("INSERT",)),
)
TRANSITION = {"INSERT": "NEW TABLE AS new_rows", "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
              "DELETE": "OLD TABLE AS old_rows"}  # fmt: skip

BACKFILL = r"""
INSERT INTO course_stats (course_id, active, completed, dropped, expired, pending_payment, progress_sum, time_spent_sum)
SELECT c.id,
       count(e.id) FILTER (WHERE e.status = 'active'), count(e.id) FILTER (WHERE e.status = 'completed'),
       count(e.id) FILTER (WHERE e.status = 'dropped'), count(e.id) FILTER (WHERE e.status = 'expired'),
       count(e.id) FILTER (WHERE e.status = 'pending_payment'),
       coalesce(sum(e.progress_percentage) FILTER (WHERE analytics_studying(e.status)), 0),
       coalesce(sum(e.total_time_spent_seconds) FILTER (WHERE analytics_studying(e.status)), 0)
FROM courses c LEFT JOIN enrollments e ON e.course_id = c.id
GROUP BY c.id;

INSERT INTO course_progress_buckets (course_id, bucket, enrollments)
SELECT c.id, b, (SELECT count(*) FROM enrollments e WHERE e.course_id = c.id AND analytics_studying(e.status)
                 AND analytics_bucket(e.progress_percentage) = b)
FROM courses c CROSS JOIN generate_series(0, 9) AS b;

INSERT INTO lesson_stats (lesson_id, started, completed, time_spent_sum)
SELECT l.id, count(lp.id), count(lp.id) FILTER (WHERE lp.status = 'completed'), coalesce(sum(lp.time_spent_seconds), 0)
FROM lessons l
LEFT JOIN (lesson_progress lp JOIN enrollments e ON e.id = lp.enrollment_id AND analytics_studying(e.status))
       ON lp.lesson_id = l.id
GROUP BY l.id;

INSERT INTO quiz_stats (quiz_id, attempts, passed, percentage_sum)
SELECT q.id, count(a.id), count(a.id) FILTER (WHERE a.is_passed), coalesce(sum(a.percentage), 0)
FROM quizzes q
LEFT JOIN quiz_attempts a ON a.quiz_id = q.id AND a.status = 'graded' AND a.percentage IS NOT NULL
GROUP BY q.id;

INSERT INTO quiz_score_buckets (quiz_id, bucket, attempts)
SELECT q.id, b, (SELECT count(*) FROM quiz_attempts a WHERE a.quiz_id = q.id AND a.status = 'graded'
                 AND a.percentage IS NOT NULL AND analytics_bucket(a.percentage) = b)
FROM quizzes q CROSS JOIN generate_series(0, 9) AS b;

INSERT INTO study_activity (student_id, bucket, seconds, reports, lessons_completed)
SELECT e.student_id, date_bin('15 minutes', lp.updated_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'),
       sum(lp.time_spent_seconds), count(*), count(*) FILTER (WHERE lp.status = 'completed')
FROM lesson_progress lp JOIN enrollments e ON e.id = lp.enrollment_id
GROUP BY 1, 2;
"""


def upgrade() -> None:
    def key(table: str, name: str, target: str) -> list[Any]:
        return [
            sa.Column(name, postgresql.UUID(as_uuid=True), nullable=False),
            sa.ForeignKeyConstraint([name], [target], name=op.f(f"fk_{table}_{name}_{target.split('.')[0]}"),
                                    ondelete="CASCADE"),
        ]  # fmt: skip

    def counter(name: str, type_: Any = None) -> sa.Column:  # type: ignore[type-arg]
        return sa.Column(name, type_ if type_ is not None else sa.Integer(), server_default="0", nullable=False)

    def buckets(table: str, owner: str, target: str, count: str) -> None:
        op.create_table(
            table,
            *key(table, owner, target),
            sa.Column("bucket", sa.SmallInteger(), nullable=False),
            counter(count),
            sa.CheckConstraint("bucket BETWEEN 0 AND 9", name=op.f(f"ck_{table}_bucket_range")),
            sa.PrimaryKeyConstraint(owner, "bucket", name=op.f(f"pk_{table}")),
        )

    percent_sum = sa.Numeric(16, 2)
    op.create_table(
        "course_stats",
        *key("course_stats", "course_id", "courses.id"),
        *(counter(status) for status in STATUSES),
        counter("progress_sum", percent_sum),
        counter("time_spent_sum", sa.BigInteger()),
        sa.PrimaryKeyConstraint("course_id", name=op.f("pk_course_stats")),
    )
    buckets("course_progress_buckets", "course_id", "courses.id", "enrollments")
    op.create_table(
        "lesson_stats",
        *key("lesson_stats", "lesson_id", "lessons.id"),
        counter("started"),
        counter("completed"),
        counter("time_spent_sum", sa.BigInteger()),
        sa.PrimaryKeyConstraint("lesson_id", name=op.f("pk_lesson_stats")),
    )
    op.create_table(
        "quiz_stats",
        *key("quiz_stats", "quiz_id", "quizzes.id"),
        counter("attempts"),
        counter("passed"),
        counter("percentage_sum", percent_sum),
        sa.PrimaryKeyConstraint("quiz_id", name=op.f("pk_quiz_stats")),
    )
    buckets("quiz_score_buckets", "quiz_id", "quizzes.id", "attempts")
    op.create_table(
        "study_activity",
        *key("study_activity", "student_id", "users.id"),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        counter("seconds", sa.BigInteger()),
        counter("reports"),
        counter("lessons_completed"),
        sa.PrimaryKeyConstraint("student_id", "bucket", name=op.f("pk_study_activity")),
    )
    op.create_index(op.f("ix_study_activity_bucket"), "study_activity", ["bucket"])

    op.execute(FUNCTIONS)
    # Sum what exists before the triggers count changes (the migration holds
    # its tables' locks from here to its commit).
    for table in ("courses", "lessons", "quizzes", "enrollments", "lesson_progress", "quiz_attempts"):
        op.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
    op.execute(BACKFILL)
    for table, function, events in CHANGE_TRIGGERS:
        for event in events:
            op.execute(
                f"CREATE TRIGGER {function}_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING {TRANSITION[event]} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
    op.execute(
        "CREATE TRIGGER analytics_enrollment_deleting BEFORE DELETE ON enrollments "
        "FOR EACH ROW EXECUTE FUNCTION analytics_enrollment_deleting()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER analytics_enrollment_deleting ON enrollments")
    for table, function, events in CHANGE_TRIGGERS:
        for event in events:
            op.execute(f"DROP TRIGGER {function}_{event.lower()} ON {table}")
    for function in (
        "analytics_enrollments_changed()", "analytics_enrollment_deleting()", "analytics_lesson_progress_changed()",
        "analytics_quiz_attempts_changed()", "analytics_course_created()", "analytics_lesson_created()",
        "analytics_quiz_created()", "analytics_apply_enrollments(enrollments[], enrollments[])",
        "analytics_apply_lesson_progress(lesson_progress[], lesson_progress[])",
        "analytics_apply_quiz_attempts(quiz_attempts[], quiz_attempts[])", "analytics_lock_courses(uuid[])",
        "analytics_bucket(numeric)", "analytics_studying(text)",
    ):  # fmt: skip
        op.execute(f"DROP FUNCTION {function}")
    for table in (
        "study_activity", "quiz_score_buckets", "quiz_stats", "lesson_stats", "course_progress_buckets", "course_stats"
    ):  # fmt: skip
        op.drop_table(table)
