"""The service's own view of a task: everything it knows, as `/v1/tasks/<id>`, the CLI and event
payloads show it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhook_service.domain.tasks import Task
from webhook_service.domain.tenants import DEFAULT_TENANT, EVERYONE, Scope, with_client_ids
from webhook_service.domain.video_extend import lineage_view
from webhook_service.redaction import shown_url
from webhook_service.services import Services

# What a history entry says in a line: its time, what happened, who said so, and the status after it.
SUMMARY_KEYS = frozenset({"at", "event", "source", "reported_status", "outcome", "status"})


def task_view(svc: Services, task: Task, *, history_last: int | None = None) -> dict[str, Any]:
    """The whole task: upstream status, archive state, archived videos or images with their links,
    history.

    With `history_last`, only a summary of the history, for copies that are stored and sent (event
    payloads): its newest entries, each as what happened and when (SUMMARY_KEYS: no bodies, no
    details the task itself shows), and `history_count`, how many there are in all. The whole of it
    stays one `GET /v1/tasks/<id>` away.
    """
    base_url = svc.settings.public_base_url
    data = task.to_dict()
    data["external_task_id"] = task.client_task_id  # the id its client chose; `tenant` says whose
    if task.client_callback_url:  # any API client may read any task: not a secret it may carry
        data["client_callback_url"] = shown_url(task.client_callback_url)
    data["task_result"] = task.result_with_archive_links(base_url)
    data["archived_videos"] = [
        {**video, "index": n, "url": task.archive_link(base_url, n)}
        for n, video in enumerate(task.archived_videos)
    ]
    data["archived_images"] = [
        {**image, "index": n, "url": task.archive_link(base_url, n, "images")}
        for n, image in enumerate(task.archived_images)
    ]
    data.update(lineage_view(svc, task))  # the task it extends, the tasks extending it: same tenant only
    if history_last is None:
        data["history"] = client_history(svc, task)
        return data
    entries, data["history_count"] = svc.store.history_tail(task.external_task_id, history_last)
    data["history"] = [{k: v for k, v in entry.items() if k in SUMMARY_KEYS} for entry in entries]
    return data


def client_history(svc: Services, task: Task) -> list[dict[str, Any]]:
    """The task's whole history as its client may see it: what Kling sent (callbacks, poll and create
    answers, its error messages) names the task by the upstream id `team-a~job-1`, shown as `job-1`."""
    entries: list[dict[str, Any]] = with_client_ids(svc.store.history(task.external_task_id), task.tenant)
    return entries


def not_found_message(svc: Services, task_ref: str, scope: Scope = EVERYONE) -> str:
    """Why there is no task by that id: never recorded, or removed after its retention (while the
    notice lasts), so a client that finds a task gone can tell a typo from a clean-up. Only the scope's
    own notices speak: for another tenant's id the answer is the same as for a typo."""
    notices = (svc.store.removal_notice(candidate) for candidate in [*scope.candidates(task_ref), task_ref])
    notice = next((n for n in notices if n is not None and scope.sees(n.get("tenant", DEFAULT_TENANT))), None)
    if notice is None:
        return f"no task with task_id or external_task_id {task_ref!r}"
    when = datetime.fromtimestamp(notice["removed_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    days = svc.settings.task_retention_s / 86400
    return (
        f"task {task_ref!r} was removed on {when}, {days:g} days after it finished (TASK_RETENTION_S); "
        "its videos or images and metadata.json stay in the archive"
    )
