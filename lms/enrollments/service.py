"""Use cases that span several queries and a side effect: enrolling, progress, completion.

Side effects (emails, jobs, domain events) happen after the commit, through
the :class:`~lms.effects.Effects` the caller gives (a request's or a worker's),
from here only, so dashboards and devices hear of each change once and the
same way whoever made it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from lms.api.problems import Conflict, NotFound, PaymentRequired, ValidationFailed
from lms.auth.guards import Principal
from lms.courses.access import load_course
from lms.courses.queries import get_course
from lms.db import Database, IntegrityViolation, Row
from lms.effects import Effects
from lms.enrollments import queries
from lms.enrollments.access import load_enrollment
from lms.enrollments.studying import STUDYING
from lms.events import CourseCompleted, EnrollmentCreated, LessonProgressChanged
from lms.money import money
from lms.payments.queries import has_active_subscription

log = logging.getLogger(__name__)

CHECKOUT_PATH = "/api/v1/payments/checkout"


# --- enrolling ---------------------------------------------------------------


async def enroll(db: Database, effects: Effects, student: Principal, course_id: uuid.UUID) -> Row:
    """Free course → an active enrollment; paid → 402 pointing at checkout; already studying → 409."""
    try:
        async with db.transaction() as conn:
            course = await load_course(conn, student, course_id=course_id)
            if not course["is_published"]:
                raise Conflict("This course is not published; nobody can enroll yet.")
            existing = await queries.find_enrollment(conn, student_id=student.id, course_id=course_id)
            if existing is not None and existing["status"] in STUDYING:
                raise already_enrolled(existing["id"])
            # An active subscription covers every paid course.
            if course["price_amount"] is not None and not await has_active_subscription(conn, student.id):
                raise PaymentRequired(
                    "This course is paid: start a checkout to enroll.",
                    checkout={"method": "POST", "href": CHECKOUT_PATH, "body": {"course_id": str(course_id)}},
                    price=money(course["price_amount"], course["price_currency"]),
                )
            enrollment = await queries.enroll(conn, student_id=student.id, course_id=course_id)
            if enrollment is None:  # a concurrent request enrolled first
                existing = await queries.find_enrollment(conn, student_id=student.id, course_id=course_id)
                raise already_enrolled(existing["id"] if existing else None)
            if not enrollment["created"]:  # re-activated: counters from what was done before
                enrollment = (await queries.refresh_progress(conn, enrollment_id=enrollment["id"]))[0]
    except IntegrityViolation as err:  # the course was deleted meanwhile
        raise NotFound("No such course.") from err
    log.info("student %s enrolled in course %s", student.id, course_id)
    await effects.email(
        "enrollment_confirmation", to=student.email, full_name=student.full_name, user_id=student.id,
        course_title=course["title"], course_url=course_url(effects, course["slug"]),
    )  # fmt: skip
    await effects.publish(
        EnrollmentCreated(
            course_id=course_id,
            enrollment_id=enrollment["id"],
            student_id=student.id,
            student_name=student.full_name,
            status=enrollment["status"],
        )
    )
    return enrollment


def course_url(effects: Effects, slug: str) -> str:
    """The course's page, as emails link to it."""
    return effects.link(f"/courses/{slug}")


def already_enrolled(enrollment_id: uuid.UUID | None) -> Conflict:
    return Conflict(
        "You are already enrolled in this course.",
        enrollment_id=str(enrollment_id) if enrollment_id else None,
    )


# --- progress ----------------------------------------------------------------


async def record_progress(
    db: Database,
    effects: Effects,
    student: Principal,
    enrollment_id: uuid.UUID,
    lesson_id: uuid.UUID,
    *,
    seconds: int = 0,
    position: int | None = None,
    percentage: Any = None,
) -> dict[str, Row]:
    """Apply one progress report atomically; reaching 100% completes the enrollment."""
    if not queries.completes_lesson(percentage):
        # Most reports (a position every half minute): one statement, when every check passes.
        try:
            async with db.connection() as conn:
                reported = await queries.report_progress(
                    conn, student_id=student.id, enrollment_id=enrollment_id, lesson_id=lesson_id,
                    seconds=seconds, position=position, percentage=percentage,
                )  # fmt: skip
        except IntegrityViolation as err:  # the lesson was deleted meanwhile
            raise NotFound("No such lesson in this course.") from err
        if reported is not None:
            progress, current = reported
            return await _reported(effects, student, progress, current | {"old_status": current["status"]})
    # A lesson completed, or a check failed (the steps below say which).
    async with db.connection() as conn:
        enrollment = await load_enrollment(conn, student, enrollment_id, as_student=True)
        lesson = await queries.get_course_lesson(conn, lesson_id=lesson_id, course_id=enrollment["course_id"])
        if lesson is None:
            raise NotFound("No such lesson in this course.")
        duration = lesson["duration_seconds"]
        if position is not None and duration is not None and position > duration:
            raise ValidationFailed(
                "The position is past the end of the lesson.",
                errors=[{"field": "last_position_seconds", "message": f"at most {duration}"}],
            )
        try:
            async with conn.transaction():
                # First statement: locks the enrollment, so reports from several
                # devices apply one at a time and the counts below see them all.
                studying = await queries.add_study_time(conn, enrollment_id, seconds)
                if studying is None:
                    raise Conflict(f"This enrollment is {enrollment['status']}; progress is not recorded.")
                progress = await queries.record_lesson_progress(
                    conn, enrollment_id=enrollment_id, lesson_id=lesson_id, seconds=seconds, position=position,
                    percentage=percentage,
                )  # fmt: skip
                if queries.completes_lesson(percentage):
                    (updated,) = await queries.refresh_progress(conn, enrollment_id=enrollment_id)
                else:
                    # No lesson completed: the counters derive from nothing this report changed
                    # (most reports: a position every half minute), so the recount is skipped.
                    updated = studying | {"old_status": studying["status"]}
        except IntegrityViolation as err:  # the lesson was deleted meanwhile
            raise NotFound("No such lesson in this course.") from err
    result = await _reported(effects, student, progress, updated)
    if updated["old_status"] == "active" and updated["status"] == "completed":
        await after_completion(db, effects, [enrollment_id])
    return result


async def _reported(effects: Effects, student: Principal, progress: Row, enrollment: Row) -> dict[str, Row]:
    """Dashboards and the student's other devices hear of a report; the response body."""
    await effects.publish(
        LessonProgressChanged(
            course_id=enrollment["course_id"],
            enrollment_id=enrollment["id"],
            student_id=student.id,
            lesson_id=progress["lesson_id"],
            completion_percentage=progress["completion_percentage"],
            progress_percentage=enrollment["progress_percentage"],
            completed=progress["status"] == "completed",
        )
    )
    return {"lesson": progress, "enrollment": enrollment}


async def after_completion(db: Database, effects: Effects, enrollment_ids: list[uuid.UUID]) -> None:
    """The completion email, the certificate request and the event, for enrollments that just completed."""
    async with db.connection() as conn:
        rows = await queries.completion_context(conn, enrollment_ids)
    for row in rows:
        log.info("enrollment %s completed course %s", row["enrollment_id"], row["course_id"])
        # One completion email per enrollment, whichever path (request or job) completes it.
        await effects.email(
            "course_completion", to=row["email"], full_name=row["full_name"], user_id=row["student_id"],
            message_id=f"<course-completion-{row['enrollment_id']}@lms>", course_title=row["course_title"],
            course_url=course_url(effects, row["course_slug"]),
        )  # fmt: skip
        await effects.enqueue("request_certificate", enrollment_id=str(row["enrollment_id"]))
        await effects.publish(
            CourseCompleted(
                course_id=row["course_id"], enrollment_id=row["enrollment_id"], student_id=row["student_id"]
            )
        )


async def recalculate_course_progress(db: Database, effects: Effects, course_id: uuid.UUID) -> int:
    """Re-derive every studying enrollment of a course (after lessons were added or removed).

    Idempotent: running it twice computes the same counters; completion
    happens once (only ``active`` enrollments complete). Returns how many
    enrollments were refreshed.
    """
    async with db.transaction() as conn:
        # Lock first: the refresh below then counts from a snapshot that has
        # every progress report committed before it (see refresh_progress).
        await queries.lock_course_enrollments(conn, course_id)
        rows = await queries.refresh_progress(conn, course_id=course_id)
    completed = [r["id"] for r in rows if r["old_status"] == "active" and r["status"] == "completed"]
    if completed:
        await after_completion(db, effects, completed)
    log.info("course %s: progress re-computed for %d enrollments (%d completed)", course_id, len(rows), len(completed))
    return len(rows)


async def review(db: Database, student: Principal, enrollment_id: uuid.UUID, *, rating: int, text: str | None) -> Row:
    """The enrollment's review (replacing any earlier one) and the course's rating, in one transaction."""
    async with db.transaction() as conn:
        enrollment = await load_enrollment(conn, student, enrollment_id, as_student=True)
        # The course row lock orders concurrent reviews of one course: each
        # re-computes the average after the previous one committed.
        await get_course(conn, course_id=enrollment["course_id"], lock="update")
        reviewed = await queries.set_review(conn, enrollment_id, rating=rating, review=text)
        if reviewed is None:
            raise Conflict(f"This enrollment is {enrollment['status']}; only enrolled students review a course.")
        course = await queries.refresh_course_rating(conn, enrollment["course_id"])
    return {
        "enrollment_id": enrollment_id,
        "course_id": enrollment["course_id"],
        "rating": reviewed["rating"],
        "review": reviewed["review"],
        "reviewed_at": reviewed["reviewed_at"],
        "course_rating_average": course["rating_average"],
        "course_rating_count": course["rating_count"],
    }
