"""Certificate routes (``/api/v1/certificates/...``): requests, downloads, revocation, verification, credentials."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page
from lms.api.problems import Conflict, NotFound, Problem, ServiceUnavailable
from lms.appkeys import CONFIG, DB
from lms.auth.guards import Principal, authenticated, current_user, require
from lms.auth.permissions import Permission, owner_or_admin
from lms.certificates import queries, service
from lms.certificates.credential import JWKS_PATH, SigningKey, issuer_profile, open_badge_credential, sign_credential
from lms.certificates.schemas import CertificateOut, CredentialOut, MyCertificatesQuery, RevokeIn, VerificationOut
from lms.db import Row
from lms.effects import EFFECTS
from lms.storage import STORAGE, ObjectMissing, StorageError
from lms.storage.http import serve_object

routes = web.RouteTableDef()
TAGS = ["certificates"]
SIGNING_KEY = web.AppKey("certificate_signing_key", SigningKey)
manage_certificates = require(Permission.MANAGE_CERTIFICATES)


class Gone(Problem):
    status, type_slug = 410, "gone"


def present(request: web.Request, row: Row) -> dict[str, Any]:
    config = request.app[CONFIG]
    api = f"/api/v1/certificates/{row['id']}"
    issued = row["status"] == "issued"
    return {
        **row,
        "verify_url": service.verify_url(config, row["certificate_number"]),
        "download_url": f"{api}/download" if issued else None,
        "credential_url": f"{api}/credential" if issued else None,
    }


async def visible_certificate(request: web.Request) -> Row:
    """The certificate of the path if the caller is its student or an admin; anyone else 404."""
    principal: Principal = current_user(request)
    async with request.app[DB].connection() as conn:
        row = await queries.get_details(conn, certificate_id=path_uuid(request))
    if row is None or not owner_or_admin(principal, row["student_id"]):
        raise NotFound("No such certificate.")
    return row


@routes.post("/api/v1/certificates/enrollments/{id}/generate")
@endpoint(
    summary="Ask for a completed enrollment's certificate",
    description=(
        "The student or an admin. 202: the PDF is rendered by a background job (`status` pending, then issued; "
        "the student gets an email with the PDF and a `notification` `certificate_ready`). 409 when the "
        "enrollment is not completed or has a certificate; one whose rendering failed may be asked for again."
    ),
    response=CertificateOut,
    status=202,
    errors=[403, 404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def generate(request: web.Request) -> dict[str, Any]:
    row = await service.generate(request.app[DB], request.app[EFFECTS], current_user(request), path_uuid(request))
    return present(request, row)


@routes.get("/api/v1/certificates/my-certificates")
@endpoint(
    summary="My certificates", query=MyCertificatesQuery, response=Page[CertificateOut], guards=[authenticated],
    tags=TAGS,
)  # fmt: skip
async def my_certificates(request: web.Request, query: MyCertificatesQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_for_student(
            conn, current_user(request).id, limit=query.limit, offset=query.offset
        )
    return page([present(request, r) for r in rows], total, query)


@routes.get("/api/v1/certificates/issuer")
@endpoint(summary="The issuer profile of the Open Badges credentials", response=dict[str, Any], tags=TAGS)
async def issuer(request: web.Request) -> dict[str, Any]:
    config = request.app[CONFIG]
    return issuer_profile(base_url=config.http.public_base_url, app_name=config.app_name, key=request.app[SIGNING_KEY])


@routes.get("/api/v1/certificates/verify/{number}")
@endpoint(
    summary="Verify a certificate by its number (public)",
    description=(
        "Anyone. 404: no certificate has this number. 422: not a certificate number, with `mistyped: true` when "
        "only its check symbol disagrees (a typo, not a forgery or a revocation). Revoked certificates answer "
        "200 with `valid: false, revoked: true`."
    ),
    response=VerificationOut,
    errors=[404, 422],
    tags=TAGS,
)
async def verify(request: web.Request) -> dict[str, Any]:
    return await service.lookup(request.app[DB], request.match_info["number"])


@routes.get("/api/v1/certificates/{id}")
@endpoint(summary="A certificate", response=CertificateOut, errors=[404], guards=[authenticated], tags=TAGS)
async def get_certificate(request: web.Request) -> dict[str, Any]:
    return present(request, await visible_certificate(request))


@routes.get("/api/v1/certificates/{id}/download")
@endpoint(
    summary="The certificate PDF",
    description="The student or an admin; 409 while it is not issued yet. Served by any instance from storage.",
    response=bytes,
    response_content_type="application/pdf",
    errors=[404, 409],
    guards=[authenticated],
    tags=TAGS,
)
async def download(request: web.Request) -> web.StreamResponse:
    row = await visible_certificate(request)
    if row["status"] != "issued" or not row["pdf_path"]:
        raise Conflict(f"This certificate is {row['status']}; its PDF is not ready.", status=row["status"])
    try:
        return await serve_object(
            request, request.app[STORAGE], row["pdf_path"], filename=f"certificate-{row['certificate_number']}.pdf",
            content_type="application/pdf",
        )  # fmt: skip
    except ObjectMissing:
        raise NotFound("The certificate's PDF is missing from storage.") from None
    except StorageError as err:
        raise ServiceUnavailable("The file store is unavailable; try again shortly.") from err


@routes.post("/api/v1/certificates/{id}/revoke")
@endpoint(
    summary="Revoke a certificate",
    description="Admins. Verification then answers `valid: false, revoked: true`; revoking twice keeps the first.",
    body=RevokeIn,
    response=CertificateOut,
    errors=[404],
    guards=[manage_certificates],
    tags=TAGS,
)
async def revoke(request: web.Request, body: RevokeIn) -> dict[str, Any]:
    async with request.app[DB].transaction() as conn:
        row = await queries.revoke(conn, path_uuid(request), body.reason)
    if row is None:
        raise NotFound("No such certificate.")
    return present(request, row)


@routes.get("/api/v1/certificates/{id}/credential")
@endpoint(
    summary="The certificate as an Open Badges 3.0 credential",
    description=(
        "The student or an admin. A W3C Verifiable Credential (OpenBadgeCredential) and the same credential as a "
        f"VC-JWT signed with Ed25519 (`alg: EdDSA`); the public key is the JWK Set at `{JWKS_PATH}`. "
        "409 while not issued; 410 once revoked."
    ),
    response=CredentialOut,
    errors=[404, 409, 410],
    guards=[authenticated],
    tags=TAGS,
)
async def credential(request: web.Request) -> dict[str, Any]:
    row = await visible_certificate(request)
    if row["is_revoked"]:
        raise Gone("This certificate was revoked; its credential is no longer offered.")
    if row["status"] != "issued":
        raise Conflict(f"This certificate is {row['status']}; its credential is not issued yet.")
    config = request.app[CONFIG]
    base = config.http.public_base_url
    document = open_badge_credential(row, base_url=base, app_name=config.app_name)
    return {
        "credential": document,
        "jwt": sign_credential(document, request.app[SIGNING_KEY]),
        "jwks_url": f"{base.rstrip('/')}{JWKS_PATH}",
    }


@routes.get(JWKS_PATH)
@endpoint(summary="Public keys of the credentials (JWK Set)", response=dict[str, Any], tags=TAGS)
async def jwks(request: web.Request) -> dict[str, Any]:
    return request.app[SIGNING_KEY].jwks()


def setup_certificates(app: web.Application) -> None:
    """The signing key is read once at start-up; a malformed one stops the app there."""
    from lms.certificates.credential import load_signing_key

    app[SIGNING_KEY] = load_signing_key(app[CONFIG])
    app.router.add_routes(routes)
