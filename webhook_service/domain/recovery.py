"""Tasks the service lost (Redis lost or flushed), recorded again from what Kling and the archive keep.

Losing Redis loses the records, not the tasks: Kling still has them, calls back about them with a URL
whose token names the task, and lists them; the archive still has the videos fetched so far, each
task's beside its metadata.json. A task recorded again is marked `recovered`, its history says so,
and from then on news goes through `record_news` as for any task: the same state machine, the archive
job queued on `succeed`, events with their usual ids (a receiver may get one again, with the same
`webhook-id`, since whether it was delivered before the loss is unknown).

The task's metadata.json, when the archive has it, gives back what Kling does not know: the time the
service recorded the task (which names its archive folder, so the videos are found where they are
and never fetched into a second one), the model, the request, the client's own `callback_url` and the
history. The videos it lists are taken as archived only when the stored files have the checksums it
records. Without it (nothing archived yet), the inputs/request.json written when the task was
recorded gives the same but for the history and the videos. Without either, the task's creation
time is Kling's, and its request and the client's own `callback_url` are unknown. A /v1
task's type is known either way: a callback's URL token signs it, and Kling's /v1 lists are read per
type. A unified task found in Kling's unified list (`POST /tasks`, every unified type at once) has its
type from its metadata.json only: the list does not say which create path made it, so without one it is
recorded as UNIFIED_FALLBACK_TYPE and its `recovered` history entry says `type_known: false`. Every
unified type is queried alike (`GET /tasks`) and archived alike (videos), so following it is unaffected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from webhook_service.domain.archive import missing_from_archive
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.bounds import stored_body
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import TaskExists, TaskNotFound
from webhook_service.domain.inputs import MANIFEST_NAME
from webhook_service.domain.lifecycle import record_news
from webhook_service.domain.task_types import TASK_TYPES, task_type
from webhook_service.domain.tasks import (
    DEFAULT_TYPE,
    ArchiveState,
    Status,
    StatusUpdate,
    Task,
    update_from_kling_task,
)
from webhook_service.domain.tenants import tenant_of
from webhook_service.domain.unified_list import PRODUCT_TYPES
from webhook_service.domain.unified_rules import TASKS_PATH
from webhook_service.domain.video_extend import parent_video_of
from webhook_service.integrations.storage import StorageError
from webhook_service.jobs import archive_job_id, enqueue_archive, still_to_run
from webhook_service.services import Services

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
LIST_PAGE_SIZE = 500  # Kling's largest page
LIST_PAGES_MAX = 1000  # Kling's last page number; also the most pages read of the unified list
UNIFIED_FALLBACK_TYPE = "kling-3.0-text-to-video"  # a unified task's type when nothing records it


def recreate(
    services: Services,
    external_task_id: str,
    update: StatusUpdate,
    *,
    source: str,
    watermark_info: dict[str, Any] | None = None,
    type_name: str | None = None,
    default_type: str = DEFAULT_TYPE,
) -> None:
    """Record a task the service no longer knows, before the news about it is applied.

    Its type is `type_name` when the caller knows it (it read the task at its type's path), else the
    one its metadata.json records, else `default_type`, which the history then says was not known.
    A video-extend task's parent video is what Kling told, or what the request metadata.json kept names.

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
    metadata = _archived_record(services, external_task_id, kling_created_at)
    request = metadata.get("request") or {}
    recorded_at = metadata.get("created_at")
    callback_url = metadata.get("callback_url")
    task = Task(
        external_task_id=external_task_id,
        created_at=recorded_at if isinstance(recorded_at, int) else kling_created_at,
        model_name=metadata.get("model_name") or "",
        client_callback_url=callback_url if isinstance(callback_url, str) and callback_url else None,
        watermark_info=request.get("watermark_info") or watermark_info,
        archived_videos=metadata.get("videos") or [],
        archived_images=metadata.get("images") or [],
        recovered=True,
        tenant=metadata.get("tenant") or tenant_of(external_task_id),
        type=type_name or metadata.get("type") or default_type,
    )
    task.parent_video = parent_video_of(update.parent_video, request, task.type)
    marker = {"at": now, "event": "recovered", "source": source, "from_archive": bool(metadata)}
    if not (type_name or metadata.get("type")):
        marker["type_known"] = False
    try:
        services.store.create(
            task,
            request,
            also=lambda pipe: services.open_tasks.check_later(pipe, external_task_id, 0),
            history=[*metadata.get("history", []), marker],
        )
    except TaskExists:
        return
    log.warning("task %s was lost with Redis: recorded again (%s)", external_task_id, source)


def _archived_record(services: Services, external_task_id: str, around_ms: int) -> dict[str, Any]:
    """What the archive keeps of the task: its metadata.json (written with its first archived output),
    else, or for what an older metadata.json lacks (the callback_url), the inputs/request.json written
    when it was recorded (domain/inputs.py). {} when neither is there."""
    metadata = _archived_json(services, external_task_id, around_ms, "metadata.json")
    if metadata is not None and "callback_url" in metadata:
        return metadata
    manifest = _archived_json(services, external_task_id, around_ms, f"inputs/{MANIFEST_NAME}")
    return {**(manifest or {}), **(metadata or {})}


def _archived_json(
    services: Services, external_task_id: str, around_ms: int, name: str
) -> dict[str, Any] | None:
    """The task's file `name`, in the folder of the day Kling created it or of the day before: the
    service records a task before sending it, a queued one possibly hours before."""
    for days_before in (0, 1):
        probe = Task(external_task_id=external_task_id, created_at=around_ms - days_before * DAY_MS)
        key = f"{task_folder(probe)}/{name}"
        try:
            if services.storage.stat(key) is None:
                continue
            found = json.loads(services.storage.read_bytes(key))
        except (StorageError, ValueError) as error:
            log.warning("%s of %s is unreadable, left aside: %s", name, external_task_id, error)
            return None
        if isinstance(found, dict) and found.get("external_task_id") == external_task_id:
            return found
    return None


class Found(StrEnum):
    """What recovery did about one of Kling's tasks."""

    RECREATED = "recreated"
    KNOWN = "already known"
    NOT_OURS = "not the service's (no external_task_id)"
    REMOVED = "removed by retention"


class Archive(StrEnum):
    QUEUED = "archive queued"
    ARCHIVED = "already archived"
    FAILED = "archive failed before (not retried)"


@dataclass(frozen=True)
class Recovered:
    found: Found
    archive: Archive | None = None  # for a task that succeeded


def recover_from_kling(services: Services, data: dict[str, Any], type_name: str = DEFAULT_TYPE) -> Recovered:
    """Bring one task as Kling's list of its type (`type_name`) shows it into the records: recorded
    again if lost, its news applied (a poll's worth: nothing when known already), and, when it
    succeeded, its archive made unless every file is in the archive with its checksum. Safe to run
    again and again.

    A unified type's `type_name` is only a fallback (Kling's unified list does not say which type a
    task is): the item's `external_id` names it, and its metadata.json's type comes first."""
    unified = task_type(type_name).unified
    if unified:
        external_task_id = data.get("external_id")
    else:
        task_info = data.get("task_info")
        external_task_id = task_info.get("external_task_id") if isinstance(task_info, dict) else None
    if not isinstance(external_task_id, str) or not external_task_id:
        return Recovered(Found.NOT_OURS)
    update = update_from_kling_task(data, max_outputs=services.settings.callback_max_outputs)
    found = Found.KNOWN
    if services.store.get(external_task_id) is None:
        watermark_info = data.get("watermark_info")
        try:
            recreate(
                services,
                external_task_id,
                update,
                source="recover",
                watermark_info=watermark_info if isinstance(watermark_info, dict) else None,
                type_name=None if unified else type_name,
                default_type=type_name,
            )
        except TaskNotFound:
            return Recovered(Found.REMOVED)
        found = Found.RECREATED
    task, _ = record_news(services, external_task_id, update, source="recover", detail=stored_body(data))
    if task.status is not Status.SUCCEED:
        return Recovered(found)
    return Recovered(found, _archive(services, task))


def _archive(services: Services, task: Task) -> Archive:
    if task.archive_state is ArchiveState.FAILED:
        return Archive.FAILED
    if not missing_from_archive(services, task):
        return Archive.ARCHIVED
    if not still_to_run(services.redis, archive_job_id(task.external_task_id)):
        retry_base_s = services.settings.archive_retry_base_s
        enqueue_archive(services.redis, task.external_task_id, retry_base_s=retry_base_s)
    return Archive.QUEUED


def kling_tasks_since(services: Services, since_ms: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Kling's tasks of every type the service serves, as (type, task): each /v1 type's list in turn,
    then the unified API's one list (`POST /tasks`), its tasks as (UNIFIED_FALLBACK_TYPE, task)."""
    for name, kind in TASK_TYPES.items():
        if not kind.unified:
            yield from ((name, data) for data in _listed_since(services, kind.path, since_ms))
    unified_packs = {kind.pack for kind in TASK_TYPES.values() if kind.unified}
    products = sorted(product for product, pack in PRODUCT_TYPES.items() if pack in unified_packs)
    if products:
        yield from ((UNIFIED_FALLBACK_TYPE, data) for data in _unified_since(services, since_ms, products))


def _listed_since(services: Services, path: str, since_ms: int) -> Iterator[dict[str, Any]]:
    """The tasks of the list at `path`, newest first, page after page, until one created before
    `since_ms`. Each once, though a task created meanwhile shifts the pages."""
    seen: set[str] = set()
    client = services.kling.get()
    for page_num in range(1, LIST_PAGES_MAX + 1):
        page = client.list(path, page_num, LIST_PAGE_SIZE)
        for data in page:
            created_at = data.get("created_at")
            if isinstance(created_at, int) and created_at < since_ms:
                return
            task_id = str(data.get("task_id"))
            if task_id not in seen:
                seen.add(task_id)
                yield data
        if len(page) < LIST_PAGE_SIZE:
            return


def _unified_since(services: Services, since_ms: int, products: list[str]) -> Iterator[dict[str, Any]]:
    """The unified list's tasks of the product types the unified types make, created from `since_ms`
    to now, page after page by `next_cursor`. The whole body goes with every cursor: Kling documents
    the cursor, not whether it keeps the window and filters. Each task once."""
    body: dict[str, Any] = {
        "start_time": str(since_ms),
        "end_time": str(now_ms() + 1),
        "limit": LIST_PAGE_SIZE,
        "filters": [{"key": "product_type", "values": products}],
    }
    seen: set[str] = set()
    client = services.kling.get()
    for _ in range(LIST_PAGES_MAX):
        page = client.list_by_cursor(TASKS_PATH, body)
        for data in page.get("result") or []:
            if isinstance(data, dict) and (task_id := str(data.get("id"))) not in seen:
                seen.add(task_id)
                yield data
        cursor = page.get("next_cursor")
        if not (page.get("has_more") and isinstance(cursor, str) and cursor):
            return
        body["cursor"] = cursor
