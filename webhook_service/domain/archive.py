"""Archive every finished video or image before Kling deletes it.

One job per task (deterministic id). It downloads each video (and its watermarked copy when one was
asked for), or each image of an image task, into a staging file beside its destination, then commits
it atomically, so the archive never holds a partial file. An image's type (PNG, JPEG, ...) is read from
its first bytes, else from the Content-Type it was served with, never from its URL: it names the file
(`image_<index>.png`) and is its content type in the archive. Killed half-way, the job runs again and
resumes the staging file; run again after success, it finds every file in place with the same checksum
and does nothing. A video whose file is in place, committed by this module, but that the task's record
does not list (Redis lost the record after the commit) is taken as it is, never fetched a second time:
its key names the task's folder and Kling's video id, so it can only hold that video. The RQ job that
calls it is workers/archive.py.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from redis.client import Pipeline

from webhook_service.domain.archive_layout import segment, task_folder
from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import EventType
from webhook_service.domain.inputs import archived_inputs, sniff, without_base64
from webhook_service.domain.retention import schedule_removal
from webhook_service.domain.tasks import ArchiveState, Outcome, Status, Task, image_index
from webhook_service.integrations import logs, metrics
from webhook_service.integrations.download import Downloaded, DownloadError, DownloadPolicy, download
from webhook_service.notify.routing import raise_event
from webhook_service.services import Services

log = logging.getLogger(__name__)

# Image types by the Content-Type a server gives them, when their bytes are none sniff() knows.
_DECLARED_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def archive_task(svc: Services, external_task_id: str, *, retries_left: int = 0) -> None:
    """Archive the task's videos or images. A download that fails for now is raised again, for the
    caller to retry (RQ, on its back-off schedule) while `retries_left`; with none left the archive has
    failed."""
    logs.bind(external_task_id=external_task_id)
    task = svc.store.get(external_task_id)
    if task is None or task.status is not Status.SUCCEED:
        log.warning("archive job for %s: task missing or not succeeded, nothing to do", external_task_id)
        return
    items = _items(task)
    if not items:
        outputs = "images" if "images" in (task.task_result or {}) else "videos"
        error = {"reason": f"no_{outputs}", "message": f"succeed without {outputs}"}
        _finish(svc, task, ArchiveState.FAILED, error=error)
        return
    if _already_archived(svc, task, items):
        return
    _set_state(svc, external_task_id, ArchiveState.ARCHIVING, "archive_started")
    policy = DownloadPolicy(
        max_bytes=svc.settings.download_max_bytes, allowed_hosts=svc.settings.download_allowed_hosts
    )
    archived: list[dict[str, Any]] = []
    for item in items:
        existing = _archived_entry(svc, task, item)
        if existing is not None:
            archived.append(existing)
            continue
        if (found := _committed_before(svc, item)) is not None:
            archived.append(found)
            _record(svc, external_task_id, found)
            continue
        staging = svc.storage.staging_path(item["key"])
        try:
            result = _timed_download(item["source_url"], staging, policy)
        except DownloadError as error:
            _handle_download_error(svc, task, item, error, retries_left)
            return
        if item["kind"] == "image":
            typed = _typed_image(svc, task, item, result)
            if typed is None:
                return
            item = typed
        content_type = item.get("content_type", "video/mp4")
        stored = svc.storage.commit(staging, item["key"], sha256=result.sha256, content_type=content_type)
        entry = {**item, "size": stored.size, "sha256": result.sha256, "archived_at": now_ms()}
        archived.append(entry)
        _record(svc, external_task_id, entry)
    task = svc.store.get(external_task_id) or task
    _write_metadata(svc, task)
    _finish(svc, task, ArchiveState.ARCHIVED)


def missing_from_archive(svc: Services, task: Task) -> list[str]:
    """The keys of the task's videos and images that are not in the archive with the checksum its
    record gives them (an image's without its extension): what its archive job would still fetch."""
    return [item["key"] for item in _items(task) if _archived_entry(svc, task, item) is None]


def _timed_download(url: str, staging: Path, policy: DownloadPolicy) -> Downloaded:
    started = time.perf_counter()
    try:
        result = download(url, staging, policy)
    except DownloadError as error:
        metrics.downloaded(error.reason, time.perf_counter() - started)
        raise
    metrics.downloaded("ok", time.perf_counter() - started, result.size)
    return result


def _items(task: Task) -> list[dict[str, Any]]:
    """What to fetch: every result video, plus its watermarked copy when the request asked for one, and
    every result image. An image's key has no extension yet: its bytes will say which."""
    folder = task_folder(task)
    want_watermark = bool((task.watermark_info or {}).get("enabled"))
    items = []
    for position, image in enumerate((task.task_result or {}).get("images") or []):
        if isinstance(image, dict) and image.get("url"):
            index = image_index(image, position)
            key = f"{folder}/image_{segment(str(index))}"
            items.append({"image_index": index, "kind": "image", "source_url": image["url"], "key": key})
    for video in (task.task_result or {}).get("videos", []):
        video_id = str(video.get("id", ""))
        if video.get("url"):
            items.append(_item(folder, video_id, "video", video["url"]))
        if want_watermark and video.get("watermark_url"):
            items.append(_item(folder, video_id, "watermark", video["watermark_url"]))
    return items


def _item(folder: str, video_id: str, kind: str, url: str) -> dict[str, Any]:
    name = segment(video_id) + ("_watermark" if kind == "watermark" else "")
    return {"video_id": video_id, "kind": kind, "source_url": url, "key": f"{folder}/{name}.mp4"}


def _typed_image(
    svc: Services, task: Task, item: dict[str, Any], result: Downloaded
) -> dict[str, Any] | None:
    """The image's item with its key's extension and its content type: by its first bytes, else as it
    was served. Neither an image (a CDN's error page served with 200): the archive has failed, None."""
    with open(result.path, "rb") as f:
        typed = sniff(f.read(16))
    declared = (result.content_type or "").split(";")[0].strip().lower()
    if typed is None and declared in _DECLARED_IMAGE_TYPES:
        typed = declared, _DECLARED_IMAGE_TYPES[declared]
    if typed is None:
        svc.storage.delete_staging(item["key"])
        message = f"not an image we know (served as {declared or 'no Content-Type'})"
        failure = {"reason": "not_an_image", "message": message, "source_url": item["source_url"]}
        _finish(svc, task, ArchiveState.FAILED, error=failure)
        return None
    return {**item, "key": f"{item['key']}.{typed[1]}", "content_type": typed[0]}


def _archived_entry(svc: Services, task: Task, item: dict[str, Any]) -> dict[str, Any] | None:
    """The task's record of `item`, if the stored object is really there with the same checksum. An
    image is found by its index (its key's extension is only known once it is downloaded)."""
    if item["kind"] == "image":
        entry = next((i for i in task.archived_images if i["image_index"] == item["image_index"]), None)
    else:
        entry = next((v for v in task.archived_videos if v["key"] == item["key"]), None)
    if entry is None:
        return None
    stored = svc.storage.stat(entry["key"])
    return entry if stored is not None and stored.sha256 == entry["sha256"] else None


def _committed_before(svc: Services, item: dict[str, Any]) -> dict[str, Any] | None:
    """A video's file already committed at its key (with the sha256 this module records), though the
    task's record does not list it: Redis lost the record after the commit. An image's key has no
    extension until its bytes are read: it is fetched again."""
    if item["kind"] == "image":
        return None
    stored = svc.storage.stat(item["key"])
    if stored is None or stored.sha256 is None:
        return None
    return {
        **item,
        "size": stored.size,
        "sha256": stored.sha256,
        "archived_at": now_ms(),
        "found_in_archive": True,
    }


def _already_archived(svc: Services, task: Task, items: list[dict[str, Any]]) -> bool:
    return task.archive_state is ArchiveState.ARCHIVED and all(
        _archived_entry(svc, task, item) for item in items
    )


def _handle_download_error(
    svc: Services, task: Task, item: dict[str, Any], error: DownloadError, retries_left: int
) -> None:
    detail: dict[str, Any] = {
        "reason": error.reason,
        "http_status": error.http_status,
        "message": str(error),
        "source_url": item["source_url"],
        **{name: item[name] for name in ("video_id", "image_index") if name in item},
    }
    if error.permanent:
        svc.storage.delete_staging(item["key"])
        _finish(svc, task, ArchiveState.FAILED, error=detail)
        return
    if not retries_left:
        _finish(svc, task, ArchiveState.FAILED, error={**detail, "reason": f"gave_up:{error.reason}"})
    else:
        svc.store.append_history(
            task.external_task_id, {"event": "archive_retry", "source": "worker", **detail}
        )
    raise error  # RQ retries on its back-off schedule; the staging file stays for resuming


def _set_state(
    svc: Services,
    external_task_id: str,
    state: ArchiveState,
    event: str,
    raises: EventType | None = None,
    **extra: Any,
) -> None:
    def change(task: Task) -> Outcome:
        task.archive_state = state
        task.archive_error = extra.get("error")
        task.updated_at = now_ms()
        return Outcome.APPLIED

    def notify(pipe: Pipeline, after: Task) -> None:
        if raises is not None:  # the archive is settled: the task's retention counts from now
            raise_event(svc.redis, pipe, svc.settings, svc.keys, after, raises)
            schedule_removal(svc, pipe, after.external_task_id)

    history = {"event": event, "source": "worker", **extra}
    svc.store.update(external_task_id, change, history=history, after_commit=notify)


def _record(svc: Services, external_task_id: str, entry: dict[str, Any]) -> None:
    image = entry["kind"] == "image"

    def change(task: Task) -> Outcome:
        if image:
            kept = [i for i in task.archived_images if i["image_index"] != entry["image_index"]]
            task.archived_images = [*kept, entry]
        else:
            task.archived_videos = [v for v in task.archived_videos if v["key"] != entry["key"]] + [entry]
        return Outcome.APPLIED

    event = "image_archived" if image else "video_archived"
    svc.store.update(external_task_id, change, history={"event": event, "source": "worker", **entry})


def _finish(svc: Services, task: Task, state: ArchiveState, error: dict[str, Any] | None = None) -> None:
    event = "archived" if state is ArchiveState.ARCHIVED else "archive_failed"
    raises = EventType.ARCHIVED if state is ArchiveState.ARCHIVED else EventType.ARCHIVE_FAILED
    _set_state(svc, task.external_task_id, state, event, raises, **({"error": error} if error else {}))
    log.info("archive of %s: %s %s", task.external_task_id, state, error or "")


def _write_metadata(svc: Services, task: Task) -> None:
    """metadata.json beside the videos or images: enough to know what a file is without the service.
    The request's images are its archived inputs (`inputs/`), listed with their sha256."""
    request = svc.store.request(task.external_task_id) or {}
    metadata = {
        "external_task_id": task.external_task_id,
        "tenant": task.tenant,
        "type": task.type,
        "task_id": task.task_id,
        "upstream_task_ids": task.upstream_task_ids,
        "model_name": task.model_name,
        "callback_url": task.client_callback_url,
        "status": task.status.value,
        "status_msg": task.status_msg,
        "request": without_base64(request),
        "inputs": archived_inputs(request),
        "videos": task.archived_videos,
        "images": task.archived_images,
        "task_result": task.task_result,
        "created_at": task.created_at,
        "upstream_created_at": task.upstream_created_at,
        "upstream_updated_at": task.upstream_updated_at,
        "archived_at": now_ms(),
        "history": svc.store.history(task.external_task_id),
    }
    folder = (task.archived_videos or task.archived_images)[0]["key"].rsplit("/", 1)[0]
    svc.storage.put_bytes(
        f"{folder}/metadata.json", json.dumps(metadata, indent=2).encode(), "application/json"
    )
