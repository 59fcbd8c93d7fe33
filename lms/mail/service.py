"""Send one templated email, exactly once per message id as far as the log can tell."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lms.db import Database
from lms.mail import log as email_log
from lms.mail.errors import MailRejected, MailUnavailable, TemplateError
from lms.mail.message import Attachment, compose
from lms.mail.render import Renderer
from lms.mail.transport import Transport

log = logging.getLogger(__name__)

Outcome = Literal["sent", "duplicate"]


@dataclass(frozen=True)
class Mailer:
    """What sending needs; a worker builds one at start-up."""

    db: Database
    transport: Transport
    renderer: Renderer
    sender: str

    async def send(
        self,
        *,
        template: str,
        to: str,
        context: Mapping[str, Any],
        message_id: str,
        user_id: str | None = None,
        attachments: Sequence[Attachment] = (),
        final_attempt: bool = True,
    ) -> Outcome:
        """Render, record, send, record.

        The log row (unique message id) is the idempotency key: a message
        already marked sent is not sent again. A worker that dies between the
        SMTP hand-over and the "sent" mark sends it once more on redelivery;
        the Message-ID header is the same both times.
        """
        user = _parse_user_id(user_id)
        try:
            rendered = self.renderer.render(template, context)
            message = compose(
                rendered,
                sender=self.sender,
                to=to,
                to_name=str(context.get("full_name") or ""),
                message_id=message_id,
                attachments=attachments,
            )
        except (TemplateError, MailRejected) as err:
            async with self.db.transaction() as conn:
                await email_log.record_failure(
                    conn, message_id=message_id, user_id=user, to=to, template=template,
                    subject=f"({template})", error=str(err),
                )  # fmt: skip
            raise
        async with self.db.transaction() as conn:
            if not await email_log.claim(
                conn, message_id=message_id, user_id=user, to=to, template=template, subject=rendered.subject
            ):
                log.info("email %s was already sent; not sending it again", message_id)
                return "duplicate"
        try:
            await self.transport.send(message)
        except (MailUnavailable, MailRejected) as err:
            final = final_attempt or isinstance(err, MailRejected)
            async with self.db.transaction() as conn:
                await email_log.mark_error(conn, message_id=message_id, error=str(err), final=final)
            raise
        async with self.db.transaction() as conn:
            await email_log.mark_sent(conn, message_id=message_id)
        log.info("email %s (%s) sent to %s", message_id, template, to)
        return "sent"


def _parse_user_id(user_id: str | None) -> uuid.UUID | None:
    if not user_id:
        return None
    try:
        return uuid.UUID(str(user_id))
    except ValueError:
        log.warning("send_email got a user_id that is not a UUID (%r); logging without it", user_id)
        return None
