"""Certificate bodies and responses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from lms.api.pagination import PageQuery
from lms.tables import CertificateStatus


class CertificateOut(BaseModel):
    id: uuid.UUID
    enrollment_id: uuid.UUID
    student_id: uuid.UUID
    course_id: uuid.UUID
    certificate_number: str
    status: CertificateStatus
    student_name: str
    course_title: str
    instructor_name: str
    completion_date: datetime
    issued_at: datetime | None
    is_revoked: bool
    revoked_at: datetime | None
    revocation_reason: str | None
    created_at: datetime
    verify_url: str
    download_url: str | None = Field(description="Null until the PDF is issued.")
    credential_url: str | None = Field(description="The Open Badges 3.0 credential; null until issued.")


class VerificationOut(BaseModel):
    valid: bool = Field(description="Issued and not revoked.")
    certificate_number: str
    student_name: str
    course_title: str
    instructor_name: str
    completion_date: datetime
    issued_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    status: CertificateStatus


class RevokeIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)

    @field_validator("reason")
    @classmethod
    def _readable(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()


class CredentialOut(BaseModel):
    credential: dict[str, Any] = Field(description="The OpenBadgeCredential (W3C Verifiable Credential).")
    jwt: str = Field(description="The credential secured as a VC-JWT (EdDSA, Ed25519); verify with the JWK Set.")
    jwks_url: str


class MyCertificatesQuery(PageQuery):
    pass
