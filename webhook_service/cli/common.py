"""What every `flask` command shares: exit codes for scripts, errors as one line, output helpers."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import redis

from webhook_service.services import Services
from webhook_service.web.context import current_services


def services() -> Services:
    """The Services of the app the `flask` command runs in."""
    return current_services()


EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """Printed as `Error: ...` on stderr, with the exit code scripts rely on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class, sets it per error


def guarded(command: F) -> F:
    """Redis down is exit 3 with one line saying so, not a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except redis.RedisError as error:
            raise CommandFailed(
                f"Redis is unavailable: {type(error).__name__}: {error}", EXIT_UNAVAILABLE
            ) from None

    return run  # type: ignore[return-value]


def when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def echo_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
