"""Logs: one JSON object per line, carrying the task and request they are about, with secrets redacted.

A log line is read by machines (a log shipper, `jq`) far more often than by eyes, so it is JSON with the
same keys everywhere. The ids that tie a line to a task (`external_task_id`, `task_id`, `request_id`,
`job_id`) come from a context variable that the request handlers and jobs set once, so the code that
logs need not pass them along. Redaction happens in a filter on the handler, the one place every line
passes through, because a secret can reach a log line from anywhere: a URL in an exception, a request
body in a debug message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from webhook_service.config import Settings

_context: ContextVar[dict[str, str]] = ContextVar("log_context")

# A LogRecord's own attributes; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_PARAM = r"[\w.-]*(?:token|key|secret|signature|sig|password|passwd|pwd|auth|credential)[\w.-]*"
# Each pattern with what a line must contain for it to match at all (in lower case when the pattern
# ignores case): a substring test is far cheaper than a regex, and most lines contain none of them.
_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    # A password in a URL: scheme://user:password@host
    ("@", re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s@/]+@", re.I), r"\1***@"),
    # Secret-looking query parameters and key=value pairs: ?token=..., &X-Amz-Signature=..., api_key=...
    ("=", re.compile(rf"(\b{_SECRET_PARAM}=)[^\s&\"',;]+", re.I), r"\1***"),
    # Authorization headers, in any quoting: "Authorization": "Bearer x", Authorization: Basic x
    (
        "authorization",
        re.compile(r"(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic)\s+)?[^\s'\",}]+", re.I),
        r"\1***",
    ),
    ("bearer", re.compile(r"\b(bearer\s+)[\w.~+/=-]+", re.I), r"\1***"),
    ("whsec_", re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_***"),
    ("eyj", re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"), "<jwt>"),
]
# Base64 bodies (images, masks): long runs of Base64 characters. 200 leaves hex digests and ids alone.
_BASE64_MIN = 200
_BASE64_RUN = re.compile(rf"[A-Za-z0-9+/]{{{_BASE64_MIN},}}={{0,2}}")
_MIN_SECRET_LENGTH = 8
_secrets: set[str] = set()
_secrets_pattern: re.Pattern[str] | None = None  # one alternation of them all, longest first


def bind(**fields: str | None) -> None:
    """Add ids to every line logged from now on in this request or job (None leaves a field out)."""
    _context.set({**_context.get({}), **{name: value for name, value in fields.items() if value}})


def reset(**fields: str | None) -> None:
    """Start a fresh context (a new request or job): nothing from the previous one carries over."""
    _context.set({name: value for name, value in fields.items() if value})


def add_secrets(values: Iterable[str]) -> None:
    """Exact values never to show, whatever the pattern: the configured keys and tokens."""
    global _secrets_pattern
    _secrets.update(value for value in values if len(value) >= _MIN_SECRET_LENGTH)
    if _secrets:
        _secrets_pattern = re.compile("|".join(map(re.escape, sorted(_secrets, key=len, reverse=True))))


def secret_values(settings: Settings) -> list[str]:
    """The settings' secrets, including whole notification URLs (their path or query is often the key)."""
    return [
        settings.secret_key,
        *settings.secret_key_fallbacks,
        settings.kling_api_token,
        settings.kling_secret_key,
        settings.kling_webhook_secret,
        settings.service_secret_key,
        settings.notify_webhook_secret,
        settings.slack_webhook_url,
        *(client.key for client in settings.client_keys),
        *settings.notify_webhook_urls,
    ]


def redact(text: str) -> str:
    """Runs on every log line, so each pattern runs only on a line that could hold what it finds."""
    if _secrets_pattern is not None:
        text = _secrets_pattern.sub("***", text)
    if len(text) >= _BASE64_MIN:
        text = _BASE64_RUN.sub(lambda match: f"<base64, {len(match.group())} characters>", text)
    lowered = text.lower()
    for needle, pattern, replacement in _PATTERNS:
        if needle in lowered:
            text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Renders the message (and the traceback) redacted, so no formatter can show the raw values."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...ids and extra fields, "exception"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context.get({}),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets())
    return handler


def configure(settings: Settings | None = None, level: int = logging.INFO) -> None:
    """JSON lines on stderr for the whole process, replacing whatever was configured before."""
    logging.basicConfig(level=level, handlers=[json_handler()], force=True)
    if settings is not None:
        add_secrets(secret_values(settings))


def gunicorn_logconfig() -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its own error and access logs as JSON lines too."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "filters": ["redact"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"redact": {"()": RedactSecrets}},
        "handlers": {
            "stderr": {**handler, "stream": "ext://sys.stderr"},
            "stdout": {**handler, "stream": "ext://sys.stdout"},
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }
