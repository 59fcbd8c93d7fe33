"""The migration stairway: every revision up, down and up again, on an empty database."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from lms.migrate import alembic_config, downgrade, migrations_dir, upgrade
from lms.tables import metadata
from tests.conftest import Servers

pytestmark = pytest.mark.no_services


def _tables(url: str) -> set[str]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_stairway_every_revision_up_down_up(servers: Servers) -> None:
    url = servers.create_database("lms_stairway")
    script = ScriptDirectory.from_config(alembic_config(url))
    revisions = list(reversed(list(script.walk_revisions("base", "heads"))))
    assert revisions, "no migrations found"
    for revision in revisions:
        upgrade(url, revision.revision)
        downgrade(url, revision.down_revision or "base")
        upgrade(url, revision.revision)
    assert _tables(url) == set(metadata.tables)


def test_head_matches_the_metadata(servers: Servers) -> None:
    """Autogenerate finds nothing to add: the migrations and lms.tables agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = servers.create_database("lms_compare")
    upgrade(url)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_the_revisions_are_found_as_the_lms_migrations_package() -> None:
    # setup.py maps the top-level folder to lms.migrations; an editable install finds it there
    # (a wheel carries it as lms/migrations: tests/test_wheel.py).
    found = Path(migrations_dir()).resolve()
    assert found == Path(__file__).resolve().parent.parent / "migrations"
    assert (found / "env.py").is_file() and sorted(found.glob("versions/0001_*.py"))
