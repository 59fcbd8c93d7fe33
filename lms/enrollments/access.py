"""Who may see or act on an enrollment.

The student sees and acts on it; the course's instructor and admins see it
(and get 403 when they try to act as the student); anyone else gets 404.
"""

from __future__ import annotations

import uuid

from lms.api.problems import Forbidden, NotFound
from lms.auth.guards import Principal
from lms.courses.access import manages
from lms.db import Connection, Row
from lms.enrollments import queries


async def load_enrollment(
    conn: Connection, principal: Principal, enrollment_id: uuid.UUID, *, as_student: bool = False
) -> Row:
    """The enrollment (with its ``course`` summary) if the caller may see it; ``as_student``: act on it."""
    enrollment = await queries.get_enrollment(conn, enrollment_id)
    if enrollment is None:
        raise NotFound("No such enrollment.")
    if enrollment["student_id"] == principal.id:
        return enrollment
    if not manages(principal, enrollment["course"]):
        raise NotFound("No such enrollment.")
    if as_student:
        raise Forbidden("Only the enrolled student may do this.")
    return enrollment
