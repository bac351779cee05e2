"""How one setting's value is read: each reader names its variable in the error it raises, so a bad value
stops start-up with a message that says which one and what was expected (config.py reads them all)."""

from __future__ import annotations

from urllib.parse import urlsplit

from webhook_service.event_types import EVENT_TYPES
from webhook_service.redaction import url_without_secrets


class ConfigError(ValueError):
    """A setting is missing or malformed; the message starts with the variable's name."""


def sentinel_addresses(value: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port`; an IPv6 address in brackets (`[::1]:26379`)."""
    found = []
    for position, part in enumerate(split(value), start=1):
        host, _, port = part.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ConfigError(
                f"REDIS_SENTINELS: entry {position} is {part!r}; expected host:port, comma-separated"
            )
        found.append((host, int(port)))
    return tuple(found)


def host_and_port(host: str, port: str | int) -> str:
    """`host:port` as gunicorn's bind and a URL take it: an IPv6 address in brackets (`[::1]:8000`),
    or its last colon would be read as the port's."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def checked_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or (parts.scheme != "unix" and not parts.hostname):
        raise ConfigError(f"{name}: expected a {'/'.join(schemes)} URL, got {url_without_secrets(value)!r}")
    return value


def optional_url(name: str, value: str, schemes: tuple[str, ...]) -> str:
    return checked_url(name, value, schemes) if value else ""


def checked_archive_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in ("", "file", "s3") or (scheme == "s3" and not urlsplit(value).netloc):
        raise ConfigError(
            f"ARCHIVE_URL: expected file:///path, a directory or s3://bucket/prefix, got {value!r}"
        )
    return value


def boolean(name: str, value: str) -> bool:
    if value.lower() not in ("", "true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")


def positive_int(name: str, value: str, default: int, *, allow_zero: bool = False) -> int:
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or (int(value) == 0 and not allow_zero):
        least = "0 or more" if allow_zero else "greater than 0"
        raise ConfigError(f"{name}: expected a whole number {least}, got {value!r}")
    return int(value)


def positive_float(name: str, value: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name}: expected a number of seconds, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise ConfigError(f"{name}: must be greater than 0, got {value!r}")
    return number


def delays(name: str, value: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """Comma-separated delays in seconds, e.g. '5,300,1800'; `default` when empty."""
    if not value:
        return default
    return tuple(positive_float(name, part, allow_zero=True) for part in split(value))


def event_filter(name: str, value: str) -> frozenset[str]:
    """An event filter: comma-separated event types (empty: the caller's default)."""
    events = frozenset(split(value))
    unknown = sorted(events - set(EVENT_TYPES))
    if unknown:
        known = ", ".join(EVENT_TYPES)
        raise ConfigError(f"{name}: unknown event type(s) {', '.join(unknown)}; known ones: {known}")
    return events


def fork_queue_names(value: str) -> tuple[str, ...] | None:
    """WORKER_FORK_QUEUES: queue names, comma-separated, or `all` or `none` alone; the names are checked
    against the queues when a worker starts (jobs.fork_queues), since the queues are named in jobs.py,
    above the settings."""
    names = tuple(name.lower() for name in split(value))
    if len(names) > 1 and {"all", "none"} & set(names):
        raise ConfigError(f"WORKER_FORK_QUEUES: `all` and `none` stand alone, got {value!r}")
    return names or None


def check_whsec(name: str, value: str) -> None:
    from standardwebhooks import Webhook

    if not value.startswith("whsec_"):
        raise ConfigError(f"{name}: expected a Standard Webhooks secret starting with 'whsec_'")
    try:
        Webhook(value)
    except Exception:
        raise ConfigError(f"{name}: the part after 'whsec_' must be Base64") from None
