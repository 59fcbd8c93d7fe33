"""Certificates: requests, the rendering job, PDFs in any script, verification, revocation, Open Badges 3.0."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from jobs.broker import build_inline_broker
from jobs.queue import InlineJobQueue
from jobs.tasks import all_specs
from lms.app import create_app
from lms.appkeys import CONFIG
from lms.certificates import service
from lms.certificates.numbers import ALPHABET, MalformedNumber, new_number, parse_number
from lms.certificates.render import CertificateContent, PdfRenderer
from lms.config import ConfigError, Settings, load_config
from lms.db import Database, Row
from lms.effects import Effects
from lms.mail.render import Renderer
from lms.mail.service import Mailer
from lms.mail.transport import make_transport
from lms.storage import open_storage
from lms.tables import certificates, email_log, lessons
from realtime.emitter import Emitter
from realtime.fanout import room_channel
from realtime.rooms import USERS_NAMESPACE, user_room
from tests.builders import make_course, make_enrollment, make_user, signed_in
from tests.conftest import Servers, SmtpServer, make_config
from tests.node import CHROMIUM, needs_chromium

# --- numbers -------------------------------------------------------------------


@pytest.mark.no_services
def test_numbers_are_unique_and_read_back_forgivingly() -> None:
    numbers = {new_number() for _ in range(2000)}
    assert len(numbers) == 2000
    number = next(iter(numbers))
    assert number.startswith("LMS-") and len(number) == 23
    assert parse_number(number.lower().replace("-", " ")) == number
    assert parse_number(number.replace("0", "O").replace("1", "I")) == number


@pytest.mark.no_services
@given(st.data())
def test_any_single_mistyped_symbol_is_told_apart_from_an_unknown_number(data: st.DataObject) -> None:
    number = new_number()
    symbols = number.replace("LMS-", "").replace("-", "")
    position = data.draw(st.integers(0, len(symbols) - 1))
    replacement = data.draw(st.sampled_from([c for c in ALPHABET if c != symbols[position]]))
    typo = symbols[:position] + replacement + symbols[position + 1 :]
    with pytest.raises(MalformedNumber) as caught:
        parse_number(typo)
    assert caught.value.mistyped


@pytest.mark.no_services
@given(st.text(max_size=60))
def test_arbitrary_text_is_a_number_or_a_clear_refusal(text: str) -> None:
    try:
        number = parse_number(text)
    except MalformedNumber as err:
        message = str(err)
        number = None
    if number is None:
        assert message.startswith(("A certificate number", "This number"))
    else:
        assert parse_number(number) == number


# --- fixtures: the worker's parts, real ones -----------------------------------


@pytest.fixture(scope="session")
async def pdf_renderer() -> AsyncIterator[PdfRenderer]:
    renderer = PdfRenderer(processes=1)
    yield renderer
    await renderer.close()


@pytest.fixture
async def issuer(config: Settings, db: Database, pdf_renderer: PdfRenderer, smtp_server: SmtpServer) -> Any:
    cfg = make_config_from(config, smtp=smtp_server.settings())
    storage = await open_storage(cfg.storage)
    emitter = Emitter.open(cfg)
    mailer = Mailer(
        db=db,
        transport=make_transport(cfg.smtp),
        renderer=Renderer(app_name=cfg.app_name, base_url=cfg.http.public_base_url),
        sender=cfg.smtp.mail_from,
    )
    effects = worker_effects(cfg, emitter)
    yield service.Issuer(db=db, storage=storage, renderer=pdf_renderer, mailer=mailer, effects=effects)
    await emitter.close()
    await storage.close()


def worker_effects(cfg: Settings, emitter: Emitter) -> Effects:
    """A worker's effects: its events through the emitter (issuing queues no task)."""
    return Effects(cfg, InlineJobQueue(build_inline_broker(cfg), all_specs()), emitter)


def make_config_from(config: Settings, **sections: dict[str, Any]) -> Settings:
    data = config.model_dump(mode="python")
    data["auth"]["secret_key"] = config.secret_key
    for name, values in sections.items():
        data[name].update(values)
    return Settings.model_validate(data)


async def completed_enrollment(db: Database, *, name: str = "Zoë Ñúñez", title: str = "Statistics") -> tuple[Row, Row]:
    student = await make_user(db, full_name=name)
    instructor = await make_user(db, role="instructor", full_name="Ada Lovelace")
    course = await make_course(db, instructor, title=title, is_published=True, lessons=1)
    enrollment = await make_enrollment(db, student, course, status="completed", completed_at=datetime.now(UTC))
    return student, enrollment


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


async def certificate_rows(db: Database) -> list[Row]:
    async with db.connection() as conn:
        return await conn.fetch_all(select(certificates))


# --- the whole path: completion → job → PDF, email, notification --------------


async def test_completing_a_course_issues_the_certificate_with_email_and_notification(
    inline_client: Any, db: Database, redis: Any, smtp_server: SmtpServer
) -> None:
    client = inline_client
    student, headers = await signed_in(client, db, full_name="Łukasz Żółć")
    course = await make_course(db, await make_user(db, role="instructor", full_name="Grace Hopper"),
                               title="Probability", is_published=True, lessons=1)  # fmt: skip
    enrollment = await make_enrollment(db, student, course)
    async with db.connection() as conn:
        lesson_id = await conn.fetch_val(select(lessons.c.id).where(lessons.c.course_id == course["id"]))
    fanout = redis.pubsub()
    channel = client.app[CONFIG].realtime.channel  # a user's notifications go on the user room's channel
    await fanout.subscribe(channel, room_channel(channel, USERS_NAMESPACE, user_room(student["id"])))
    done = await client.post(f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson_id}/complete", headers=headers)
    assert done.status == 200
    (certificate,) = await certificate_rows(db)
    assert certificate["status"] == "issued" and certificate["pdf_path"] == f"certificates/{certificate['id']}.pdf"
    mails = {m.message["X-LMS-Template"]: m for m in smtp_server.catcher.wait_for(2)}
    attachment = next(mails["certificate_ready"].message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    text = pdf_text(attachment.get_content())
    for expected in ("Łukasz Żółć", "Probability", "Grace Hopper", certificate["certificate_number"], "/verify/"):
        assert expected in text
    note = await notification(fanout)
    assert note["type"] == "certificate_ready" and note["data"]["certificate_id"] == str(certificate["id"])
    await fanout.aclose()
    mine = await (await client.get("/api/v1/certificates/my-certificates", headers=headers)).json()
    assert mine["total"] == 1 and mine["items"][0]["download_url"].endswith("/download")
    pdf = await client.get(mine["items"][0]["download_url"], headers=headers)
    assert pdf.status == 200 and pdf.content_type == "application/pdf" and (await pdf.read()).startswith(b"%PDF")
    detail = await (await client.get(f"/api/v1/enrollments/{enrollment['id']}", headers=headers)).json()
    assert detail["certificate_issued_at"] is not None


async def notification(fanout: Any, wait: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(wait):
        while True:
            message = await fanout.get_message(timeout=1.0)
            if message is None or message["type"] != "message":
                continue
            with contextlib.suppress(ValueError):
                emit = json.loads(message["data"])
                if isinstance(emit, dict) and emit.get("event") == "notification":
                    data: dict[str, Any] = emit["data"][0] if isinstance(emit["data"], list) else emit["data"]
                    return data


# --- requests ------------------------------------------------------------------


async def test_generate_is_for_the_student_or_an_admin_of_a_completed_enrollment(client: Any, db: Database) -> None:
    student, enrollment = await completed_enrollment(db)
    student_headers = await signed_in_as(client, student)
    _, stranger = await signed_in(client, db)
    _, admin = await signed_in(client, db, role="admin")
    url = f"/api/v1/certificates/enrollments/{enrollment['id']}/generate"
    assert (await client.post(url)).status == 401
    assert (await client.post(url, headers=stranger)).status == 404
    assert (await client.post("/api/v1/certificates/enrollments/nope/generate", headers=admin)).status == 404
    accepted = await client.post(url, headers=student_headers)
    assert accepted.status == 202
    body = await accepted.json()
    assert body["status"] == "pending" and body["download_url"] is None and body["student_name"] == "Zoë Ñúñez"
    again = await client.post(url, headers=admin)
    assert again.status == 409 and (await again.json())["certificate_id"] == body["id"]
    active_student = await make_user(db)
    course = await make_course(db, await make_user(db, role="instructor"), is_published=True, lessons=1)
    active = await make_enrollment(db, active_student, course)
    not_done = await client.post(
        f"/api/v1/certificates/enrollments/{active['id']}/generate", headers=await signed_in_as(client, active_student)
    )
    assert not_done.status == 409 and "active" in (await not_done.json())["detail"]


async def signed_in_as(client: Any, user: Row) -> dict[str, str]:
    from tests.builders import bearer, login

    return bearer((await login(client, user["email"]))["access_token"])


async def test_concurrent_generate_requests_on_two_instances_record_one_certificate(
    instances: list[Any], db: Database
) -> None:
    student, enrollment = await completed_enrollment(db)
    headers = await signed_in_as(instances[0].http, student)
    url = f"/api/v1/certificates/enrollments/{enrollment['id']}/generate"
    answers = await asyncio.gather(*(instances[i % 2].http.post(url, headers=headers) for i in range(12)))
    assert sorted(a.status for a in answers) == [202] + [409] * 11
    assert len(await certificate_rows(db)) == 1


async def test_the_completion_request_is_recorded_once_and_re_queues_a_pending_one(client: Any, db: Database) -> None:
    from lms.jobqueue import JOBS

    _, enrollment = await completed_enrollment(db)
    jobs = client.app[JOBS]
    assert await service.request_certificate(db, jobs, enrollment["id"]) is True
    assert await service.request_certificate(db, jobs, enrollment["id"]) is False  # redelivered: still one
    active = await make_enrollment(
        db, await make_user(db), await make_course(db, await make_user(db, role="instructor"))
    )
    assert await service.request_certificate(db, jobs, active["id"]) is False
    assert [r["enrollment_id"] for r in await certificate_rows(db)] == [enrollment["id"]]


# --- the job -------------------------------------------------------------------


async def test_issuing_twice_at_once_makes_one_certificate_and_one_email(
    issuer: Any, db: Database, smtp_server: SmtpServer
) -> None:
    _, enrollment = await completed_enrollment(db)
    async with db.transaction() as conn:
        from lms.certificates import queries

        row = await queries.record_request(conn, enrollment["id"])
    assert row is not None
    outcomes = await asyncio.gather(*(service.issue(issuer, row["id"]) for _ in range(3)))
    assert "issued" in outcomes
    assert await service.issue(issuer, row["id"]) == "already_issued"
    (issued,) = await certificate_rows(db)
    assert issued["status"] == "issued" and issued["issued_at"] is not None
    async with db.connection() as conn:
        sent = await conn.fetch_val(
            select(func.count()).select_from(email_log).where(email_log.c.template == "certificate_ready")
        )
    assert sent == 1 and len(smtp_server.catcher.wait_for(1)) == 1


async def test_the_pool_renders_outside_the_calling_process(pdf_renderer: PdfRenderer) -> None:
    content = CertificateContent("LMS", "Ada", "Course", "Grace", datetime.now(UTC), new_number(), "http://x/verify/1")
    assert (await pdf_renderer.render(content)).startswith(b"%PDF")
    pool: Any = pdf_renderer._pool
    assert pool is not None and os.getpid() not in set(pool._processes)


async def test_a_pool_process_that_dies_is_replaced(pdf_renderer: PdfRenderer) -> None:
    content = CertificateContent("LMS", "Ada", "Course", "Grace", datetime.now(UTC), new_number(), "http://x/verify/1")
    await pdf_renderer.render(content)
    pool: Any = pdf_renderer._pool
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
    assert (await pdf_renderer.render(content)).startswith(b"%PDF")
    assert pdf_renderer._pool is not pool


ARABIC = "محمد عبد الله"
NAMES = ["Zoë Łukasz-Ñúñez Ørsted", ARABIC, "王小明", "山田 太郎", "김민준"]


@pytest.mark.parametrize("name", NAMES)
async def test_names_in_any_script_are_in_the_pdf(pdf_renderer: PdfRenderer, name: str) -> None:
    content = CertificateContent("LMS", name, "Statistics", "Ada", datetime(2026, 11, 2, tzinfo=UTC),
                                 new_number(), "https://lms.example.com/verify/LMS-X")  # fmt: skip
    pdf = await pdf_renderer.render(content)
    text = pdf_text(pdf)
    if name == ARABIC:
        # Right-to-left text comes out of a PDF in glyph order; every letter is there, shaped below.
        line = next(t for t in text.splitlines() if "م" in t)
        assert Counter(line.replace(" ", "")) == Counter(name.replace(" ", ""))
        assert arabic_letters_take_contextual_forms(pdf)
    else:
        assert name in text
    assert "2 November 2026" in text and "Statistics" in text


def arabic_letters_take_contextual_forms(pdf: bytes) -> bool:
    """Shaping happened: some Arabic letter is drawn by two glyphs (e.g. initial and medial meem)."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    for ref in fonts.values():
        font = ref.get_object()
        if "/ToUnicode" not in font:
            continue
        cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
        glyphs_per_letter: Counter[str] = Counter()
        for line in cmap.splitlines():
            parts = line.replace("<", " ").replace(">", " ").split()
            if len(parts) == 2 and len(parts[1]) == 4:
                char = chr(int(parts[1], 16))
                if "\u0600" <= char <= "\u06ff":
                    glyphs_per_letter[char] += 1
        if any(count > 1 for count in glyphs_per_letter.values()):
            return True
    return False


# --- verification, revocation, downloads -----------------------------------------


async def issued_certificate(issuer: Any, db: Database, **kwargs: Any) -> Row:
    from lms.certificates import queries

    _, enrollment = await completed_enrollment(db, **kwargs)
    async with db.transaction() as conn:
        row = await queries.record_request(conn, enrollment["id"])
    assert row is not None
    await service.issue(issuer, row["id"])
    async with db.connection() as conn:
        details = await queries.get_details(conn, certificate_id=row["id"])
    assert details is not None
    return details


async def test_verification_tells_valid_revoked_mistyped_and_unknown(client: Any, issuer: Any, db: Database) -> None:
    certificate = await issued_certificate(issuer, db, name="王小明")
    number = certificate["certificate_number"]
    ok = await (await client.get(f"/api/v1/certificates/verify/{number}")).json()
    assert ok["valid"] is True and ok["revoked"] is False and ok["student_name"] == "王小明"
    assert set(ok) >= {"valid", "student_name", "course_title", "completion_date", "issued_at", "revoked"}
    lower = await client.get(f"/api/v1/certificates/verify/{number.lower()}")
    assert lower.status == 200
    symbols = number.replace("-", "")
    typo = symbols[:5] + ("0" if symbols[5] != "0" else "1") + symbols[6:]
    mistyped = await client.get(f"/api/v1/certificates/verify/{typo}")
    assert mistyped.status == 422 and (await mistyped.json())["mistyped"] is True
    unknown = await client.get(f"/api/v1/certificates/verify/{new_number()}")
    assert unknown.status == 404
    # A NUL in a path segment names nothing (lms.text: the one rule for every path): 404.
    assert (await client.get("/api/v1/certificates/verify/%00%00")).status == 404

    page = await client.get(f"/verify/{number}")
    html = await page.text()
    assert page.status == 200 and "Valid certificate" in html and "王小明" in html
    assert (await client.get(f"/verify/{new_number()}")).status == 404

    _, admin = await signed_in(client, db, role="admin")
    _, student = await signed_in(client, db)
    url = f"/api/v1/certificates/{certificate['id']}/revoke"
    assert (await client.post(url, json={"reason": "plagiarism"}, headers=student)).status == 403
    assert (await client.post(url, json={"reason": "  "}, headers=admin)).status == 422
    assert (await client.post(url, json={"reason": "a\x00b"}, headers=admin)).status == 422
    revoked = await client.post(url, json={"reason": "Plagiarism"}, headers=admin)
    assert revoked.status == 200 and (await revoked.json())["is_revoked"] is True
    again = await (await client.post(url, json={"reason": "other"}, headers=admin)).json()
    assert again["revocation_reason"] == "Plagiarism"
    after = await (await client.get(f"/api/v1/certificates/verify/{number}")).json()
    assert after["valid"] is False and after["revoked"] is True
    assert "revoked" in await (await client.get(f"/verify/{number}")).text()


async def test_only_the_student_and_admins_see_and_download_it_from_any_instance(
    aiohttp_client: Any, config: Settings, issuer: Any, db: Database
) -> None:
    certificate = await issued_certificate(issuer, db)
    first = await aiohttp_client(create_app(config))
    second = await aiohttp_client(create_app(config))
    student = await signed_in_as(first, {"email": await student_email(db, certificate)})
    _, stranger = await signed_in(first, db)
    url = f"/api/v1/certificates/{certificate['id']}"
    assert (await second.get(url, headers=stranger)).status == 404
    assert (await second.get(f"{url}/download", headers=stranger)).status == 404
    download = await second.get(f"{url}/download", headers=student)
    assert download.status == 200 and download.headers["Content-Type"] == "application/pdf"
    assert "Zoë Ñúñez" in pdf_text(await download.read())


async def student_email(db: Database, certificate: Row) -> str:
    return str(certificate["student_email"])


async def test_pdfs_are_stored_in_s3_too(
    servers: Servers, db: Database, pdf_renderer: PdfRenderer, smtp_server: SmtpServer,
    s3_storage_settings: dict[str, Any], aiohttp_client: Any,
) -> None:  # fmt: skip
    cfg = make_config(servers, storage=s3_storage_settings, smtp=smtp_server.settings())
    client = await aiohttp_client(create_app(cfg))  # creates the bucket
    storage = await open_storage(cfg.storage)
    emitter = Emitter.open(cfg)
    mailer = Mailer(db=db, transport=make_transport(cfg.smtp),
                    renderer=Renderer(app_name="LMS", base_url="http://x"), sender=cfg.smtp.mail_from)  # fmt: skip
    s3_issuer = service.Issuer(db, storage, pdf_renderer, mailer, worker_effects(cfg, emitter))
    certificate = await issued_certificate(s3_issuer, db)
    headers = await signed_in_as(client, {"email": certificate["student_email"]})
    download = await client.get(f"/api/v1/certificates/{certificate['id']}/download", headers=headers)
    assert download.status == 200 and (await download.read()).startswith(b"%PDF")
    await emitter.close()
    await storage.close()


# --- Open Badges 3.0 ---------------------------------------------------------------


async def test_the_credential_verifies_offline_with_the_published_key(client: Any, issuer: Any, db: Database) -> None:
    certificate = await issued_certificate(issuer, db, name="محمد عبد الله", title="Algebra")
    headers = await signed_in_as(client, {"email": certificate["student_email"]})
    answer = await client.get(f"/api/v1/certificates/{certificate['id']}/credential", headers=headers)
    assert answer.status == 200
    body = await answer.json()
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key
    header = jwt.get_unverified_header(body["jwt"])
    assert header["alg"] == "EdDSA" and header["kid"] == key["kid"]
    claims = jwt.decode(body["jwt"], jwt.PyJWK(key).key, algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["type"] == ["VerifiableCredential", "OpenBadgeCredential"]
    assert claims["iss"] == claims["issuer"]["id"] and claims["jti"] == claims["id"]
    assert claims["id"].endswith(f"/api/v1/certificates/verify/{certificate['certificate_number']}")
    subject = claims["credentialSubject"]
    assert subject["achievement"]["name"] == "Algebra"
    assert {"identityType": "name", "identityHash": "محمد عبد الله"}.items() <= subject["identifier"][0].items()
    assert certificate["student_email"] not in json.dumps(claims)  # the email is only there hashed
    assert body["credential"] == {k: v for k, v in claims.items() if k not in ("iss", "jti", "nbf")}
    forged = body["jwt"][:-4] + ("AAAA" if not body["jwt"].endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(forged, jwt.PyJWK(key).key, algorithms=["EdDSA"])
    issuer_profile = await (await client.get("/api/v1/certificates/issuer")).json()
    assert issuer_profile["id"] == claims["iss"] and issuer_profile["publicKey"]["x"] == key["x"]

    _, admin = await signed_in(client, db, role="admin")
    await client.post(f"/api/v1/certificates/{certificate['id']}/revoke", json={"reason": "x"}, headers=admin)
    gone = await client.get(f"/api/v1/certificates/{certificate['id']}/credential", headers=headers)
    assert gone.status == 410


async def test_a_pending_certificate_has_no_credential_or_pdf_yet(client: Any, db: Database) -> None:
    student, enrollment = await completed_enrollment(db)
    headers = await signed_in_as(client, student)
    body = await (await client.post(f"/api/v1/certificates/enrollments/{enrollment['id']}/generate",
                                    headers=headers)).json()  # fmt: skip
    assert (await client.get(f"/api/v1/certificates/{body['id']}/credential", headers=headers)).status == 409
    assert (await client.get(f"/api/v1/certificates/{body['id']}/download", headers=headers)).status == 409
    assert (await (await client.get(f"/api/v1/certificates/verify/{body['certificate_number']}")).json())[
        "valid"
    ] is False


@pytest.mark.no_services
def test_production_needs_a_signing_key_and_refuses_a_bad_one() -> None:
    from lms.certificates.credential import load_signing_key

    environ = {"LMS_AUTH_SECRET_KEY": "x" * 48, "LMS_HTTP_TRUSTED_HOSTS": "lms.example.com"}
    with pytest.raises(ConfigError, match="LMS_CERTIFICATES_SIGNING_KEY"):
        load_config("production", environ=environ)
    bad = load_config("dev", environ={"LMS_CERTIFICATES_SIGNING_KEY": "not-a-key"})
    with pytest.raises(ConfigError, match="LMS_CERTIFICATES_SIGNING_KEY"):
        load_signing_key(bad)
    seed = "A" * 43  # 32 bytes of base64url
    good = load_config("production", environ={**environ, "LMS_CERTIFICATES_SIGNING_KEY": seed})
    assert load_signing_key(good).public_jwk["crv"] == "Ed25519"


@pytest.mark.slow
@needs_chromium
async def test_the_verify_page_renders_in_a_real_browser(client: Any, issuer: Any, db: Database) -> None:
    certificate = await issued_certificate(issuer, db, name="محمد عبد الله")
    url = str(client.make_url(f"/verify/{certificate['certificate_number']}"))
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--dump-dom", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    dom, _ = await asyncio.wait_for(process.communicate(), timeout=90)
    page = dom.decode()
    assert "Valid certificate" in page and "محمد عبد الله" in page and certificate["certificate_number"] in page
