"""Where messages go: an SMTP server (aiosmtplib) or, in development, a folder of .eml files."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from lms.config import SmtpSettings
from lms.mail.errors import MailRejected, MailUnavailable

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message over; raise MailUnavailable (retry) or MailRejected (give up)."""


class SmtpTransport:
    """One SMTP session per message, TLS and login as configured."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        s = self.settings
        password = s.password.get_secret_value() if s.password is not None else None
        try:
            await aiosmtplib.send(
                message,
                hostname=s.host,
                port=s.port,
                username=s.username or None,
                password=password if s.username else None,
                use_tls=s.use_tls,
                # False means never: without it aiosmtplib upgrades whenever
                # the server offers STARTTLS, and fails on a bad certificate.
                start_tls=s.start_tls and not s.use_tls,
                validate_certs=s.validate_certs,
                cert_bundle=s.cert_bundle,
                timeout=s.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise _classify(min((r.code for r in err.recipients), default=550), str(err)) from err
        except aiosmtplib.SMTPAuthenticationError as err:
            # A refused login is usually an expired or rotated credential that
            # an operator fixes; retry (with backoff) rather than drop the mail.
            raise MailUnavailable(f"SMTP login refused: {err.code} {err.message}") from err
        except aiosmtplib.SMTPConnectError as err:
            raise MailUnavailable(f"SMTP server {s.host}:{s.port} unavailable: {err}") from err
        except aiosmtplib.SMTPResponseException as err:
            raise _classify(err.code, f"{err.code} {err.message}") from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise MailUnavailable(f"SMTP server {s.host}:{s.port} unavailable: {err}") from err


def _classify(code: int, detail: str) -> MailRejected | MailUnavailable:
    if 400 <= code < 500:
        return MailUnavailable(f"SMTP server deferred the message: {detail}")
    return MailRejected(f"SMTP server refused the message: {detail}")


class FolderTransport:
    """Writes each message to ``<directory>/<template>-<message id>.eml`` (development)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        # File I/O stays off the event loop.
        path = await asyncio.to_thread(self._write, message)
        log.info("mail for %s written to %s", message["To"], path)

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        ident = re.sub(r"[^A-Za-z0-9._-]+", "_", str(message["Message-ID"]).strip("<>"))
        # Named after the Message-ID: a redelivered task overwrites, not duplicates.
        path = self.directory / f"{message['X-LMS-Template'] or 'mail'}-{ident}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(message.as_bytes())
        os.replace(tmp, path)
        return path


def make_transport(settings: SmtpSettings) -> Transport:
    if settings.transport == "folder":
        return FolderTransport(Path(settings.outbox_dir))
    return SmtpTransport(settings)
