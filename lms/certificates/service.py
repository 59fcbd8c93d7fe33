"""Certificate use cases: requesting one (completion, or the student asking) and issuing it (the job).

Issuing is idempotent: the PDF is stored under the certificate's own key,
the pending → issued change happens once, the email's message id is the
certificate's, and the notification follows the one email actually sent.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from lms.api.problems import Conflict, Forbidden, NotFound, ValidationFailed
from lms.auth.guards import Principal
from lms.auth.permissions import owner_or_admin
from lms.certificates import queries
from lms.certificates.numbers import MalformedNumber, parse_number
from lms.certificates.render import CertificateContent, PdfRenderer
from lms.config import Settings
from lms.db import Database, Row
from lms.effects import Effects
from lms.enrollments.access import load_enrollment
from lms.mail.errors import MailRejected
from lms.mail.message import Attachment
from lms.mail.service import Mailer
from lms.storage import Storage

log = logging.getLogger(__name__)

ISSUE_TASK = "issue_certificate"


def verify_url(config: Settings, number: str) -> str:
    return f"{config.http.public_base_url.rstrip('/')}/verify/{number}"


def pdf_key(certificate_id: uuid.UUID) -> str:
    return f"certificates/{certificate_id}.pdf"


# --- requesting --------------------------------------------------------------


async def request_certificate(db: Database, effects: Effects, enrollment_id: uuid.UUID) -> bool:
    """Record a pending certificate for a completed enrollment and queue its rendering.

    True when recorded now. A certificate still pending (this request
    redelivered after it was recorded) is queued again: issuing is idempotent.
    """
    async with db.transaction() as conn:
        created = await queries.record_request(conn, enrollment_id)
        certificate = created or await queries.for_enrollment(conn, enrollment_id)
    if certificate is None:
        log.info("certificate for enrollment %s: the enrollment is not completed", enrollment_id)
        return False
    if certificate["status"] == "pending":
        await effects.enqueue(ISSUE_TASK, certificate_id=str(certificate["id"]))
    if created is None:
        log.info("certificate for enrollment %s was already requested", enrollment_id)
        return False
    log.info("certificate %s requested for enrollment %s", created["certificate_number"], enrollment_id)
    return True


async def generate(db: Database, effects: Effects, principal: Principal, enrollment_id: uuid.UUID) -> Row:
    """``POST /certificates/enrollments/{id}/generate``: the student or an admin; 409 when one exists."""
    async with db.transaction() as conn:
        enrollment = await load_enrollment(conn, principal, enrollment_id)
        if not owner_or_admin(principal, enrollment["student_id"]):
            raise Forbidden("Only the student or an admin may ask for this certificate.")
        if enrollment["status"] != "completed":
            raise Conflict(f"This enrollment is {enrollment['status']}; certificates are for completed courses.")
        certificate = await queries.record_request(conn, enrollment_id)
        if certificate is None:
            existing = await queries.for_enrollment(conn, enrollment_id)
            # A rendering that failed for good may be asked for again.
            certificate = await queries.retry_failed(conn, existing["id"]) if existing else None
            if certificate is None:
                raise Conflict(
                    "This enrollment has a certificate already.",
                    certificate_id=str(existing["id"]) if existing else None,
                )
        details = await queries.get_details(conn, certificate_id=certificate["id"])
    await effects.enqueue(ISSUE_TASK, certificate_id=str(certificate["id"]))
    assert details is not None
    return details


async def lookup(db: Database, text: str) -> dict[str, Any]:
    """What anyone holding the number may learn; 422 for text that is no number (``mistyped``: a typo), else 404."""
    try:
        number = parse_number(text)
    except MalformedNumber as err:
        raise ValidationFailed(
            str(err), errors=[{"field": "number", "message": str(err)}], mistyped=err.mistyped
        ) from None
    async with db.connection() as conn:
        row = await queries.get_details(conn, number=number)
    if row is None:
        raise NotFound("No certificate has this number.")
    return queries.public_view(row)


# --- issuing (the job) -------------------------------------------------------


@dataclass(frozen=True)
class Issuer:
    """What issuing needs; a worker builds one from its resources."""

    db: Database
    storage: Storage
    renderer: PdfRenderer
    mailer: Mailer
    effects: Effects

    @property
    def config(self) -> Settings:
        return self.effects.config


Outcome = Literal["issued", "already_issued", "missing", "revoked"]


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_all(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


async def issue(issuer: Issuer, certificate_id: uuid.UUID, *, final_attempt: bool = True) -> Outcome:
    """Render, store, mark issued, email the student, notify their devices: each at most once."""
    async with issuer.db.connection() as conn:
        certificate = await queries.get_details(conn, certificate_id=certificate_id)
    if certificate is None:
        log.warning("certificate %s does not exist (deleted with its enrollment?)", certificate_id)
        return "missing"
    if certificate["is_revoked"]:
        log.info("certificate %s is revoked; not issued", certificate_id)
        return "revoked"
    if certificate["status"] == "issued" and certificate["pdf_path"]:
        # A re-run (the email failed, the worker died): deliver what was issued.
        pdf = await _read_all(issuer.storage, certificate["pdf_path"])
        await _deliver(issuer, certificate, pdf, final_attempt=final_attempt)
        return "already_issued"
    content = CertificateContent(
        app_name=issuer.config.app_name,
        student_name=certificate["student_name"],
        course_title=certificate["course_title"],
        instructor_name=certificate["instructor_name"],
        completion_date=certificate["completion_date"],
        number=certificate["certificate_number"],
        verify_url=verify_url(issuer.config, certificate["certificate_number"]),
    )
    try:
        pdf = await issuer.renderer.render(content)
    except Exception as err:
        if final_attempt:
            async with issuer.db.transaction() as conn:
                await queries.mark_failed(conn, certificate_id, f"{type(err).__name__}: {err}")
        raise
    key = pdf_key(certificate_id)
    # Same key for every run: a concurrent run overwrites with an equivalent PDF.
    await issuer.storage.save(key, _one_chunk(pdf), content_type="application/pdf")
    async with issuer.db.transaction() as conn:
        issued = await queries.mark_issued(conn, certificate_id, pdf_path=key)
        if issued is not None:
            await queries.mark_enrollment_certified(conn, certificate["enrollment_id"])
    if issued is None:  # a concurrent run issued it first; that run delivers it
        return "already_issued"
    log.info("certificate %s issued (%d bytes)", certificate["certificate_number"], len(pdf))
    await _deliver(issuer, certificate, pdf, final_attempt=final_attempt)
    return "issued"


async def _deliver(issuer: Issuer, certificate: Row, pdf: bytes, *, final_attempt: bool) -> None:
    number = certificate["certificate_number"]
    try:
        sent = await issuer.mailer.send(
            template="certificate_ready",
            to=certificate["student_email"],
            context={
                "full_name": certificate["student_name"],
                "course_title": certificate["course_title"],
                "certificate_number": number,
                "verify_url": verify_url(issuer.config, number),
            },
            message_id=f"<certificate-ready-{certificate['id']}@lms>",
            user_id=str(certificate["student_id"]),
            attachments=[Attachment(f"certificate-{number}.pdf", pdf, "application/pdf")],
            final_attempt=final_attempt,
        )
    except MailRejected as err:  # a bad address: the certificate stands, the devices still hear of it
        log.warning("certificate %s: email refused (%s)", number, err)
        sent = "sent"
    if sent == "sent":
        await issuer.effects.notify(
            certificate["student_id"],
            "certificate_ready",
            {"certificate_id": str(certificate["id"]), "certificate_number": number,
             "course_id": str(certificate["course_id"]), "course_title": certificate["course_title"]},
        )  # fmt: skip
