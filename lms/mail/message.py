"""Build the MIME message: text and HTML alternatives, attachments, a stable Message-ID."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from lms.mail.errors import MailRejected
from lms.mail.render import RenderedEmail

# RFC 5322 dot-atom text: what may stand left of the @ in a Message-ID.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "lms.local"


def message_id_header(message_id: str, domain: str) -> str:
    """The Message-ID header for an email_log message id.

    Derived, not random: a redelivered task sends the same Message-ID, so a
    mail client that sees the message twice can tell it is one message.
    """
    if _MSG_ID.fullmatch(message_id):
        return message_id
    if _DOT_ATOM.fullmatch(message_id):
        return f"<{message_id}@{domain}>"
    return f"<{uuid.uuid5(uuid.NAMESPACE_URL, message_id).hex}@{domain}>"


def compose(
    rendered: RenderedEmail,
    *,
    sender: str,
    to: str,
    to_name: str | None,
    message_id: str,
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    # The SMTP policy writes CRLF line ends and RFC 2047 encoded words for
    # non-ASCII headers (a subject or a name in any script).
    message = EmailMessage(policy=policy.SMTP)
    try:
        recipient = Address(display_name=" ".join((to_name or "").split()), addr_spec=to.strip())
    except (ValueError, IndexError) as err:
        raise MailRejected(f"invalid recipient address {to!r}") from err
    if not recipient.username or not recipient.domain:
        raise MailRejected(f"invalid recipient address {to!r}")
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id_header(message_id, sender_domain(sender))
    message["X-LMS-Template"] = rendered.template
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(
            item.content, maintype=maintype, subtype=subtype or "octet-stream", filename=item.filename
        )
    return message
