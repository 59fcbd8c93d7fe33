"""Settings: one typed, frozen object built once at start-up and handed down.

Defaults live in ``lms/settings/<env>.toml``, shipped inside the package
(``LMS_ENV`` picks the file: ``dev``, ``test`` or ``production``;
``LMS_CONFIG_DIR`` names another folder of such files). Any key can be overridden with an ``LMS_*``
environment variable: ``LMS_<SECTION>_<KEY>`` for a key of a section
(``LMS_DATABASE_POOL_MAX``) and ``LMS_<KEY>`` for a top-level key
(``LMS_DEBUG``). Secrets may only come from the environment.

This is the only module that reads the environment.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

# Found through the package, so an installed wheel reads its own copy.
DEFAULTS_DIR: Traversable = files("lms") / "settings"
ENV_PREFIX = "LMS_"
# Variables with our prefix that are not settings: the file selector and the
# test harness's own knobs.
NON_SETTING_VARIABLES = {"LMS_ENV", "LMS_CONFIG_DIR"}
NON_SETTING_PREFIXES = ("LMS_TEST_",)

# Development and test run without configuration; production refuses this value.
INSECURE_DEV_SECRET = "insecure-development-secret-key-do-not-use-in-production"
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """The settings are missing, malformed or unsafe; the message names the setting."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def secret(default: str | None = None) -> Any:
    """A field that must come from the environment, never from a settings file."""
    return Field(default=SecretStr(default) if default is not None else None, json_schema_extra={"secret": True})


class DatabaseSettings(Section):
    url: str = "postgresql://lms:lms@127.0.0.1:5432/lms"
    pool_min: int = Field(default=1, ge=0)
    pool_max: int = Field(default=10, ge=1)
    # Server-side limit on any one statement; the client timeout sits above it
    # so that PostgreSQL cancels cleanly before aiopg has to drop the connection.
    statement_timeout_ms: int = Field(default=15_000, ge=100)
    acquire_timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # True behind a pooler in transaction mode (PgBouncer pool_mode = transaction):
    # nothing is set per session; transactions SET LOCAL what they need (lms/db.py).
    transaction_pooler: bool = False


class RedisSettings(Section):
    # One server (redis://, rediss://, unix://), a cluster (redis+cluster://h:p,h:p)
    # or the master Sentinel names (redis+sentinel://h:26379,h:26379/<master>/<db>): lms/clients.py.
    url: str = "redis://127.0.0.1:6379/0"
    socket_timeout_seconds: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _known_topology(cls, value: str) -> str:
        from lms.clients import parse_redis_url

        parse_redis_url(value)
        return value


class AuthSettings(Section):
    secret_key: SecretStr | None = secret()
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    issuer: str = "lms"
    access_token_minutes: int = Field(default=15, ge=1)
    refresh_token_days: int = Field(default=30, ge=1)
    password_reset_minutes: int = Field(default=30, ge=1)
    email_verification_minutes: int = Field(default=1440, ge=1)
    mfa_challenge_minutes: int = Field(default=10, ge=1)
    mfa_max_attempts: int = Field(default=5, ge=1)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)
    password_min_length: int = Field(default=10, ge=8)
    # When Redis cannot say whether a token was revoked: refuse (True, with a
    # 503 that says to retry: the token is not known to be bad) or allow.
    revocation_fail_closed: bool = True
    # A refresh token presented again this soon after its rotation (two tabs
    # refreshing at once) gets a sibling in its family instead of revoking it.
    refresh_reuse_grace_seconds: int = Field(default=10, ge=0, le=300)
    # Each instance reuses a token's check (revocation, account) this long:
    # a revocation, deactivation or role change reaches every instance within
    # it (lms/auth/principals.py). At most a second; 0 checks every request.
    principal_cache_seconds: float = Field(default=1.0, ge=0, le=1.0)


class HttpSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_base_url: str = "http://127.0.0.1:8000"
    cors_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    cors_max_age_seconds: int = 600
    # Empty means any Host header is accepted (development only).
    trusted_hosts: tuple[str, ...] = ()
    # Addresses (or CIDR networks) of proxies whose X-Forwarded-For we believe.
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    docs_enabled: bool = True
    hsts_enabled: bool = False
    # `lms serve` runs on uvloop (libuv) rather than asyncio's own loop: less CPU per
    # socket event (bench/live.py, bench/fanout.py). Off: the standard library loop.
    uvloop: bool = True


class RateLimitRule(Section):
    name: str
    path_prefix: str
    limit: int = Field(ge=1)
    period_seconds: int = Field(ge=1)
    # account_ip: per account and client address (a stranger elsewhere cannot spend the owner's budget).
    key: Literal["ip", "account", "account_ip", "user"]
    # "failures": only failed requests (4xx but 429) spend the budget (lms/api/ratelimit.py).
    count: Literal["all", "failures"] = "all"
    methods: tuple[str, ...] = ("POST",)


class RateLimitSettings(Section):
    enabled: bool = True
    redis_prefix: str = "ratelimit"
    # Applied per authenticated user (else per IP) to every /api/v1 request.
    default_per_minute: int = Field(default=300, ge=1)
    # Gateways' webhooks are exempt: they arrive in bursts from a few addresses
    # and are refused by their signature, not by a budget.
    exempt_paths: tuple[str, ...] = ("/api/v1/health", "/api/v1/ready", "/metrics", "/api/v1/payments/webhooks/")
    rules: tuple[RateLimitRule, ...] = ()


class UploadSettings(Section):
    max_upload_mb: int = Field(default=100, ge=1)
    allowed_extensions: tuple[str, ...] = ("mp4", "avi", "mov", "pdf", "doc", "docx", "jpg", "jpeg", "png")


class StorageSettings(Section):
    provider: Literal["local", "s3"] = "local"
    # Uploaded files and certificate PDFs (keys files/… and certificates/…).
    local_dir: str = ".lms/uploads"
    download_url_expire_seconds: int = Field(default=900, ge=1)
    s3_bucket: str = "lms"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = secret()
    s3_secret_access_key: SecretStr | None = secret()


class CertificateSettings(Section):
    # Ed25519 key signing the Open Badges 3.0 credentials: a PEM private key,
    # or the 32-byte seed in base64url. Production requires it; development
    # and tests derive one from auth.secret_key.
    signing_key: SecretStr | None = secret()
    # WeasyPrint processes per worker (rendering is CPU-bound; about one per core).
    render_processes: int = Field(default=1, ge=1, le=64)
    render_timeout_seconds: float = Field(default=60.0, gt=0)


class SmtpSettings(Section):
    # "smtp" sends through the server below; "folder" writes .eml files to
    # outbox_dir so that a newcomer can read mail without any server.
    transport: Literal["smtp", "folder"] = "smtp"
    outbox_dir: str = ".lms/mail"
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = secret()
    use_tls: bool = False
    start_tls: bool = False
    timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "LMS <no-reply@lms.local>"
    # TLS peers are verified; cert_bundle names a CA file for a private CA.
    validate_certs: bool = True
    cert_bundle: str | None = None


class PlanSettings(Section):
    """A subscription plan: what it costs per interval."""

    amount: Decimal = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    interval: Literal["day", "week", "month", "year"] = "month"

    @model_validator(mode="after")
    def _currency_decimals(self) -> PlanSettings:
        from lms.money import normalize

        normalize(self.amount, self.currency)
        return self


class PaymentSettings(Section):
    currency: str = "USD"
    # Pending payments older than this are looked up at their gateway by the
    # reconciliation job; 0 looks up every pending payment.
    reconcile_after_seconds: int = Field(default=1800, ge=0)
    # Stored webhook events still unsettled this long after they arrived (their
    # job was lost) are settled by the reconciliation job.
    unsettled_event_after_seconds: int = Field(default=60, ge=0)
    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    # Calls to a gateway's API (checkout, refund, status) give up after this.
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    # Retry-After of the 503 answered when a gateway cannot be reached.
    gateway_retry_after_seconds: int = Field(default=30, ge=1)
    # Where gateways send the buyer back (on http.public_base_url), with
    # ?payment_id=...&result=success|cancelled.
    return_path: str = Field(default="/payments/return", pattern=r"^/")
    stripe_api_base: str = "https://api.stripe.com"
    stripe_secret_key: SecretStr | None = secret()
    stripe_webhook_secret: SecretStr | None = secret()
    paymob_api_base: str = "https://accept.paymob.com"
    paymob_secret_key: SecretStr | None = secret()
    paymob_public_key: str | None = None
    paymob_hmac_secret: SecretStr | None = secret()
    paymob_integration_id: int | None = None
    myfatoorah_api_base: str = "https://api.myfatoorah.com"
    myfatoorah_api_key: SecretStr | None = secret()
    myfatoorah_webhook_secret: SecretStr | None = secret()
    # ExecutePayment's PaymentMethodId (the card method of the account).
    myfatoorah_payment_method_id: int = Field(default=2, ge=1)
    # Subscription plans by name: [payments.plans.monthly] amount, currency, interval.
    plans: dict[str, PlanSettings] = Field(default_factory=dict)


class MetricsSettings(Section):
    enabled: bool = True
    # Empty: anyone may read /metrics. Otherwise addresses or CIDR networks.
    allow_from: tuple[str, ...] = ()
    # `lms worker` and `lms scheduler` serve their own /metrics on this
    # address and these ports (0: not served). `lms up` runs both on one
    # machine, so they differ; `--metrics-port` overrides them per process.
    process_host: str = "127.0.0.1"
    worker_port: int = Field(default=0, ge=0, le=65535)
    scheduler_port: int = Field(default=0, ge=0, le=65535)


class SentrySettings(Section):
    """Error tracking (lms/telemetry/errors.py): on when a DSN is set."""

    dsn: SecretStr | None = secret()
    # Default: the settings environment (dev, test, production).
    environment: str | None = None


class OtelSettings(Section):
    """OpenTelemetry traces (lms/telemetry/tracing.py): off unless an OTLP endpoint is known."""

    # OTLP/HTTP base URL (http://collector:4318); spans go to <it>/v1/traces.
    exporter_otlp_endpoint: str | None = None
    # Share of traces kept, decided where a trace starts (an HTTP request, a
    # task sent from no trace); what follows keeps its parent's decision.
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    # Requests that start no trace (regular expressions on the path).
    excluded_paths: tuple[str, ...] = ("^/metrics$", "^/api/v1/health$", "^/api/v1/ready$", "^/socket\\.io/")
    # Set by load_config when the standard variables name an endpoint
    # (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; not
    # with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none): the exporter
    # then reads them, and the other OTEL_* variables, itself.
    standard_variables: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.exporter_otlp_endpoint) or self.standard_variables


CRON_PATTERN = r"^\S+( \S+){4}$"


class JobsSettings(Section):
    # "broker" kicks tasks to Redis streams; "inline" runs them in-process
    # (tests of a single module only; production refuses it).
    mode: Literal["broker", "inline"] = "broker"
    stream_prefix: str = "lms:jobs"
    # A live worker keeps its messages fresh; one that holds a message this
    # long without doing so is dead, and another worker takes the message.
    idle_redelivery_seconds: int = Field(default=30, ge=1)
    # SIGTERM to exit: in-flight tasks may finish within it, the rest go back.
    shutdown_grace_seconds: int = Field(default=20, ge=1)
    # Retries after the first run for declared transient errors (SMTP down,
    # timeouts): a task runs at most max_retries + 1 times, then dead-letters.
    max_retries: int = Field(default=5, ge=0)
    # Backoff before retry n: between half and all of base * 2**(n-1), capped.
    retry_base_seconds: float = Field(default=5.0, gt=0)
    retry_max_seconds: float = Field(default=900.0, gt=0)
    result_ttl_seconds: int = Field(default=3600, ge=1)
    # Tasks run at once per worker process, per queue (so slow work cannot
    # take the slots of emails).
    emails_concurrency: int = Field(default=20, ge=1)
    default_concurrency: int = Field(default=10, ge=1)
    slow_concurrency: int = Field(default=2, ge=1)
    # Cron schedules (minute hour day month weekday) in schedule_timezone.
    schedule_timezone: str = "UTC"
    weekly_progress_cron: str = Field(default="0 9 * * 1", pattern=CRON_PATTERN)
    course_reminders_cron: str = Field(default="0 10 * * *", pattern=CRON_PATTERN)
    token_cleanup_cron: str = Field(default="30 3 * * *", pattern=CRON_PATTERN)
    # Timed quiz attempts left open past their deadline are graded as they stood.
    abandoned_attempts_cron: str = Field(default="*/5 * * * *", pattern=CRON_PATTERN)
    # Ends and stores live sessions no instance runs any more (realtime.live.abandoned).
    abandoned_live_sessions_cron: str = Field(default="*/10 * * * *", pattern=CRON_PATTERN)
    # Pending payments and unsettled webhook events are settled from the gateways' APIs.
    reconcile_payments_cron: str = Field(default="*/5 * * * *", pattern=CRON_PATTERN)
    reminder_inactive_days: int = Field(default=7, ge=1)
    # Revoked refresh tokens are kept this long (reuse detection), then deleted.
    revoked_token_retention_days: int = Field(default=7, ge=0)

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class QuizSettings(Section):
    # A timed attempt submitted this long after its deadline is still
    # accepted (network latency, a clock a little off); later, it is closed
    # and graded as it stood at the deadline.
    submit_grace_seconds: int = Field(default=5, ge=0, le=3600)


class AnalyticsSettings(Section):
    # The system overview is a snapshot shared by every instance (Redis),
    # recomputed when older than this; the response says when it was taken.
    # 0: computed on every request.
    overview_max_age_seconds: float = Field(default=60.0, ge=0, le=86_400)


class RealtimeSettings(Section):
    """Socket.IO: transport limits, fan-out through Redis, presence and per-client limits."""

    # Browser origins allowed to open Socket.IO connections, besides the
    # app's own (same origin or http.public_base_url). None: http.cors_origins.
    cors_origins: tuple[str, ...] | None = None
    ping_interval_seconds: float = Field(default=25.0, gt=0)
    ping_timeout_seconds: float = Field(default=20.0, gt=0)
    # A connection that connects no namespace (and so shows no token) within
    # this long after the handshake is closed (Node's connectTimeout). No cap
    # on sockets per address: a whole school often shares one (NAT).
    connect_timeout_seconds: float = Field(default=45.0, gt=0)
    # Largest message a client may send (websocket frame or polling body).
    max_payload_bytes: int = Field(default=65_536, ge=1024)
    # aiohttp deflates every frame once a client negotiates permessage-deflate
    # (browsers always offer it): measured +15 µs per recipient and about
    # 100 KB per connection. Off: the server declines the extension.
    websocket_compression: bool = False
    # Long-polling needs sticky sessions at the load balancer; websocket does not.
    transports: tuple[Literal["polling", "websocket"], ...] = ("polling", "websocket")
    # Redis pub/sub channel every instance (and the job emitter) shares.
    channel: str = "lms:socketio"
    redis_prefix: str = "lms:rt"
    # Each instance publishes a heartbeat on the channel and expects it back
    # through its own listener; after heartbeat_misses intervals without it
    # the listener is restarted and readiness fails until it hears again.
    heartbeat_interval_seconds: float = Field(default=5.0, gt=0)
    heartbeat_misses: int = Field(default=3, ge=2)
    # Per-connection token bucket over client events.
    events_per_second: float = Field(default=10.0, gt=0)
    event_burst: int = Field(default=20, ge=1)
    # Presence entries live this long unless their instance refreshes them
    # (every third of it), so a dead instance's clients drop out on their own.
    presence_ttl_seconds: float = Field(default=60.0, gt=0)
    # Presence changes of a course are coalesced into one event per this delay.
    presence_debounce_seconds: float = Field(default=1.0, ge=0)
    # `auth_expiring` is sent this long before the access token expires.
    auth_expiry_warning_seconds: float = Field(default=60.0, ge=0)
    # Domain events waiting to be emitted; beyond this they are dropped (logged).
    emit_queue_size: int = Field(default=10_000, ge=1)
    # Broadcast frames and packets with nothing queued before them are written
    # straight to healthy websockets instead of through a queue and a writer
    # task per recipient (realtime/fanout.py, realtime/engine.py); false gives
    # python-socketio's stock delivery.
    direct_broadcast: bool = True


class LiveSettings(Section):
    """Live quiz sessions: timing, limits, the owner lease and what the session keeps in Redis."""

    redis_prefix: str = "lms:live"
    # Pub/sub channel on which session owners publish events and command replies.
    channel: str = "lms:live:events"
    # Live sessions' own Redis pool: a burst of answers waits for a free
    # connection instead of failing (each session's owner holds one while
    # it waits on its mailbox).
    redis_max_connections: int = Field(default=200, ge=4)
    default_question_time_limit_seconds: int = Field(default=20, ge=5, le=600)
    # An answer is accepted until the deadline plus this (network latency).
    answer_grace_ms: int = Field(default=250, ge=0, le=10_000)
    # Answers arriving within this many ms on one instance go to Redis in one pipeline (one
    # write, one read, one pooled connection): an ack waits at most this much longer, and an
    # answer's recorded time is when its batch ran. 0: only the answers of one event-loop turn.
    answer_batch_ms: int = Field(default=3, ge=0, le=50)
    # Replicas that must hold an answer before it is acknowledged (Redis WAIT),
    # so that a Sentinel failover loses no acknowledged answer; 0: the master
    # alone (replication is asynchronous). Not on a Redis Cluster (README "Scaling out").
    answer_wait_replicas: int = Field(default=0, ge=0, le=5)
    answer_wait_ms: int = Field(default=1000, ge=10, le=10_000)
    # The owner's lease expires this long after its last renewal; another
    # instance takes the session over after that: between lease_ttl_ms -
    # lease_renew_interval_ms and lease_ttl_ms after the owner died, plus up to
    # supervisor_interval_ms. A thread renews the leases (realtime/live/leases.py),
    # so the slack only has to cover Redis and the GIL, not a busy event loop:
    # no live owner lost its session in 5,000- and 10,000-player runs (bench/live.py).
    lease_ttl_ms: int = Field(default=1500, ge=300)
    lease_renew_interval_ms: int = Field(default=500, ge=50)
    # How often each instance looks for sessions whose owner stopped marking them.
    supervisor_interval_ms: int = Field(default=250, ge=50)
    # Hosts get answer_count at most this often (100 ms: 10 per second).
    answer_count_interval_ms: int = Field(default=100, ge=100)
    # player_count to everyone is coalesced into one event per this delay.
    player_count_interval_ms: int = Field(default=500, ge=0)
    # A connected player's presence entry lives this long unless its
    # instance refreshes it (every third of it): a dead instance's players
    # stop counting as connected on their own.
    presence_ttl_seconds: float = Field(default=15.0, gt=0)
    # Capacity counts connected players and those who left less than this
    # long ago (they may still come back with their player token).
    max_players: int = Field(default=5000, ge=1)
    resume_grace_seconds: float = Field(default=60.0, ge=0)
    # Pin guessing: join_session failures (unknown pin) allowed per client
    # address per window, across connections and instances; then every join
    # from that address waits for the window to pass. Successful joins are
    # never limited per address (a school shares one). 0 turns it off.
    pin_failures_per_address: int = Field(default=30, ge=0)
    pin_failure_window_seconds: int = Field(default=60, ge=1)
    nickname_max_length: int = Field(default=24, ge=1, le=24)
    # Nicknames (and shown free-text answers) containing any of these, or a
    # word of the deny-words file, however disguised, are refused
    # (lms/live/moderation.py). Empty file settings: the shipped lists
    # (lms/live/words/deny.txt, allow.txt); otherwise a path replacing them.
    nickname_deny_list: tuple[str, ...] = ("admin", "moderator", "host")
    deny_words_file: str = ""
    allow_words_file: str = ""
    # 0: the host moves on with `next`; otherwise reveal and leaderboard
    # advance on their own after this long.
    reveal_seconds: float = Field(default=0.0, ge=0)
    leaderboard_seconds: float = Field(default=0.0, ge=0)
    leaderboard_size: int = Field(default=10, ge=1, le=100)
    # A session nobody is connected to for this long is ended by its owner.
    idle_end_seconds: int = Field(default=1800, ge=1)
    # Redis keys of a session expire this long after its last change.
    state_ttl_seconds: int = Field(default=86_400, ge=60)
    # Host commands wait this long for the owner to apply them.
    command_timeout_seconds: float = Field(default=10.0, gt=0)
    # The scheduled job ends sessions still open after this long without an
    # owner (and stores what Redis still holds).
    abandoned_after_minutes: int = Field(default=120, ge=1)
    # Tests only (production refuses it): answers and timers read a frozen
    # clock from Redis when one is set for the session.
    test_clock: bool = False

    @model_validator(mode="after")
    def _renew_well_inside_ttl(self) -> LiveSettings:
        if self.lease_renew_interval_ms * 2 >= self.lease_ttl_ms:
            raise ValueError("lease_renew_interval_ms must be less than half of lease_ttl_ms")
        return self


class Settings(Section):
    env: Literal["dev", "test", "production"] = "dev"
    debug: bool = False
    app_name: str = "LMS"
    # LMS_LOG_LEVEL, or `lms <command> --log-level`; any case.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    data_dir: str = ".lms"
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    http: HttpSettings = HttpSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    uploads: UploadSettings = UploadSettings()
    storage: StorageSettings = StorageSettings()
    certificates: CertificateSettings = CertificateSettings()
    smtp: SmtpSettings = SmtpSettings()
    payments: PaymentSettings = PaymentSettings()
    metrics: MetricsSettings = MetricsSettings()
    sentry: SentrySettings = SentrySettings()
    otel: OtelSettings = OtelSettings()
    jobs: JobsSettings = JobsSettings()
    live: LiveSettings = LiveSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    quizzes: QuizSettings = QuizSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()

    @model_validator(mode="after")
    def _waits_only_where_it_holds(self) -> Settings:
        from lms.clients import parse_redis_url

        if self.live.answer_wait_replicas and parse_redis_url(self.redis.url).topology == "cluster":
            raise ValueError("live.answer_wait_replicas: WAIT cannot follow a script on a Redis Cluster; use 0")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def secret_key(self) -> str:
        assert self.auth.secret_key is not None  # filled by load_config
        return self.auth.secret_key.get_secret_value()

    @property
    def is_production(self) -> bool:
        return self.env == "production"


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}


def load_config(
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from the env's file, then ``LMS_*`` variables, then ``overrides``.

    ``overrides`` is a nested mapping (``{"database": {"url": ...}}``), for tests and the CLI.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("LMS_ENV", "dev")
    if env not in ("dev", "test", "production"):
        raise ConfigError(f"LMS_ENV: unknown environment {env!r} (dev, test or production)")
    config_dir: Traversable = Path(environ["LMS_CONFIG_DIR"]) if environ.get("LMS_CONFIG_DIR") else DEFAULTS_DIR
    data = _read_file(config_dir / f"{env}.toml")
    _refuse_secrets_in_file(data, env)
    _merge(data, _from_environment(environ))
    if overrides:
        _merge(data, _to_plain(overrides))
    data["env"] = env
    data.setdefault("otel", {})["standard_variables"] = _standard_otel_endpoint(environ)
    data.setdefault("auth", {})
    if env != "production" and not data["auth"].get("secret_key"):
        data["auth"]["secret_key"] = INSECURE_DEV_SECRET
    try:
        settings = Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err
    if settings.is_production:
        _refuse_unsafe_production(settings)
    return settings


def _standard_otel_endpoint(environ: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry's own variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def set_in_environment(section: str | None, key: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the operator set this key in the environment (``lms up`` asks for the URLs)."""
    return bool((os.environ if environ is None else environ).get(env_var_name(section, key)))


def _read_file(path: Traversable) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as err:
        raise ConfigError(f"settings file {path} is missing") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"settings file {path}: {err}") from err


def _secret_fields() -> set[tuple[str, str]]:
    return {
        (section, name)
        for section, model in SECTIONS.items()
        for name, field in model.model_fields.items()
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
    }


def _refuse_secrets_in_file(data: dict[str, Any], env: str) -> None:
    for section, name in _secret_fields():
        if name in data.get(section, {}):
            var = env_var_name(section, name)
            raise ConfigError(
                f"{var}: {section}.{name} is a secret; set it in the environment, not in the settings file {env}.toml"
            )


def env_var_name(section: str | None, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}" if section else f"{ENV_PREFIX}{key.upper()}"


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    top_level = {n for n in Settings.model_fields if n not in SECTIONS}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var in NON_SETTING_VARIABLES or var.startswith(NON_SETTING_PREFIXES):
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if name in top_level:
            result[name] = _parse_value(Settings.model_fields[name].annotation, raw)
            continue
        for section, model in SECTIONS.items():
            prefix = section + "_"
            key = name[len(prefix) :]
            if name.startswith(prefix) and key in model.model_fields:
                result.setdefault(section, {})[key] = _parse_value(model.model_fields[key].annotation, raw)
                break
        else:
            raise ConfigError(f"{var}: no such setting (see lms/settings/dev.toml for the keys)")
    return result


def _parse_value(annotation: Any, raw: str) -> Any:
    """Environment values are text; lists come as JSON or comma-separated, mappings as JSON."""
    origin = get_origin(annotation)
    if origin is dict:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    if origin in (tuple, list) or (origin is None and annotation in (tuple, list)):
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return raw
        return [item.strip() for item in text.split(",") if item.strip()]
    if any(get_origin(a) in (tuple, list) for a in get_args(annotation)):
        return _parse_value(tuple, raw)
    return raw


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        var = env_var_name(loc[0] if len(loc) > 1 else None, loc[-1] if len(loc) <= 2 else loc[1])
        parts.append(f"{var} ({'.'.join(loc)}): {e['msg']}")
    return "; ".join(parts)


def _refuse_unsafe_production(settings: Settings) -> None:
    key = settings.auth.secret_key.get_secret_value() if settings.auth.secret_key else ""
    if key == INSECURE_DEV_SECRET or len(key) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"LMS_AUTH_SECRET_KEY: production needs a random secret of at least {MIN_SECRET_LENGTH} characters"
        )
    if settings.debug:
        raise ConfigError("LMS_DEBUG: debug mode is refused in production")
    if "*" in settings.http.cors_origins:
        raise ConfigError("LMS_HTTP_CORS_ORIGINS: open CORS ('*') is refused in production; list the origins")
    if settings.jobs.mode == "inline":
        raise ConfigError("LMS_JOBS_MODE: inline jobs are refused in production; use the broker")
    if settings.live.test_clock:
        raise ConfigError("LMS_LIVE_TEST_CLOCK: the test clock is refused in production")
    if not settings.auth.revocation_fail_closed:
        raise ConfigError("LMS_AUTH_REVOCATION_FAIL_CLOSED: token revocation must fail closed in production")
    if not settings.http.trusted_hosts:
        raise ConfigError("LMS_HTTP_TRUSTED_HOSTS: production needs the list of host names it serves")
    if settings.certificates.signing_key is None:
        raise ConfigError("LMS_CERTIFICATES_SIGNING_KEY: production needs the Ed25519 key that signs credentials")
