"""Settings, read once from the environment (and `.env`, and the dev file of a running `scripts/up`),
checked before anything starts.

Every setting has its name here and nowhere else. A bad value stops start-up with a `ConfigError`
that names the variable, because a service that starts half-configured fails later, at 3 a.m., on a
callback it can no longer match.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from webhook_service.config_values import (
    ConfigError as ConfigError,  # raised here, caught by callers as config.ConfigError
)
from webhook_service.config_values import (
    boolean,
    check_whsec,
    checked_archive_url,
    checked_url,
    delays,
    event_filter,
    fork_queue_names,
    optional_url,
    positive_float,
    positive_int,
    sentinel_addresses,
    split,
)
from webhook_service.dev_env import DEV_ENV_PATH, dev_env_values
from webhook_service.event_types import ENDPOINT_DISABLED
from webhook_service.redaction import url_without_secrets
from webhook_service.tenant_names import DEFAULT_TENANT, NAME_RULE, valid_name

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_KLING_API_BASE = "https://api-singapore.klingai.com"
DEFAULT_PUBLIC_BASE_URL = "http://localhost:8000"
DEFAULT_ARCHIVE_URL = "./data/archive"
DEFAULT_DOWNLOAD_MAX_BYTES = 2 * 1024**3
# Outputs kept from one callback or answer (CALLBACK_MAX_OUTPUTS): Kling makes one video per task.
DEFAULT_MAX_OUTPUTS = 16
DEFAULT_NOTIFY_EVENTS = frozenset(
    {"task.archived", "task.failed", "task.archive_failed", "task.expired", ENDPOINT_DISABLED}
)
DEFAULT_TASK_RETENTION_S = 30 * 86400.0
DEFAULT_DEAD_LETTER_RETENTION_S = 14 * 86400.0
DEFAULT_NOTIFY_RETRY_SCHEDULE_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
# An endpoint that has failed for this long without a single success is disabled (notify/endpoints.py).
DEFAULT_ENDPOINT_DISABLE_AFTER_S = 5 * 86400.0
# A client key (or the JWT signing secret) short enough to guess is refused at start: 24 random
# characters are beyond any guessing, even at the failed-authentication limit's pace.
MIN_CLIENT_SECRET_CHARS = 24
_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True, repr=False)
class ClientKey:
    """A client key from SERVICE_API_KEYS or SERVICE_ADMIN_KEYS, and whose it is (domain/tenants.py)."""

    tenant: str
    key: str
    admin: bool = False

    def __repr__(self) -> str:  # never the key itself, in a log line or a traceback
        return f"ClientKey(tenant={self.tenant!r}, admin={self.admin})"


@dataclass(frozen=True, repr=False)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    # With Sentinel, the sentinels name the primary and REDIS_URL gives only its database number.
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    redis_sentinel_password: str = ""
    redis_password: str = ""  # REDIS_PASSWORD, or REDIS_URL's own
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL
    secret_key: str = ""
    secret_key_fallbacks: tuple[str, ...] = ()  # earlier SECRET_KEYs, still read (docs/deployment.md)
    kling_api_base: str = DEFAULT_KLING_API_BASE
    kling_api_token: str = ""
    kling_access_key: str = ""
    kling_secret_key: str = ""
    kling_api_key: str = ""  # the unified API's Bearer key (paths without /v1); "" = the /v1 credentials
    kling_webhook_secret: str = ""
    kling_extra_fields: frozenset[str] = frozenset()
    client_keys: tuple[ClientKey, ...] = ()  # SERVICE_API_KEYS, then SERVICE_ADMIN_KEYS
    service_access_key: str = ""
    service_secret_key: str = ""
    callback_max_bytes: int = 1024 * 1024
    kling_timeout_s: float = 30.0
    archive_url: str = DEFAULT_ARCHIVE_URL
    s3_endpoint_url: str = ""
    archive_spool_dir: str = "./data/spool"
    download_max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES
    download_allowed_hosts: frozenset[str] = frozenset()
    archive_retry_base_s: float = 10.0
    reconcile_after_s: float = 120.0
    reconcile_interval_s: float = 30.0
    reconcile_polls_per_s: float = 5.0
    task_timeout_s: float = 1800.0
    kling_max_concurrency: int = 5  # the video pack's (KLING_MAX_CONCURRENCY_VIDEO, else this)
    kling_max_concurrency_image: int = 5
    kling_max_concurrency_tryon: int = 5
    submit_wait_s: float = 10.0
    notify_webhook_urls: tuple[str, ...] = ()
    notify_webhook_secret: str = ""
    slack_webhook_url: str = ""
    smtp_url: str = ""
    notify_email_from: str = ""
    notify_email_to: tuple[str, ...] = ()
    notify_events: frozenset[str] = DEFAULT_NOTIFY_EVENTS
    notify_webhook_events: frozenset[str] = DEFAULT_NOTIFY_EVENTS
    slack_events: frozenset[str] = DEFAULT_NOTIFY_EVENTS
    email_events: frozenset[str] = DEFAULT_NOTIFY_EVENTS
    notify_timeout_s: float = 15.0
    notify_retry_schedule_s: tuple[float, ...] = DEFAULT_NOTIFY_RETRY_SCHEDULE_S
    notify_allowed_hosts: frozenset[str] = frozenset()
    endpoint_disable_after_s: float = DEFAULT_ENDPOINT_DISABLE_AFTER_S
    metrics_public: bool = False
    task_retention_s: float = DEFAULT_TASK_RETENTION_S
    dead_letter_retention_s: float = DEFAULT_DEAD_LETTER_RETENTION_S
    prune_interval_s: float = 30.0
    archive_retention_days: float = 0.0  # 0: the archive keeps everything
    require_durable_redis: bool = False
    submit_waiting_max: int = 1
    events_waiting_max: int = 1
    events_stream_s: float = 30.0
    callback_max_outputs: int = DEFAULT_MAX_OUTPUTS
    # WORKER_FORK_QUEUES: the queues whose jobs run in a forked work horse. None: jobs.py's default; the
    # words `all` and `none` stay as given, for jobs.fork_queues to resolve with the queue names.
    worker_fork_queues: tuple[str, ...] | None = None

    def __repr__(self) -> str:  # secrets must never reach a log line through a repr
        redis_url = url_without_secrets(self.redis_url)
        return f"Settings(redis_url={redis_url!r}, kling_api_base={self.kling_api_base!r})"

    @property
    def client_auth_enabled(self) -> bool:
        """Client credentials in the environment; whether clients must authenticate also depends on the
        managed ones in Redis: web/auth.py client_auth_required decides."""
        return bool(self.client_keys or self.service_access_key)

    @property
    def kling_credentials_configured(self) -> bool:
        return bool(self.kling_api_token or self.kling_access_key)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv_path: str = ".env",
        dev_env_path: str = DEV_ENV_PATH,
    ) -> Settings:
        """Read settings from `environ`; by default the real environment, over `.env`, over the dev file
        (DEV_ENV_PATH) while the `scripts/up` that wrote it runs: the first that sets a variable wins.
        `READ_SETTINGS_FILES=false` in the environment leaves both files out: the test suite sets it, so
        its processes never take the settings of a demo running in the same checkout."""
        if environ is None:
            files: dict[str, str] = {}
            if boolean("READ_SETTINGS_FILES", os.environ.get("READ_SETTINGS_FILES") or "true"):
                files = {**dev_env_values(dev_env_path), **_file_values(dotenv_path)}
            environ = {**files, **os.environ}
        env = {k: v.strip() for k, v in environ.items() if isinstance(v, str)}

        def get(name: str, default: str = "") -> str:
            return env.get(name) or default

        notify_events = event_filter("NOTIFY_EVENTS", get("NOTIFY_EVENTS")) or DEFAULT_NOTIFY_EVENTS
        # Each resource pack's limit, unless its own variable says otherwise.
        account = positive_int("KLING_MAX_CONCURRENCY", get("KLING_MAX_CONCURRENCY"), 5)
        settings = cls(
            **_redis_settings(get),
            public_base_url=checked_url(
                "PUBLIC_BASE_URL", get("PUBLIC_BASE_URL", DEFAULT_PUBLIC_BASE_URL), ("http", "https")
            ).rstrip("/"),
            secret_key=get("SECRET_KEY"),
            secret_key_fallbacks=tuple(split(get("SECRET_KEY_FALLBACKS"))),
            kling_api_base=checked_url(
                "KLING_API_BASE", get("KLING_API_BASE", DEFAULT_KLING_API_BASE), ("http", "https")
            ).rstrip("/"),
            kling_api_token=get("KLING_API_TOKEN"),
            kling_access_key=get("KLING_ACCESS_KEY"),
            kling_secret_key=get("KLING_SECRET_KEY"),
            kling_api_key=get("KLING_API_KEY"),
            kling_webhook_secret=get("KLING_WEBHOOK_SECRET"),
            kling_extra_fields=frozenset(split(get("KLING_EXTRA_FIELDS"))),
            client_keys=(
                *_client_keys("SERVICE_API_KEYS", get("SERVICE_API_KEYS"), admin=False),
                *_client_keys("SERVICE_ADMIN_KEYS", get("SERVICE_ADMIN_KEYS"), admin=True),
            ),
            service_access_key=get("SERVICE_ACCESS_KEY"),
            service_secret_key=get("SERVICE_SECRET_KEY"),
            kling_timeout_s=positive_float("KLING_TIMEOUT_S", get("KLING_TIMEOUT_S", "30")),
            archive_url=checked_archive_url(get("ARCHIVE_URL", DEFAULT_ARCHIVE_URL)),
            s3_endpoint_url=get("S3_ENDPOINT_URL"),
            archive_spool_dir=get("ARCHIVE_SPOOL_DIR", "./data/spool"),
            download_max_bytes=positive_int(
                "DOWNLOAD_MAX_BYTES", get("DOWNLOAD_MAX_BYTES"), DEFAULT_DOWNLOAD_MAX_BYTES
            ),
            download_allowed_hosts=frozenset(h.lower() for h in split(get("DOWNLOAD_ALLOWED_HOSTS"))),
            reconcile_after_s=positive_float("RECONCILE_AFTER_S", get("RECONCILE_AFTER_S", "120")),
            reconcile_interval_s=positive_float("RECONCILE_INTERVAL_S", get("RECONCILE_INTERVAL_S", "30")),
            reconcile_polls_per_s=positive_float("RECONCILE_POLLS_PER_S", get("RECONCILE_POLLS_PER_S", "5")),
            task_timeout_s=positive_float("TASK_TIMEOUT_S", get("TASK_TIMEOUT_S", "1800")),
            kling_max_concurrency=positive_int(
                "KLING_MAX_CONCURRENCY_VIDEO", get("KLING_MAX_CONCURRENCY_VIDEO"), account
            ),
            kling_max_concurrency_image=positive_int(
                "KLING_MAX_CONCURRENCY_IMAGE", get("KLING_MAX_CONCURRENCY_IMAGE"), account
            ),
            kling_max_concurrency_tryon=positive_int(
                "KLING_MAX_CONCURRENCY_TRYON", get("KLING_MAX_CONCURRENCY_TRYON"), account
            ),
            submit_wait_s=positive_float("SUBMIT_WAIT_S", get("SUBMIT_WAIT_S", "10"), allow_zero=True),
            notify_webhook_urls=tuple(
                checked_url("NOTIFY_WEBHOOK_URLS", u, ("http", "https"))
                for u in split(get("NOTIFY_WEBHOOK_URLS"))
            ),
            notify_webhook_secret=get("NOTIFY_WEBHOOK_SECRET"),
            slack_webhook_url=optional_url("SLACK_WEBHOOK_URL", get("SLACK_WEBHOOK_URL"), ("http", "https")),
            smtp_url=optional_url("SMTP_URL", get("SMTP_URL"), ("smtp", "smtps")),
            notify_email_from=get("NOTIFY_EMAIL_FROM"),
            notify_email_to=tuple(split(get("NOTIFY_EMAIL_TO"))),
            notify_events=notify_events,
            notify_webhook_events=(
                event_filter("NOTIFY_WEBHOOK_EVENTS", get("NOTIFY_WEBHOOK_EVENTS")) or notify_events
            ),
            slack_events=event_filter("SLACK_EVENTS", get("SLACK_EVENTS")) or notify_events,
            email_events=event_filter("EMAIL_EVENTS", get("EMAIL_EVENTS")) or notify_events,
            notify_timeout_s=positive_float("NOTIFY_TIMEOUT_S", get("NOTIFY_TIMEOUT_S", "15")),
            notify_retry_schedule_s=delays(
                "NOTIFY_RETRY_SCHEDULE_S", get("NOTIFY_RETRY_SCHEDULE_S"), DEFAULT_NOTIFY_RETRY_SCHEDULE_S
            ),
            notify_allowed_hosts=frozenset(h.lower() for h in split(get("NOTIFY_ALLOWED_HOSTS"))),
            endpoint_disable_after_s=positive_float(
                "ENDPOINT_DISABLE_AFTER_S",
                get("ENDPOINT_DISABLE_AFTER_S", str(DEFAULT_ENDPOINT_DISABLE_AFTER_S)),
            ),
            metrics_public=boolean("METRICS_PUBLIC", get("METRICS_PUBLIC")),
            task_retention_s=positive_float(
                "TASK_RETENTION_S", get("TASK_RETENTION_S", str(DEFAULT_TASK_RETENTION_S))
            ),
            dead_letter_retention_s=positive_float(
                "DEAD_LETTER_RETENTION_S",
                get("DEAD_LETTER_RETENTION_S", str(DEFAULT_DEAD_LETTER_RETENTION_S)),
            ),
            prune_interval_s=positive_float("PRUNE_INTERVAL_S", get("PRUNE_INTERVAL_S", "30")),
            archive_retention_days=positive_float(
                "ARCHIVE_RETENTION_DAYS", get("ARCHIVE_RETENTION_DAYS", "0"), allow_zero=True
            ),
            require_durable_redis=boolean("REQUIRE_DURABLE_REDIS", get("REQUIRE_DURABLE_REDIS")),
            submit_waiting_max=positive_int("SUBMIT_WAITING_MAX", get("SUBMIT_WAITING_MAX"), 1),
            events_waiting_max=positive_int(
                "EVENTS_WAITING_MAX", get("EVENTS_WAITING_MAX"), 1, allow_zero=True
            ),
            events_stream_s=positive_float("EVENTS_STREAM_S", get("EVENTS_STREAM_S", "30")),
            callback_max_outputs=positive_int(
                "CALLBACK_MAX_OUTPUTS", get("CALLBACK_MAX_OUTPUTS"), DEFAULT_MAX_OUTPUTS
            ),
            archive_retry_base_s=positive_float(
                "ARCHIVE_RETRY_BASE_S", get("ARCHIVE_RETRY_BASE_S", "10"), allow_zero=True
            ),
            worker_fork_queues=fork_queue_names(get("WORKER_FORK_QUEUES")),
        )
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        _check_sentinel(self)
        if len(self.secret_key) < 16:
            raise ConfigError(
                "SECRET_KEY: must be set to at least 16 random characters; it signs the callback URLs "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if any(len(old) < 16 for old in self.secret_key_fallbacks):
            raise ConfigError("SECRET_KEY_FALLBACKS: each earlier SECRET_KEY has at least 16 characters")
        if bool(self.kling_access_key) != bool(self.kling_secret_key):
            missing = "KLING_SECRET_KEY" if self.kling_access_key else "KLING_ACCESS_KEY"
            raise ConfigError(f"{missing}: KLING_ACCESS_KEY and KLING_SECRET_KEY must be set together")
        if self.kling_api_token and self.kling_access_key:
            raise ConfigError(
                "KLING_API_TOKEN: set either KLING_API_TOKEN or KLING_ACCESS_KEY/KLING_SECRET_KEY"
            )
        if bool(self.service_access_key) != bool(self.service_secret_key):
            missing = "SERVICE_SECRET_KEY" if self.service_access_key else "SERVICE_ACCESS_KEY"
            raise ConfigError(f"{missing}: SERVICE_ACCESS_KEY and SERVICE_SECRET_KEY must be set together")
        self._check_client_secrets()
        if self.kling_webhook_secret:
            check_whsec("KLING_WEBHOOK_SECRET", self.kling_webhook_secret)
        if self.notify_webhook_secret:
            check_whsec("NOTIFY_WEBHOOK_SECRET", self.notify_webhook_secret)
        if self.notify_webhook_urls and not self.notify_webhook_secret:
            raise ConfigError("NOTIFY_WEBHOOK_SECRET: needed when NOTIFY_WEBHOOK_URLS is set (to sign)")
        if self.smtp_url and not (self.notify_email_from and self.notify_email_to):
            missing = "NOTIFY_EMAIL_FROM" if not self.notify_email_from else "NOTIFY_EMAIL_TO"
            raise ConfigError(f"{missing}: needed when SMTP_URL is set")

    def _check_client_secrets(self) -> None:
        """SERVICE_ACCESS_KEY is left alone: it is the JWT's issuer, a name every token shows in clear."""
        seen: set[str] = set()
        for kind in (False, True):
            name = "SERVICE_ADMIN_KEYS" if kind else "SERVICE_API_KEYS"
            keys = [client.key for client in self.client_keys if client.admin is kind]
            for position, key in enumerate(keys, start=1):
                if len(key) < MIN_CLIENT_SECRET_CHARS:
                    raise ConfigError(
                        f"{name}: key {position} has {len(key)} characters; each key needs at least "
                        f"{MIN_CLIENT_SECRET_CHARS} ({_GENERATE})"
                    )
                if key in seen:
                    raise ConfigError(f"{name}: key {position} is given twice; each client needs its own key")
                seen.add(key)
        if self.service_secret_key and len(self.service_secret_key) < MIN_CLIENT_SECRET_CHARS:
            raise ConfigError(
                f"SERVICE_SECRET_KEY: {len(self.service_secret_key)} characters; the HS256 secret needs at "
                f"least {MIN_CLIENT_SECRET_CHARS} ({_GENERATE})"
            )


def redis_settings(environ: Mapping[str, str]) -> Settings:
    """Only the Redis settings of `environ`, the rest at their defaults: for a tool that connects to
    Redis before the service's other settings exist (scripts/up)."""
    settings = Settings(**_redis_settings(lambda name, default="": environ.get(name, "").strip() or default))
    _check_sentinel(settings)
    return settings


def _redis_settings(get: Callable[..., str]) -> dict[str, Any]:
    url = checked_url("REDIS_URL", get("REDIS_URL", DEFAULT_REDIS_URL), ("redis", "rediss", "unix"))
    url_password = unquote(urlsplit(url).password or "")
    if get("REDIS_PASSWORD") and url_password:
        raise ConfigError("REDIS_PASSWORD: REDIS_URL carries a password too; set it in one place only")
    return {
        "redis_url": url,
        "redis_sentinels": sentinel_addresses(get("REDIS_SENTINELS")),
        "redis_sentinel_master": get("REDIS_SENTINEL_MASTER"),
        "redis_sentinel_password": get("REDIS_SENTINEL_PASSWORD"),
        "redis_password": get("REDIS_PASSWORD") or url_password,
    }


def _check_sentinel(settings: Settings) -> None:
    """The Sentinel settings come together, and REDIS_URL then only names the database."""
    if not settings.redis_sentinels:
        for name, value in (
            ("REDIS_SENTINEL_MASTER", settings.redis_sentinel_master),
            ("REDIS_SENTINEL_PASSWORD", settings.redis_sentinel_password),
        ):
            if value:
                raise ConfigError(f"{name}: only used with REDIS_SENTINELS, which is not set")
        return
    if not settings.redis_sentinel_master:
        raise ConfigError(
            "REDIS_SENTINEL_MASTER: needed with REDIS_SENTINELS (the name the sentinels know the primary by)"
        )
    parts = urlsplit(settings.redis_url)
    database = parts.path.strip("/") or "0"
    if parts.scheme != "redis" or not (database.isascii() and database.isdigit()):
        raise ConfigError(
            "REDIS_URL: with REDIS_SENTINELS only its password and database number are used: "
            f"expected redis://[:password@]host/<number>, got {url_without_secrets(settings.redis_url)!r}"
        )


def _file_values(path: str) -> dict[str, str]:
    """The variables a dotenv file sets; none when it does not exist."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _client_keys(name: str, value: str, *, admin: bool) -> list[ClientKey]:
    """`KEY` (tenant default) or `TENANT:KEY`, comma-separated. A key with ':' in it is written with its
    tenant (`default:KEY`), so a misspelt tenant is an error rather than a key of the default tenant."""
    found = []
    for position, part in enumerate(split(value), start=1):
        tenant, separator, key = part.partition(":")
        if not separator:
            tenant, key = DEFAULT_TENANT, part
        elif not valid_name(tenant):
            raise ConfigError(
                f"{name}: entry {position} names tenant {tenant!r}; a tenant name is {NAME_RULE} "
                "(write TENANT:KEY, or KEY alone for the default tenant)"
            )
        found.append(ClientKey(tenant, key.strip(), admin))
    return found
