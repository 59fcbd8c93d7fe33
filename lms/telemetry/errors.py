"""Error tracking with Sentry (the official ``sentry-sdk``), on when ``LMS_SENTRY_DSN`` is set.

Every process the CLI starts calls :func:`setup_error_tracking`: ``lms
serve`` with the aiohttp integration (the request's method, route and
headers on the event), ``lms worker`` and ``lms scheduler`` with logging
alone. What becomes an event is what the platform logs at ERROR: an
unexpected error of a request (``lms.api.problems`` answers 500 and logs it
with its traceback), a task dead-lettered (``jobs.retry``), a live actor or
scheduler loop that failed. A 4xx is the client's mistake and is never an
event; nor is a failed attempt that will be retried (Taskiq's own log line
of each attempt is ignored).

Each event carries the environment, the release (``lms@<package
version>``) and, as tags, the fields of the log context
(``lms.logs.bind_log_context``): ``request_id``, ``job_id``, ``task``,
``session_id``; a known ``user_id`` becomes the event's user id.

Personal data is scrubbed before an event or breadcrumb leaves
(:func:`scrub`): values under keys such as ``password``, ``token``,
``email``, ``authorization`` are replaced, and any text has e-mail
addresses, bearer tokens, JWTs and secret-looking query parameters blanked.
Request bodies and local variables are never sent.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lms import __version__
from lms.config import Settings
from lms.logs import current_log_context

log = logging.getLogger(__name__)

FILTERED = "[Filtered]"
# Keys whose values are never sent (compared lower-case, "-" as "_").
SENSITIVE_KEYS = frozenset(
    {
        "password", "passwd", "new_password", "current_password", "old_password", "password_hash",
        "secret", "secret_key", "client_secret", "webhook_secret", "hmac_secret", "signing_key", "private_key",
        "token", "access_token", "refresh_token", "id_token", "player_token", "reset_token", "verify_token",
        "api_key", "apikey", "x_api_key", "authorization", "proxy_authorization", "cookie", "set_cookie",
        "email", "email_address", "to_address", "mfa_code", "otp", "pin", "signature", "hmac", "dsn",
        "stripe_signature", "myfatoorah_signature", "card", "card_number", "cvc",
    }
)  # fmt: skip
# Blanked wherever they appear in text: messages, exception values, breadcrumbs, URLs.
_PATTERNS = (
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[token]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [token]"),
    (re.compile(r"(?i)\b(token|password|secret|signature|hmac|key|code|pin|dsn)=[^&\s\"']+"), r"\1=[Filtered]"),
)
# Log-context fields that become tags (the user id goes to the event's user).
TAGGED_FIELDS = ("request_id", "job_id", "task", "session_id")
# Taskiq logs every failed attempt, retried ones too; the final failure is
# logged (with its traceback) by jobs.retry.
IGNORED_LOGGERS = ("taskiq.receiver.receiver",)


def scrub_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(value: Any) -> Any:
    """The same structure with personal data and secrets blanked."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            k: FILTERED if isinstance(k, str) and k.lower().replace("-", "_") in SENSITIVE_KEYS else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def _tag_with_context(event: dict[str, Any]) -> None:
    context = current_log_context()
    tags = event.setdefault("tags", {})
    for name in TAGGED_FIELDS:
        if context.get(name) is not None:
            tags.setdefault(name, str(context[name]))
    if context.get("user_id") is not None:
        event["user"] = {"id": str(context["user_id"])}


def before_send(event: Any, hint: Any) -> Any:
    _tag_with_context(event)
    return scrub(event)


def before_breadcrumb(crumb: Any, hint: Any) -> Any:
    return scrub(crumb)


def setup_error_tracking(config: Settings, process: str) -> bool:
    """Start the Sentry client for this process when a DSN is configured; True if on."""
    dsn = config.sentry.dsn.get_secret_value() if config.sentry.dsn else ""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.aiohttp import AioHttpIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration, ignore_logger

    # Breadcrumbs from warnings up: one from every access line cost more than the rest together.
    integrations: list[Any] = [LoggingIntegration(level=logging.WARNING, event_level=logging.ERROR)]
    if process == "serve":
        integrations.append(AioHttpIntegration())
    sentry_sdk.init(
        dsn=dsn,
        environment=config.sentry.environment or config.env,
        release=f"lms@{__version__}",
        integrations=integrations,
        # Only what is listed above (and the SDK's defaults: logging, dedupe,
        # excepthook...): nothing patched by surprise because it is installed.
        auto_enabling_integrations=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        # Errors only: traces are OpenTelemetry's (lms/telemetry/tracing.py).
        traces_sample_rate=None,
    )
    sentry_sdk.set_tag("process", process)
    for name in IGNORED_LOGGERS:
        ignore_logger(name)
    log.info("error tracking on (environment %s)", config.sentry.environment or config.env)
    return True


def shutdown_error_tracking() -> None:
    """Send what is queued and stop the client (tests; processes flush at exit by themselves)."""
    import sentry_sdk

    client = sentry_sdk.get_client()
    client.close(timeout=5)
    sentry_sdk.get_global_scope().set_client(None)
