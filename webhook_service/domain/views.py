"""The service's own view of a task: everything it knows, as `/v1/tasks/<id>`, the CLI and event
payloads show it."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.tasks import Task
from webhook_service.redaction import shown_url
from webhook_service.services import Services


def task_view(svc: Services, task: Task) -> dict[str, Any]:
    """The whole task: upstream status, archive state, archived videos with their links, history."""
    base_url = svc.settings.public_base_url
    data = task.to_dict()
    if task.client_callback_url:  # any API client may read any task: not a secret it may carry
        data["client_callback_url"] = shown_url(task.client_callback_url)
    data["task_result"] = task.result_with_archive_links(base_url)
    data["archived_videos"] = [
        {**video, "index": n, "url": task.archive_link(base_url, n)}
        for n, video in enumerate(task.archived_videos)
    ]
    data["history"] = svc.store.history(task.external_task_id)
    return data
