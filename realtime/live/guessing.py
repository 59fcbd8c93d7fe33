"""Pin guessing: ``join_session`` failures (unknown pin) counted per client address in Redis.

Counted across connections and instances (a guesser opens new sockets, on
any instance) in a fixed window: at most ``live.pin_failures_per_address``
per ``live.pin_failure_window_seconds``. Past that, every join from the
address is refused with ``rate_limited`` until the window ends, before the
pin is looked at (else a right pin would still answer and the limit would
protect nothing). Successful joins are never counted: a whole school
reaches the server from one address.

A Redis failure skips the check (logged), as the REST rate limits do.
"""

from __future__ import annotations

import hashlib
import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from lms.aio import raise_if_cancelling
from lms.config import LiveSettings
from realtime.live.errors import LiveError

log = logging.getLogger(__name__)

# KEYS: counter; ARGV: window ms -> failures in the window, this one included
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class PinGuesses:
    def __init__(self, redis: Redis, config: LiveSettings) -> None:
        self.redis = redis
        self.limit = config.pin_failures_per_address
        self.window_ms = config.pin_failure_window_seconds * 1000
        self.prefix = f"{config.redis_prefix}:pin-failures"
        self._count = redis.register_script(_COUNT)

    def _key(self, address: str) -> str:
        return f"{self.prefix}:{hashlib.sha256(address.encode()).hexdigest()[:24]}"

    async def check(self, address: str) -> None:
        """:class:`LiveError` ``rate_limited`` while ``address`` has used up its failures."""
        if not self.limit:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self._key(address))
                pipe.pttl(self._key(address))
                count, ttl_ms = await pipe.execute()
        except (RedisError, OSError) as err:
            raise_if_cancelling(err)
            log.warning("pin guessing check skipped, Redis unavailable: %s", err)
            return
        if count is not None and int(count) >= self.limit:
            wait = max(1, math.ceil(max(int(ttl_ms), 0) / 1000))
            raise LiveError("rate_limited", f"Too many wrong pins from your network; try again in {wait} s.")

    async def failed(self, address: str) -> None:
        if not self.limit:
            return
        try:
            await self._count(keys=[self._key(address)], args=[self.window_ms])
        except (RedisError, OSError) as err:
            raise_if_cancelling(err)
            log.warning("pin guessing not counted, Redis unavailable: %s", err)
