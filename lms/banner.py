"""The start-up block ``lms serve`` and ``lms up`` print: where to go, where mail goes, the demo accounts.

Text for a person at a terminal. In JSON-logging mode (production) ``lms
serve`` logs the same facts as one record instead (see ``lms.cli``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from lms import __version__
from lms.config import Settings
from lms.demo import Demo

Rows = list[tuple[str, str]]


def public_links(config: Settings) -> Rows:
    base = config.http.public_base_url.rstrip("/")
    rows = [("Home", f"{base}/")]
    if config.http.docs_enabled:
        rows.append(("API docs", f"{base}/api/docs"))
    rows += [("Join a live quiz", f"{base}/play"), ("Readiness", f"{base}/api/v1/ready")]
    return rows


def mail_destination(config: Settings) -> str:
    smtp = config.smtp
    if smtp.transport == "folder":
        return f"{Path(smtp.outbox_dir).resolve()} (one .eml file per message)"
    return f"SMTP {smtp.host}:{smtp.port}"


def without_credentials(url: str) -> str:
    """A server URL fit to print: scheme, host, port and path, never the password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def demo_rows(demo: Demo, base_url: str) -> Rows:
    urls = demo.urls(base_url)
    by_role: dict[str, list[str]] = {}
    for account in demo.accounts:
        by_role.setdefault(account.role, []).append(account.email)
    rows: Rows = [("Demo accounts", f"password {demo.password} for each")]
    rows += [(role if len(emails) == 1 else f"{role}s", ", ".join(emails)) for role, emails in by_role.items()]
    rows += [
        ("Course", demo.course_title),
        ("Its dashboard", f"{urls['dashboard']} (sign in as the instructor)"),
        ("Live quiz pin", demo.pin),
        ("Join it", urls["play"]),
        ("Host it", f"{urls['host']} (sign in as the instructor)"),
    ]
    return rows


def render(title: str, *sections: Sequence[tuple[str, str]]) -> str:
    """``title`` then aligned ``label  value`` rows, a blank line between sections."""
    rows = [row for section in sections for row in section]
    width = max((len(label) for label, _ in rows), default=0) + 2
    lines = ["", f"  {title}", ""]
    for section in sections:
        if not section:
            continue
        lines += [f"  {label.ljust(width)}{value}" for label, value in section]
        lines.append("")
    return "\n".join(lines)


def serve_block(config: Settings, listening: str) -> str:
    return render(
        f"{config.app_name} {__version__} serving on {listening} ({config.env})",
        public_links(config),
        [("Mail", mail_destination(config))],
    )
