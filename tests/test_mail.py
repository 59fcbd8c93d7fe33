"""Email: templates, MIME content and headers, SMTP (plain, STARTTLS, login) against a real aiosmtpd server."""

from __future__ import annotations

import ssl
import subprocess
import uuid
from collections.abc import Callable
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lms.config import Settings
from lms.db import Database, Row
from lms.mail.errors import MailRejected, MailUnavailable, TemplateError
from lms.mail.message import Attachment, message_id_header
from lms.mail.render import TEMPLATES, Renderer
from lms.mail.service import Mailer
from lms.mail.transport import FolderTransport, SmtpTransport, make_transport
from lms.tables import email_log
from tests.builders import make_user
from tests.conftest import Servers, SmtpCatcher, SmtpServer, make_config, running_smtp_server

# What callers pass for each template (the send_email contract).
CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {"full_name": "Ada"},
    "certificate_ready": {
        "full_name": "Ada", "course_title": "Rust", "certificate_number": "LMS-0000-0000-0000-0000",
        "verify_url": "https://lms.test/verify/LMS-0000-0000-0000-0000",
    },
    "email_verification": {"full_name": "Ada", "verify_url": "https://lms.test/verify?t=1", "expires_hours": 24},
    "password_reset": {"full_name": "Ada", "reset_url": "https://lms.test/reset?t=1", "expires_minutes": 30},
    "mfa_code": {"full_name": "Ada", "code": "493027", "expires_minutes": 10},
    "enrollment_confirmation": {"full_name": "Ada", "course_title": "Rust", "course_url": "https://lms.test/c/rust"},
    "course_completion": {"full_name": "Ada", "course_title": "Rust", "course_url": "https://lms.test/c/rust"},
    "quiz_result": {
        "full_name": "Ada", "quiz_title": "Ownership", "percentage": 85.5, "is_passed": True,
        "attempt_url": "https://lms.test/a/1",
    },
    "payment_confirmation": {"full_name": "Ada", "amount": "49.00", "currency": "USD", "description": "Rust course"},
    "weekly_progress": {
        "full_name": "Ada",
        "courses": [{"title": "Rust", "progress_percentage": 40.0}, {"title": "Go", "progress_percentage": 5}],
    },
    "course_reminder": {
        "full_name": "Ada", "course_title": "Rust", "course_url": "https://lms.test/c/rust", "days_inactive": 9,
    },
}  # fmt: skip


def renderer() -> Renderer:
    return Renderer(app_name="LMS", base_url="https://lms.test/")


def decoded(value: str) -> str:
    return str(make_header(decode_header(value)))


def smtp_config(servers: Servers, server: SmtpServer, **smtp: Any) -> Settings:
    return make_config(servers, smtp=server.settings() | smtp)


@pytest.fixture
def mailers(db: Database) -> Callable[[Settings], Mailer]:
    def build(config: Settings) -> Mailer:
        return Mailer(db=db, transport=make_transport(config.smtp), renderer=renderer(), sender=config.smtp.mail_from)

    return build


async def log_row(db: Database, message_id: str) -> Row | None:
    async with db.connection() as conn:
        return await conn.fetch_one(select(email_log).where(email_log.c.message_id == message_id))


# -- templates -------------------------------------------------------------


@pytest.mark.no_services
def test_every_email_type_renders_a_subject_a_text_part_and_an_html_part() -> None:
    assert set(CONTEXTS) == set(TEMPLATES)
    for name, context in CONTEXTS.items():
        email = renderer().render(name, context)
        assert email.subject and "\n" not in email.subject, name
        assert "Hello Ada," in email.text and "Hello Ada," in email.html, name
        assert email.html.lstrip().startswith("<!DOCTYPE html>"), name
        # One layout for all: the footer comes from it.
        assert "account on LMS" in email.text and "account on" in email.html, name


@pytest.mark.no_services
def test_template_values_are_escaped_in_html_but_not_in_text() -> None:
    email = renderer().render(
        "enrollment_confirmation", CONTEXTS["enrollment_confirmation"] | {"course_title": "C & <b>"}
    )
    assert "C &amp; &lt;b&gt;" in email.html and "<b>" not in email.html
    assert '"C & <b>"' in email.text


@pytest.mark.no_services
def test_an_unknown_template_or_a_missing_context_key_fails_loudly() -> None:
    with pytest.raises(TemplateError, match="unknown email template 'nope'"):
        renderer().render("nope", {"full_name": "Ada"})
    with pytest.raises(TemplateError, match="reset_url"):
        renderer().render("password_reset", {"full_name": "Ada", "expires_minutes": 30})


@pytest.mark.no_services
def test_quiz_result_says_whether_the_student_passed() -> None:
    passed = renderer().render("quiz_result", CONTEXTS["quiz_result"])
    failed = renderer().render("quiz_result", CONTEXTS["quiz_result"] | {"is_passed": False, "percentage": 40})
    assert passed.subject == "Ownership: 85.5% (passed)" and "You passed" in passed.text
    assert failed.subject == "Ownership: 40% (not passed)" and "did not pass" in failed.html


@pytest.mark.no_services
def test_message_ids_are_derived_from_the_log_key() -> None:
    assert message_id_header("<abc@lms>", "x.test") == "<abc@lms>"
    assert message_id_header("abc123", "x.test") == "<abc123@x.test>"
    odd = message_id_header("weekly_progress:42:2026-W47", "x.test")
    assert odd == message_id_header("weekly_progress:42:2026-W47", "x.test")
    assert odd.startswith("<") and odd.endswith("@x.test>") and ":" not in odd


# -- sending ------------------------------------------------------------------


async def test_an_email_arrives_with_both_parts_headers_non_ascii_and_an_attachment(
    servers: Servers, smtp_server: SmtpServer, mailers: Any, db: Database
) -> None:
    user = await make_user(db, full_name="Zoë Ångström-Łukasz 李")
    mailer = mailers(smtp_config(servers, smtp_server))
    outcome = await mailer.send(
        template="course_completion",
        to=user["email"],
        context={
            "full_name": user["full_name"],
            "course_title": "Élan & Ünïcode 数学",
            "course_url": "https://lms.test/c",
        },
        message_id="msg-1",
        user_id=str(user["id"]),
        attachments=[Attachment("certificate.pdf", b"%PDF-1.7 test", "application/pdf")],
    )
    assert outcome == "sent"
    [caught] = smtp_server.catcher.wait_for(1)
    assert caught.rcpt_tos == [user["email"]]
    message = caught.message
    assert decoded(message["Subject"]) == "You completed Élan & Ünïcode 数学"
    assert message["To"].addresses[0].display_name == "Zoë Ångström-Łukasz 李"
    assert message["To"].addresses[0].addr_spec == user["email"]
    assert message["From"] == "LMS <no-reply@lms.local>"
    assert message["Message-ID"] == "<msg-1@lms.local>"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "Zoë Ångström-Łukasz 李" in text.get_content() and "Élan & Ünïcode 数学" in text.get_content()
    assert "Élan &amp; Ünïcode 数学" in html.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "certificate.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == b"%PDF-1.7 test"
    row = await log_row(db, "msg-1")
    assert row is not None
    assert (row["status"], row["attempts"], row["user_id"], row["to_address"]) == ("sent", 1, user["id"], user["email"])
    assert row["template"] == "course_completion" and row["sent_at"] is not None and row["error"] is None


async def test_sending_the_same_message_id_twice_sends_once(
    servers: Servers, smtp_server: SmtpServer, mailers: Any, db: Database
) -> None:
    mailer = mailers(smtp_config(servers, smtp_server))
    first = await mailer.send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="once")
    second = await mailer.send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="once")
    assert (first, second) == ("sent", "duplicate")
    assert len(smtp_server.messages) == 1
    row = await log_row(db, "once")
    assert row is not None and row["status"] == "sent"


async def test_a_template_error_is_logged_as_failed(
    servers: Servers, smtp_server: SmtpServer, mailers: Any, db: Database
) -> None:
    mailer = mailers(smtp_config(servers, smtp_server))
    with pytest.raises(TemplateError):
        await mailer.send(template="mfa_code", to="a@example.com", context={"full_name": "A"}, message_id="bad")
    row = await log_row(db, "bad")
    assert row is not None
    assert row["status"] == "failed" and "code" in row["error"] and "expires_minutes" in row["error"]
    assert smtp_server.messages == []


async def test_a_bad_recipient_address_is_rejected_for_good(
    servers: Servers, smtp_server: SmtpServer, mailers: Any, db: Database
) -> None:
    mailer = mailers(smtp_config(servers, smtp_server))
    with pytest.raises(MailRejected):
        await mailer.send(template="welcome", to="not an address", context={"full_name": "A"}, message_id="addr")
    row = await log_row(db, "addr")
    assert row is not None and row["status"] == "failed"


async def test_a_refused_login_is_transient_and_stays_queued_until_the_last_attempt(
    servers: Servers, mailers: Any, db: Database
) -> None:
    catcher = SmtpCatcher(username="lms", password="s3cret")
    catcher.refuse_logins = True
    with running_smtp_server(catcher) as server:
        mailer = mailers(smtp_config(servers, server))
        with pytest.raises(MailUnavailable, match="login refused"):
            await mailer.send(
                template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="m", final_attempt=False
            )
        row = await log_row(db, "m")
        assert row is not None and (row["status"], row["attempts"]) == ("queued", 1) and "535" in row["error"]
        catcher.refuse_logins = False  # the operator fixed the credentials
        assert (
            await mailer.send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="m")
            == "sent"
        )
        row = await log_row(db, "m")
        assert row is not None and (row["status"], row["attempts"], row["error"]) == ("sent", 2, None)
        assert len(catcher.messages) == 1 and len(catcher.login_attempts) >= 2


async def test_a_server_that_is_down_is_transient(servers: Servers, mailers: Any, db: Database) -> None:
    from lms.devservers import free_port

    config = make_config(
        servers, smtp={"transport": "smtp", "host": "127.0.0.1", "port": free_port(), "timeout_seconds": 2}
    )
    with pytest.raises(MailUnavailable):
        await mailers(config).send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="d")
    row = await log_row(db, "d")
    assert row is not None and row["status"] == "failed"  # final_attempt defaults to True


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_starttls_and_login_from_the_settings(servers: Servers, tmp_path: Path, db: Database) -> None:
    cert, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    catcher = SmtpCatcher(username="lms", password="s3cret")
    with running_smtp_server(catcher, tls_context=context, require_starttls=True) as server:
        config = smtp_config(servers, server, start_tls=True, cert_bundle=str(cert))
        transport = SmtpTransport(config.smtp)
        mailer = Mailer(db=db, transport=transport, renderer=renderer(), sender=config.smtp.mail_from)
        assert (
            await mailer.send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="tls")
            == "sent"
        )
        assert len(catcher.messages) == 1
        # Without STARTTLS the server refuses: the setting is really used.
        plain = Mailer(db=db, transport=SmtpTransport(config.smtp.model_copy(update={"start_tls": False})),
                       renderer=renderer(), sender=config.smtp.mail_from)  # fmt: skip
        with pytest.raises(MailUnavailable):
            await plain.send(template="welcome", to="a@example.com", context={"full_name": "A"}, message_id="plain")


async def test_the_folder_transport_writes_one_eml_per_message(servers: Servers, tmp_path: Path, db: Database) -> None:
    config = make_config(servers, smtp={"transport": "folder", "outbox_dir": str(tmp_path / "mail")})
    transport = make_transport(config.smtp)
    assert isinstance(transport, FolderTransport)
    mailer = Mailer(db=db, transport=transport, renderer=renderer(), sender=config.smtp.mail_from)
    message_id = uuid.uuid4().hex
    await mailer.send(template="mfa_code", to="a@example.com", context=CONTEXTS["mfa_code"], message_id=message_id)
    [path] = list((tmp_path / "mail").glob("*.eml"))
    assert path.name.startswith("mfa_code-") and message_id in path.name
    content = path.read_bytes()
    assert b"493027" in content and b"Subject: Your LMS sign-in code" in content
