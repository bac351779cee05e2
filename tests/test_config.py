"""Configuration: bad values stop start-up naming the variable; secrets stay out of reprs and answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from webhook_service.config import ConfigError, Settings

BASE = {"SECRET_KEY": "s" * 32}


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"PUBLIC_BASE_URL": "not a url"}, "PUBLIC_BASE_URL"),
        ({"KLING_API_BASE": "ftp://x"}, "KLING_API_BASE"),
        ({"KLING_ACCESS_KEY": "ak"}, "KLING_SECRET_KEY"),
        ({"KLING_SECRET_KEY": "sk"}, "KLING_ACCESS_KEY"),
        ({"KLING_API_TOKEN": "t", "KLING_ACCESS_KEY": "ak", "KLING_SECRET_KEY": "sk"}, "KLING_API_TOKEN"),
        ({"SERVICE_ACCESS_KEY": "ak"}, "SERVICE_SECRET_KEY"),
        ({"KLING_WEBHOOK_SECRET": "plain"}, "KLING_WEBHOOK_SECRET"),
        ({"KLING_WEBHOOK_SECRET": "whsec_!!!"}, "KLING_WEBHOOK_SECRET"),
        ({"KLING_TIMEOUT_S": "-1"}, "KLING_TIMEOUT_S"),
    ],
)
def test_invalid_configuration_names_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, **overrides})
    assert str(raised.value).startswith(f"{variable}:")


def test_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.kling_api_base == "https://api-singapore.klingai.com"
    assert not settings.client_auth_enabled and not settings.kling_credentials_configured


def test_secrets_never_appear_in_repr_or_errors() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "REDIS_URL": "redis://:hunter2@localhost:6379/0",
            "KLING_API_TOKEN": "tok-SECRET",
            "SERVICE_API_KEYS": "k-SECRET-0123456789abcdef0123",
        }
    )
    assert "hunter2" not in repr(settings) and "SECRET" not in repr(settings)
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, "REDIS_URL": "http://:hunter2@localhost"})
    assert "hunter2" not in str(raised.value)


def test_web_process_refuses_to_start_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        env={"PATH": "/usr/bin:/bin", "SECRET_KEY": "short"},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "configuration error: SECRET_KEY:" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"SERVICE_API_KEYS": "k" * 23}, "SERVICE_API_KEYS"),
        ({"SERVICE_API_KEYS": f"{'a' * 24},short-Key-7"}, "SERVICE_API_KEYS"),
        ({"SERVICE_ACCESS_KEY": "ak", "SERVICE_SECRET_KEY": "s" * 23}, "SERVICE_SECRET_KEY"),
    ],
    ids=["one short key", "a short key among long ones", "short JWT secret"],
)
def test_guessable_client_keys_stop_start_up(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({**BASE, **overrides})
    message = str(raised.value)
    assert message.startswith(f"{variable}:") and "at least 24" in message
    assert "short-Key-7" not in message and "s" * 23 not in message  # the key itself is never shown


def test_client_keys_of_24_characters_and_a_short_issuer_name_are_accepted() -> None:
    settings = Settings.from_env(
        {**BASE, "SERVICE_API_KEYS": "k" * 24, "SERVICE_ACCESS_KEY": "ak", "SERVICE_SECRET_KEY": "s" * 24}
    )
    assert [c.key for c in settings.client_keys] == ["k" * 24] and settings.service_access_key == "ak"


def test_sentinel_settings_are_read_and_checked_together() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "REDIS_SENTINELS": "10.0.0.1:26379, [::1]:26380",
            "REDIS_SENTINEL_MASTER": "kws",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            "REDIS_URL": "redis://:redis-secret@ignored/3",
        }
    )
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert settings.redis_sentinel_master == "kws" and settings.redis_password == "redis-secret"
    assert "redis-secret" not in repr(settings) and "sentinel-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1"}, r"^REDIS_SENTINELS: entry 1 is '10.0.0.1'; expected host:port"),
        ({"REDIS_SENTINELS": "h:99999", "REDIS_SENTINEL_MASTER": "m"}, r"^REDIS_SENTINELS: entry 1"),
        ({"REDIS_SENTINELS": "h:26379"}, r"^REDIS_SENTINEL_MASTER: needed with REDIS_SENTINELS"),
        ({"REDIS_SENTINEL_MASTER": "m"}, r"^REDIS_SENTINEL_MASTER: only used with REDIS_SENTINELS"),
        ({"REDIS_SENTINEL_PASSWORD": "p"}, r"^REDIS_SENTINEL_PASSWORD: only used with REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "h:26379", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h/db"},
            r"^REDIS_URL: with REDIS_SENTINELS only its password and database number are used",
        ),
        (
            {"REDIS_PASSWORD": "a", "REDIS_URL": "redis://:b@localhost:6379/0"},
            r"^REDIS_PASSWORD: REDIS_URL carries a password too",
        ),
    ],
)
def test_bad_sentinel_settings_stop_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BASE, **env})
