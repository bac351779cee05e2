"""`flask tasks list|show`: the tasks, newest first, and everything about one."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from webhook_service.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandFailed,
    echo_json,
    echo_table,
    guarded,
    services,
    when,
)
from webhook_service.domain.task_lists import newest_matching
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import ArchiveState, Status, Task
from webhook_service.domain.tenants import EVERYONE, Scope
from webhook_service.domain.views import not_found_message, task_view
from webhook_service.tenant_names import NAME_RULE, valid_name

LIST_SCAN_MAX = 10_000  # `tasks list --status` looks this far back at most: never a scan of everything

tasks = AppGroup("tasks", help="List and inspect tasks.")
TASK_FILTERS = [s.value for s in Status] + [s.value for s in ArchiveState]


@tasks.command("list")
@click.option("--status", type=click.Choice(TASK_FILTERS), help="A task status or an archive state.")
@click.option("--type", "type_name", type=click.Choice(list(TASK_TYPES)), help="One task type only.")
@click.option("--tenant", help="One tenant's tasks only (default: every tenant's).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@guarded
def list_tasks(
    status: str | None, type_name: str | None, tenant: str | None, limit: int, as_json: bool
) -> None:
    """Newest first."""
    if tenant is not None and not valid_name(tenant):
        raise CommandFailed(f"--tenant: {tenant!r} is not a tenant name ({NAME_RULE})", EXIT_USAGE)
    scope = EVERYONE if tenant is None else Scope(tenant)

    def keep(task: Task) -> bool:
        wanted_status = status is None or status in (task.status.value, task.archive_state)
        return wanted_status and type_name in (None, task.type)

    found = newest_matching(services().store, scope, keep, offset=0, limit=limit, scan_max=LIST_SCAN_MAX)
    if as_json:
        echo_json([task.to_dict() for task in found])
        return
    rows = [
        [
            when(t.created_at),
            t.status.value,
            t.archive_state or "-",
            t.external_task_id,
            t.task_id or "-",
            t.tenant,
            t.type,
        ]
        for t in found
    ]
    echo_table(rows, ["created (UTC)", "status", "archive", "external_task_id", "task_id", "tenant", "type"])


@tasks.command("show")
@click.argument("task_ref")
@guarded
def show_task(task_ref: str) -> None:
    """Everything about one task (by task_id or external_task_id), as JSON."""
    task = services().store.find(task_ref)
    if task is None:
        raise CommandFailed(not_found_message(services(), task_ref), EXIT_FAILED)
    echo_json(task_view(services(), task))
