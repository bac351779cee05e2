"""Tasks the service lost (Redis lost or flushed), recorded again from what Kling and the archive keep.

Losing Redis loses the records, not the tasks: Kling still has them, calls back about them with a URL
whose token names the task, and lists them; the archive still has the videos fetched so far, each
task's beside its metadata.json. A task recorded again is marked `recovered`, its history says so,
and from then on news goes through `record_news` as for any task: the same state machine, the archive
job queued on `succeed`, events with their usual ids (a receiver may get one again, with the same
`webhook-id`, since whether it was delivered before the loss is unknown).

The task's metadata.json, when the archive has it, gives back what Kling does not know: the time the
service recorded the task (which names its archive folder, so the videos are found where they are
and never fetched into a second one), the model, the request and the history. The videos it lists are
taken as archived only when the stored files have the checksums it records. Without it, the task's
creation time is Kling's, and its request and the client's own `callback_url` are unknown.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import TaskExists, TaskNotFound
from webhook_service.domain.tasks import StatusUpdate, Task
from webhook_service.integrations.storage import StorageError
from webhook_service.services import Services

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


def recreate(
    services: Services,
    external_task_id: str,
    update: StatusUpdate,
    *,
    source: str,
    watermark_info: dict[str, Any] | None = None,
) -> None:
    """Record a task the service no longer knows, before the news about it is applied.

    Another caller may record it first (two callbacks at once): that is as good. A task removed on
    purpose (retention, while its removal notice lasts) stays removed: TaskNotFound. The task enters
    the open-task index, due at once, in the same transaction: if the news is never applied (a crash
    in between), reconciliation asks Kling about it.
    """
    if services.store.removal_notice(external_task_id) is not None:
        raise TaskNotFound(external_task_id)
    now = now_ms()
    upstream = update.upstream_created_at
    kling_created_at = upstream if upstream is not None and 0 < upstream <= now + DAY_MS else now
    metadata = _archived_metadata(services, external_task_id, kling_created_at) or {}
    request = metadata.get("request") or {}
    archived_at = metadata.get("created_at")
    task = Task(
        external_task_id=external_task_id,
        created_at=archived_at if isinstance(archived_at, int) else kling_created_at,
        model_name=metadata.get("model_name") or "",
        watermark_info=request.get("watermark_info") or watermark_info,
        archived_videos=metadata.get("videos") or [],
        recovered=True,
    )
    marker = {"at": now, "event": "recovered", "source": source, "from_archive": bool(metadata)}
    try:
        services.store.create(
            task,
            request,
            also=lambda pipe: services.open_tasks.check_later(pipe, external_task_id, 0),
            history=[*metadata.get("history", []), marker],
        )
    except TaskExists:
        return
    log.warning("%s recorded again from a %s (Redis lost it)", external_task_id, source)


def _archived_metadata(services: Services, external_task_id: str, around_ms: int) -> dict[str, Any] | None:
    """The task's metadata.json, in the folder of the day Kling created it or of the day before: the
    service records a task before sending it, a queued one possibly hours before."""
    for days_before in (0, 1):
        probe = Task(external_task_id=external_task_id, created_at=around_ms - days_before * DAY_MS)
        key = f"{task_folder(probe)}/metadata.json"
        try:
            if services.storage.stat(key) is None:
                continue
            metadata: dict[str, Any] = json.loads(services.storage.read_bytes(key))
        except (StorageError, ValueError) as error:
            log.warning("metadata.json of %s is unreadable, left aside: %s", external_task_id, error)
            return None
        if metadata.get("external_task_id") == external_task_id:
            return metadata
    return None
