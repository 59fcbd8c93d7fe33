"""The Redis clients lms/clients.py builds, against a real Redis."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest
import redis

from lms.clients import blocking_redis_client, redis_client
from tests.conftest import Servers, make_config


async def test_new_redis_connections_name_the_client_without_reading_package_metadata(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 8.1 looked its own version up (on disk, on the event loop) for every connection it made.
    reads: list[str] = []
    version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: reads.append(name) or version(name))
    settings = make_config(servers).redis
    for client in (redis_client(settings), redis_client(settings, max_connections=4)):
        try:
            assert all(await asyncio.gather(*(client.ping() for _ in range(4))))  # the pool grows
            connection = await client.connection_pool.get_connection()
            assert connection.driver_info is not None
            assert connection.driver_info.lib_version == redis.__version__
            await client.connection_pool.release(connection)
        finally:
            await client.aclose()
    blocking = blocking_redis_client(settings, timeout=2)
    try:
        assert blocking.ping()
    finally:
        blocking.close()
    assert reads == []
