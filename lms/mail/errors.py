"""What can go wrong with an email, split by whether trying again can help."""

from __future__ import annotations


class MailError(Exception):
    """Base for mail errors."""


class TemplateError(MailError):
    """Unknown template or missing context: a caller's bug; retrying cannot fix it."""


class MailRejected(MailError):
    """The server refused the message for good (5xx: bad recipient, policy)."""


class MailUnavailable(MailError):
    """The server could not take the message now (down, timeout, 4xx, refused login): retry later."""
