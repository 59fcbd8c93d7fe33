"""Email templates: a subject line, a text part and an HTML part per email type.

Each type names the context keys its callers must pass. An unknown template
or a missing key raises :class:`TemplateError` before anything is sent, and
``StrictUndefined`` catches a key a template uses but the list forgot. The
parts live in ``lms/mail/templates/<name>.txt`` and ``<name>.html``; each
extends one layout (``layout.txt`` / ``layout.html``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from lms.mail.errors import TemplateError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class EmailTemplate:
    name: str
    subject: str  # jinja2 source, rendered with the same context as the body
    required: frozenset[str]


def _template(name: str, subject: str, *required: str) -> EmailTemplate:
    return EmailTemplate(name, subject, frozenset(required))


TEMPLATES: Mapping[str, EmailTemplate] = {
    t.name: t
    for t in (
        _template("welcome", "Welcome to {{ app_name }}, {{ full_name }}", "full_name"),
        _template(
            "email_verification", "Confirm your email address for {{ app_name }}",
            "full_name", "verify_url", "expires_hours",
        ),
        _template(
            "password_reset", "Reset your {{ app_name }} password", "full_name", "reset_url", "expires_minutes"
        ),
        _template("mfa_code", "Your {{ app_name }} sign-in code", "full_name", "code", "expires_minutes"),
        _template(
            "enrollment_confirmation", "You're enrolled in {{ course_title }}",
            "full_name", "course_title", "course_url",
        ),
        _template(
            "course_completion", "You completed {{ course_title }}", "full_name", "course_title", "course_url"
        ),
        _template(
            "quiz_result", "{{ quiz_title }}: {{ percentage }}% ({{ 'passed' if is_passed else 'not passed' }})",
            "full_name", "quiz_title", "percentage", "is_passed", "attempt_url",
        ),
        _template(
            "payment_confirmation", "Payment received: {{ amount }} {{ currency }}",
            "full_name", "amount", "currency", "description",
        ),
        _template(
            "certificate_ready", "Your certificate for {{ course_title }}",
            "full_name", "course_title", "certificate_number", "verify_url",
        ),
        _template("weekly_progress", "Your week on {{ app_name }}", "full_name", "courses"),
        _template(
            "course_reminder", "Pick up where you left off: {{ course_title }}",
            "full_name", "course_title", "course_url", "days_inactive",
        ),
    )
}  # fmt: skip


@dataclass(frozen=True)
class RenderedEmail:
    template: str
    subject: str
    text: str
    html: str


class Renderer:
    """Renders the email types; one per process (jinja2 caches compiled templates)."""

    def __init__(self, *, app_name: str, base_url: str, directory: Path = TEMPLATE_DIR) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            # HTML parts are escaped; text parts and subjects are not.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals.update(app_name=app_name, base_url=base_url.rstrip("/"))
        self._subjects = {name: self._env.from_string(t.subject) for name, t in TEMPLATES.items()}

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        spec = TEMPLATES.get(name)
        if spec is None:
            raise TemplateError(f"unknown email template {name!r}; known: {', '.join(sorted(TEMPLATES))}")
        missing = spec.required - context.keys()
        if missing:
            raise TemplateError(f"email template {name!r} needs context keys: {', '.join(sorted(missing))}")
        try:
            # Whitespace (newlines included) collapses: a subject is one header line.
            subject = " ".join(self._subjects[name].render(context).split())
            text = self._env.get_template(f"{name}.txt").render(context)
            html = self._env.get_template(f"{name}.html").render(context)
        except jinja2.TemplateError as err:
            raise TemplateError(f"email template {name!r}: {err}") from err
        return RenderedEmail(template=name, subject=subject, text=text, html=html)
