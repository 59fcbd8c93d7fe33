from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lms.config import DEFAULTS_DIR, INSECURE_DEV_SECRET, ConfigError, load_config

pytestmark = pytest.mark.no_services

STRONG = "x" * 48
PRODUCTION_OK = {
    "LMS_AUTH_SECRET_KEY": STRONG,
    "LMS_HTTP_TRUSTED_HOSTS": "lms.example.com",
    "LMS_HTTP_CORS_ORIGINS": "https://lms.example.com",
    "LMS_CERTIFICATES_SIGNING_KEY": "A" * 43,
}


def test_each_environment_file_loads() -> None:
    for env in ("dev", "test"):
        assert load_config(env, environ={}).env == env
    assert load_config("production", environ=PRODUCTION_OK).is_production


def test_env_selects_the_file() -> None:
    assert load_config(environ={"LMS_ENV": "test"}).auth.bcrypt_rounds == 4
    assert load_config(environ={}).env == "dev"


def test_environment_overrides_section_and_top_level_keys() -> None:
    config = load_config(
        "dev",
        environ={
            "LMS_DATABASE_URL": "postgresql://u@db/x",
            "LMS_DATABASE_POOL_MAX": "33",
            "LMS_DEBUG": "false",
            "LMS_HTTP_CORS_ORIGINS": "https://a.example, https://b.example",
            "LMS_RATE_LIMIT_DEFAULT_PER_MINUTE": "5",
        },
    )
    assert config.database.url == "postgresql://u@db/x"
    assert config.database.pool_max == 33
    assert config.debug is False
    assert config.http.cors_origins == ("https://a.example", "https://b.example")
    assert config.rate_limit.default_per_minute == 5


def test_config_is_frozen() -> None:
    config = load_config("dev", environ={})
    with pytest.raises(ValidationError, match="frozen"):
        config.debug = False  # type: ignore[misc]


def test_unknown_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="LMS_DATABSE_URL"):
        load_config("dev", environ={"LMS_DATABSE_URL": "x"})


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LMS_DATABASE_POOL_MAX"):
        load_config("dev", environ={"LMS_DATABASE_POOL_MAX": "many"})


def test_development_gets_an_insecure_default_secret() -> None:
    assert load_config("dev", environ={}).secret_key == INSECURE_DEV_SECRET


def test_secrets_in_a_settings_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dev.toml").write_text('[auth]\nsecret_key = "in-a-file-is-wrong"\n')
    with pytest.raises(ConfigError, match="LMS_AUTH_SECRET_KEY"):
        load_config("dev", environ={"LMS_CONFIG_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"LMS_AUTH_SECRET_KEY": ""}, "LMS_AUTH_SECRET_KEY"),
        ({"LMS_AUTH_SECRET_KEY": "short-secret"}, "LMS_AUTH_SECRET_KEY"),
        ({"LMS_AUTH_SECRET_KEY": INSECURE_DEV_SECRET}, "LMS_AUTH_SECRET_KEY"),
        ({"LMS_DEBUG": "true"}, "LMS_DEBUG"),
        ({"LMS_HTTP_CORS_ORIGINS": "*"}, "LMS_HTTP_CORS_ORIGINS"),
        ({"LMS_JOBS_MODE": "inline"}, "LMS_JOBS_MODE"),
        ({"LMS_AUTH_REVOCATION_FAIL_CLOSED": "false"}, "LMS_AUTH_REVOCATION_FAIL_CLOSED"),
        ({"LMS_HTTP_TRUSTED_HOSTS": ""}, "LMS_HTTP_TRUSTED_HOSTS"),
        ({"LMS_CERTIFICATES_SIGNING_KEY": ""}, "LMS_CERTIFICATES_SIGNING_KEY"),
    ],
)
def test_production_refuses_unsafe_settings(change: dict[str, str], named: str) -> None:
    environ = {**PRODUCTION_OK, **change}
    environ = {k: v for k, v in environ.items() if v != ""}
    with pytest.raises(ConfigError, match=named):
        load_config("production", environ=environ)


def test_every_reference_setting_area_is_covered() -> None:
    config = load_config("dev", environ={})
    assert config.database.pool_max and config.database.statement_timeout_ms
    assert config.auth.access_token_minutes == 15 and config.auth.refresh_token_days == 30
    assert config.auth.password_reset_minutes == 30 and config.auth.email_verification_minutes == 1440
    assert config.auth.mfa_challenge_minutes == 10
    assert config.http.cors_origins and config.redis.url
    assert config.rate_limit.rules and config.uploads.allowed_extensions
    assert config.storage.provider == "local" and config.smtp.transport == "folder"
    assert config.payments.webhook_tolerance_seconds == 300 and config.metrics.enabled


def test_the_defaults_ship_inside_the_package_and_LMS_CONFIG_DIR_replaces_them(tmp_path: Path) -> None:
    assert Path(str(DEFAULTS_DIR)) == Path(__file__).resolve().parent.parent / "lms" / "settings"
    assert load_config("dev", environ={}).log_level == "INFO"
    (tmp_path / "dev.toml").write_text('app_name = "Our Academy"\nlog_level = "warning"\n')
    ours = load_config("dev", environ={"LMS_CONFIG_DIR": str(tmp_path)})
    assert (ours.app_name, ours.log_level) == ("Our Academy", "WARNING")
    with pytest.raises(ConfigError, match=f"settings file {tmp_path / 'test.toml'} is missing"):
        load_config("test", environ={"LMS_CONFIG_DIR": str(tmp_path)})
