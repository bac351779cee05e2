"""A video-extend task and the task whose video it extends, linked both ways.

Kling's extension names a *video* (`video_id`), not a task. The store keeps an index from each video id
in a task's result to that task (`video:<id>`, written as the result arrives, by callback, poll or
recovery) and, for each video, the set of tasks extending it (`video:<id>:extensions`, written when the
extension is recorded); both leave with their tasks (domain/retention.py, through the store).

Tenants share one Kling account, and Kling would extend any of the account's videos. So a tenant may
extend only a video of its *own* task, the rule every video id in a body follows (domain/ownership.py):
another tenant's video is refused exactly as one the service has never seen, and a video made outside
the service is refused too. Knowing the video also lets the service check what Kling documents of it before
anything is paid for: the whole may not pass 3 minutes, videos are kept 30 days, and kling-v1-5's
videos cannot be extended. The links shown (a task's parent, its extensions) stay within the task's
tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from webhook_service.domain.clock import now_ms
from webhook_service.domain.ownership import video_of_tenant
from webhook_service.domain.problems import FieldProblem, RequestInvalid
from webhook_service.domain.store import video_ids
from webhook_service.domain.tasks import Task
from webhook_service.domain.video_extend_rules import NAME as EXTEND_TYPE
from webhook_service.services import Services

LONGEST_S = 180.0  # Kling: an extended video may not pass 3 minutes
SHORTEST_EXTENSION_S = 4.0  # Kling adds 4 to 5 seconds: a video longer than 176 s cannot be extended
KLING_KEEPS_VIDEOS_MS = 30 * 86400 * 1000
NOT_EXTENDABLE_MODELS = ("kling-v1-5",)  # Kling's reference: its videos cannot be extended


@dataclass
class Lineage:
    """Within one tenant: the task that made the video a task extends, and the tasks extending its own
    videos, each with the id of the video it extends."""

    parent: Task | None = None
    extensions: list[tuple[str, Task]] = field(default_factory=list)


def link_to_parent(services: Services, task: Task, video_id: str) -> Task:
    """Record on the new extension `task` the video it extends and, from the task that made the video,
    the model Kling will use (usage counts by it). Returns that task; RequestInvalid when the video is
    not one of the task's tenant's, or is one Kling documents it cannot extend."""
    parent = video_of_tenant(services, task.tenant, video_id, "video_id")
    video = next(v for v in (parent.task_result or {}).get("videos", []) if str(v.get("id")) == video_id)
    problems = []
    seconds = _seconds(video.get("duration"))
    if seconds is not None and seconds + SHORTEST_EXTENSION_S > LONGEST_S:
        message = (
            f"is {seconds:g} s long: extended by 4 to 5 s it would pass Kling's limit of "
            f"{LONGEST_S / 60:g} minutes"
        )
        problems.append(FieldProblem("video_id", "too_long", message))
    if parent.model_name in NOT_EXTENDABLE_MODELS:
        message = f"was made by {parent.model_name}, whose videos Kling cannot extend"
        problems.append(FieldProblem("video_id", "not_supported_by_model", message))
    made_at = parent.upstream_updated_at or parent.updated_at
    if now_ms() - made_at > KLING_KEEPS_VIDEOS_MS:
        message = "was made more than 30 days ago: Kling has removed it and cannot extend it"
        problems.append(FieldProblem("video_id", "expired", message))
    if problems:
        raise RequestInvalid(problems)
    task.parent_video = {"id": video_id}
    task.model_name = parent.model_name
    return parent


def parent_video_of(
    told: dict[str, str] | None, request: dict[str, Any], type_name: str
) -> dict[str, str] | None:
    """The video a task recorded again after Redis lost it extends: as Kling told it (`told`, from
    `task_info.parent_video`), else as the request its metadata.json kept names it (`video_id`). So a
    recovered extension is listed among its parent's extensions again."""
    if told:
        return told
    video_id = request.get("video_id")
    return {"id": video_id} if type_name == EXTEND_TYPE and isinstance(video_id, str) and video_id else None


def lineage(services: Services, task: Task) -> Lineage:
    """The task's parent and extensions, as far as the service knows them, in the task's own tenant."""
    found = Lineage()
    store = services.store
    if task.parent_video and (maker := store.maker_of_video(task.parent_video["id"])):
        parent = store.get(maker)
        found.parent = parent if parent is not None and parent.tenant == task.tenant else None
    for video_id in sorted(video_ids(task)):
        extending = store.many(store.extensions_of_video(video_id))
        found.extensions += [(video_id, ext) for ext in extending if ext.tenant == task.tenant]
    found.extensions.sort(key=lambda pair: pair[1].created_at)
    return found


def lineage_view(services: Services, task: Task) -> dict[str, Any]:
    """`parent_task` and `extensions` as `/v1/tasks/<id>` and event payloads show them: each task by
    its Kling task_id and its client's own external_task_id, both of which its tenant can look up."""
    found = lineage(services, task)
    return {
        "parent_task": _reference(found.parent) if found.parent else None,
        "extensions": [{**_reference(ext), "video_id": video_id} for video_id, ext in found.extensions],
    }


def _reference(task: Task) -> dict[str, Any]:
    view = task.kling_view()
    return {
        "task_id": view["task_id"],
        "external_task_id": task.client_task_id,
        "type": task.type,
        "task_status": view["task_status"],
    }


def _seconds(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None
