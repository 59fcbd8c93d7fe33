"""Alembic, configured from the settings (no alembic.ini at the top level).

The environment and revisions (the repository's ``migrations/`` folder) are
installed as the ``lms.migrations`` package (setup.py), so a wheel and an
editable install both find them through the import system.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool


def sqlalchemy_url(url: str) -> str:
    """Settings hold a libpq URL (postgresql://); SQLAlchemy needs the driver named (its default is psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg2://", 1) if url.startswith("postgresql://") else url


def migrations_dir() -> str:
    return str(files("lms.migrations"))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir())
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None: not migrated yet)."""
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def upgrade(database_url: str, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade; returns the revisions before and after."""
    before = current_revision(database_url)
    command.upgrade(alembic_config(database_url), revision)
    return before, current_revision(database_url)


def describe(before: str | None, after: str | None) -> str:
    if before == after:
        return f"database already at the latest revision ({after})"
    return f"database upgraded from {before or 'an empty schema'} to {after}"


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
