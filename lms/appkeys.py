"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from lms.config import Settings
from lms.db import Database
from lms.metrics import Metrics

CONFIG = web.AppKey("config", Settings)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", Redis)
METRICS = web.AppKey("metrics", Metrics)

REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
