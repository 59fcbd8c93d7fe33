"""Connections to PostgreSQL and Redis, built from the settings: the one place that opens them.

The web app (``lms/app.py``), the worker and the scheduler (``jobs/``), the
live runtime and the fan-out (``realtime/``) all get their clients here, so
a pool size, a timeout or a Redis topology is read in one place.

Redis topologies (``redis.url``; README "Scaling out"):

- ``redis://[:password@]host:port/db``, ``rediss://…``, ``unix:///path?db=0``: one server;
- ``redis+cluster://[:password@]host:port[,host:port…]`` (``rediss+cluster``): a Redis
  Cluster; the nodes named are where discovery starts;
- ``redis+sentinel://[:password@]host:port[,host:port…]/<master name>[/db]``
  (``rediss+sentinel``): the master the sentinels name, looked up again
  after a failover. The password is the master's; sentinels that need one of
  their own take ``?sentinel_password=…``.

Every client is typed :class:`redis.asyncio.Redis`: a ``RedisCluster``
speaks the same commands (keys of one multi-key command or script share a
hash slot: README "Scaling out"), so callers are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis as blocking
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo

from lms.config import DatabaseSettings, RedisSettings
from lms.db import Database

Topology = Literal["server", "cluster", "sentinel"]
HEALTH_CHECK_SECONDS = 30
# What each connection names itself with (CLIENT SETINFO), worked out once. Left to redis-py 8.1,
# every new connection read the package's metadata from disk (importlib.metadata, 0.3 ms idle and
# more under load) on the event loop: a pool growing under a burst stalled every request.
DRIVER_INFO = DriverInfo(name="redis-py", lib_version=blocking.__version__)


async def open_database(settings: DatabaseSettings, *, pool_max: int | None = None) -> Database:
    """The aiopg pool every process uses; ``pool_max`` for one-shot commands (one connection)."""
    return await Database.connect(
        settings.url,
        min_size=min(settings.pool_min, pool_max or settings.pool_min),
        max_size=pool_max or settings.pool_max,
        statement_timeout_ms=settings.statement_timeout_ms,
        acquire_timeout=settings.acquire_timeout_seconds,
        connect_timeout=settings.connect_timeout_seconds,
        transaction_pooler=settings.transaction_pooler,
    )


@dataclass(frozen=True)
class RedisTarget:
    """What ``redis.url`` names."""

    topology: Topology
    nodes: tuple[tuple[str, int], ...]
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_password: str | None = None
    url: str = ""


def parse_redis_url(url: str) -> RedisTarget:
    """Raises ValueError for a URL that names no Redis this module can reach."""
    parts = urlsplit(url)
    scheme, _, flavour = parts.scheme.partition("+")
    if scheme not in ("redis", "rediss", "unix") or flavour not in ("", "cluster", "sentinel"):
        raise ValueError(
            f"unknown Redis URL scheme {parts.scheme!r} (redis, rediss, unix, redis+cluster, redis+sentinel)"
        )
    if not flavour:
        return RedisTarget("server", (), url=url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    default_port = 26379 if flavour == "sentinel" else 6379
    nodes = tuple(_host_port(item, default_port) for item in hosts.split(",") if item)
    if not nodes:
        raise ValueError(f"{parts.scheme} URL names no host")
    query = parse_qs(parts.query)
    path = [p for p in parts.path.split("/") if p]
    master = None
    db = 0
    if flavour == "sentinel":
        if not path:
            raise ValueError("redis+sentinel URL needs the master's name: redis+sentinel://host:26379/<master>[/db]")
        master = unquote(path[0])
        db = int(path[1]) if len(path) > 1 else 0
    elif path:
        raise ValueError("a Redis Cluster has only database 0: redis+cluster://host:port[,host:port...]")
    return RedisTarget(
        topology=cast(Topology, flavour),
        nodes=nodes,
        master=master,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=scheme == "rediss",
        sentinel_password=next(iter(query.get("sentinel_password", [])), None),
        url=url,
    )


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # [::1]:7000
        host, _, rest = item[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = item.partition(":")
    return host, int(port) if port else default_port


def redis_client(settings: RedisSettings, *, retries: bool = True, max_connections: int | None = None) -> Redis:
    """A Redis client for ``redis.url``, whatever its topology.

    The deliberate differences between callers are the two arguments:

    - ``retries`` (the default): redis-py's own retries with backoff, so a
      request or a task rides over a pooled connection Redis dropped. The
      fan-out publisher and listener pass ``False``: redis-py reports a
      cancelled read as a ConnectionError and its retry loop would swallow
      the cancellation (a listener that never stops); they retry in their
      own loops, cancellation-aware.
    - ``max_connections``: a pool that makes callers wait for a free
      connection instead of failing: the live runtime's, where thousands of
      answers arrive in the last second of a question (and each session's
      owner holds a connection while it blocks on its mailbox). On a
      cluster the limit is per node.
    """
    target = parse_redis_url(settings.url)
    timeout = settings.socket_timeout_seconds
    retry = Retry(NoBackoff(), 0) if not retries else None  # None: the library's default
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "decode_responses": False,
        "driver_info": DRIVER_INFO,
    }
    if retry is not None:
        common["retry"] = retry
    if target.topology == "cluster":
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            max_connections=max_connections or 2**31,
            **common,
        )
        return cast(Redis, cluster)
    if target.topology == "sentinel":
        assert target.master is not None
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            sentinel_kwargs={
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "password": target.sentinel_password,
                "ssl": target.ssl,
                "driver_info": DRIVER_INFO,
            },
        )
        pool_options: dict[str, Any] = {}
        if max_connections is not None:
            pool_options = {"max_connections": max_connections, "timeout": timeout}
        master = sentinel.master_for(
            target.master,
            redis_class=SentinelMaster,
            connection_pool_class=SentinelBlockingPool if max_connections is not None else SentinelConnectionPool,
            db=target.db,
            username=target.username,
            password=target.password,
            ssl=target.ssl,
            **pool_options,
            **common,
        )
        master.named_by = sentinel
        return cast(Redis, master)
    if max_connections is not None:
        pool = BlockingConnectionPool.from_url(settings.url, max_connections=max_connections, timeout=timeout, **common)
        return Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
    return Redis.from_url(settings.url, **common)


def blocking_redis_client(settings: RedisSettings, *, timeout: float) -> blocking.Redis:
    """A blocking client for a thread of its own (the live lease keeper), for any topology of ``redis.url``."""
    target = parse_redis_url(settings.url)
    common: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "driver_info": DRIVER_INFO}
    if target.topology == "cluster":
        cluster = blocking.RedisCluster(
            startup_nodes=[blocking.cluster.ClusterNode(host, port) for host, port in target.nodes],  # type: ignore[no-untyped-call]
            username=target.username, password=target.password, ssl=target.ssl, **common,
        )  # fmt: skip
        return cast(blocking.Redis, cluster)
    if target.topology == "sentinel":
        assert target.master is not None
        sentinel = blocking.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            list(target.nodes),
            sentinel_kwargs={**common, "password": target.sentinel_password, "ssl": target.ssl},
        )
        master = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master, db=target.db, username=target.username, password=target.password, ssl=target.ssl, **common
        )
        return cast(blocking.Redis, master)
    return blocking.Redis.from_url(settings.url, **common)


class SentinelMaster(Redis):
    """The master's client; closing it closes the clients of the sentinels that name the master too."""

    named_by: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.named_by is not None:
            for client in self.named_by.sentinels:
                await client.aclose()


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):  # type: ignore[misc]
    """The master's connections, waiting for a free one at ``max_connections`` (redis-py has no such class)."""
