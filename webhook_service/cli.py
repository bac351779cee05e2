"""`flask` commands for operators: submit a task and follow it, list and inspect tasks and deliveries,
replay deliveries, run the Kling simulator.

They call the service's own code against Redis and Kling directly, not its HTTP API, so they work
while the web process is down and need no client credentials. Exit codes are for scripts:
0 done, 1 the task failed (or was rejected, expired, or its archive failed) or a delivery was not
found, 2 a usage or validation error, 3 Redis or Kling unavailable.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import redis
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from webhook_service.deliveries_api import parse_since
from webhook_service.lifecycle import current_services as services
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.records import DeliveryStatus, NotReplayable
from webhook_service.task_views import task_view
from webhook_service.tasks import ArchiveState, Status, Task

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
LIST_PAGE = 200
LIST_SCAN_MAX = 10_000  # `tasks list --status` looks this far back at most: never a scan of everything
F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(click.ClickException):
    """Printed as `Error: ...` on stderr, with the exit code scripts rely on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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


# --- tasks ---

tasks = AppGroup("tasks", help="List and inspect tasks.")
TASK_FILTERS = [s.value for s in Status] + [s.value for s in ArchiveState]


@tasks.command("list")
@click.option("--status", type=click.Choice(TASK_FILTERS), help="A task status or an archive state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@guarded
def list_tasks(status: str | None, limit: int, as_json: bool) -> None:
    """Newest first."""
    found: list[Task] = []
    for offset in range(0, LIST_SCAN_MAX, LIST_PAGE):
        page = services().store.newest(offset=offset, limit=LIST_PAGE)
        found += [t for t in page if status is None or status in (t.status.value, t.archive_state)]
        if len(found) >= limit or len(page) < LIST_PAGE:
            break
    found = found[:limit]
    if as_json:
        echo_json([task.to_dict() for task in found])
        return
    rows = [
        [when(t.created_at), t.status.value, t.archive_state or "-", t.external_task_id, t.task_id or "-"]
        for t in found
    ]
    echo_table(rows, ["created (UTC)", "status", "archive", "external_task_id", "task_id"])


@tasks.command("show")
@click.argument("task_ref")
@guarded
def show_task(task_ref: str) -> None:
    """Everything about one task (by task_id or external_task_id), as JSON."""
    task = services().store.find(task_ref)
    if task is None:
        raise CommandFailed(f"no task with task_id or external_task_id {task_ref!r}", EXIT_FAILED)
    echo_json(task_view(services(), task))


# --- deliveries ---

deliveries = AppGroup("deliveries", help="List notification deliveries and replay failed ones.")


@deliveries.command("list")
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]), help="failed: dead letters.")
@click.option("--task", "task_ref", help="Only this task's deliveries (external_task_id).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@guarded
def list_deliveries(status: str | None, task_ref: str | None, limit: int, as_json: bool) -> None:
    """Newest first (dead letters: by when they failed)."""
    found = DeliveryStore(services().redis).list(
        status=DeliveryStatus(status) if status else None, task=task_ref, limit=limit
    )
    if as_json:
        echo_json([delivery.view() for delivery in found])
        return
    rows = [
        [
            when(d.updated_at),
            d.status.value,
            d.sink.value,
            d.event_type,
            d.external_task_id,
            d.id,
            d.last_error or "",
        ]
        for d in found
    ]
    echo_table(
        rows, ["updated (UTC)", "status", "sink", "event", "external_task_id", "delivery", "last error"]
    )


@deliveries.command("replay")
@click.argument("delivery_id", required=False)
@click.option("--since", help="Every failed delivery since: ISO 8601 time, or a duration back: 30m, 2h, 1d.")
@click.option(
    "--status",
    type=click.Choice(["failed", "skipped"]),
    default="failed",
    show_default=True,
    help="With --since; skipped: never sent because their endpoint was disabled.",
)
@guarded
def replay(delivery_id: str | None, since: str | None, status: str) -> None:
    """Send one delivery (by id), or all that failed since a time, again with the same webhook-id."""
    if bool(delivery_id) == bool(since):
        raise click.UsageError("give either a delivery id or --since, not both")
    store = DeliveryStore(services().redis)
    if delivery_id:
        try:
            delivery = store.replay(delivery_id)
        except NotReplayable as error:
            raise CommandFailed(str(error), EXIT_FAILED) from None
        if delivery is None:
            raise CommandFailed(f"no delivery {delivery_id!r}", EXIT_FAILED)
        click.echo(f"replaying {delivery.id} ({delivery.event_type} to {delivery.view()['target']})")
        return
    try:
        since_ms = parse_since(since or "")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    replayed, refused = store.replay_since(since_ms, DeliveryStatus(status))
    for refused_id, why in refused.items():
        click.echo(f"not replayed {refused_id}: {why}", err=True)
    click.echo(f"replayed {len(replayed)} {status} deliveries since {since}")


# --- the simulator ---


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9100, show_default=True)
@with_appcontext
def simulator(host: str, port: int) -> None:
    """Serve the Kling simulator, accepting this service's Kling credentials, until Ctrl-C.

    Point KLING_API_BASE at it (http://HOST:PORT) and add 127.0.0.1 to DOWNLOAD_ALLOWED_HOSTS.
    """
    from kling_simulator.__main__ import main

    settings = services().settings
    credentials = ["--token", settings.kling_api_token] if settings.kling_api_token else []
    if settings.kling_access_key:
        credentials = ["--access-key", settings.kling_access_key, "--secret-key", settings.kling_secret_key]
    main(["--host", host, "--port", str(port), *credentials])


def register_cli(app: Flask) -> None:
    from webhook_service.cli_submit import submit

    for command in (submit, tasks, deliveries, simulator):
        app.cli.add_command(command)
