"""Kling's unified API on the service's side: looking a task up upstream at ``/tasks``, and showing
tasks in the unified shape (the create answer, ``GET /tasks``).

Kling answers ``GET /tasks?external_task_ids=`` with a list. A unified task is always looked up by its
external_task_id: the service gave it one (`options.external_task_id`, its own id) before it went to
Kling, so it is known even when Kling's answer to the create never came. A task absent from the list
is Kling's "not found" (1203), as a /v1 query's 404 is, so submission and reconciliation treat both
APIs alike.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from webhook_service.domain.task_types import task_type
from webhook_service.domain.tasks import Status, Task
from webhook_service.domain.unified_rules import TASKS_PATH
from webhook_service.integrations.kling import KlingClient, KlingRequestError

# The service's own final states, as the unified API's four statuses show them.
_STATUS = {Status.SUCCEED: "succeeded", Status.REJECTED: "failed", Status.EXPIRED: "failed"}
# At most this many ids in one GET /tasks: Kling documents batches but no limit; the service's own cap.
MAX_IDS = 100


def query_upstream(client: KlingClient, task: Task, ref: str) -> dict[str, Any]:
    """The task as Kling's query shows it: a /v1 type's at its path by `ref` (its task_id or
    external_task_id), a unified type's from ``/tasks`` by its external_task_id."""
    kind = task_type(task.type)
    if not kind.unified:
        return client.query(kind.item_path(ref))
    found: Any = client.query(f"{TASKS_PATH}?{urlencode({'external_task_ids': task.external_task_id})}")
    for item in found if isinstance(found, list) else []:
        if isinstance(item, dict) and item.get("external_id") == task.external_task_id:
            return item
    message = f"task {task.external_task_id!r} not found at {TASKS_PATH}"
    raise KlingRequestError(message, http_status=404, code=1203)


def status_of(task: Task) -> str:
    return _STATUS.get(task.status, task.status.value)


def create_answer(task: Task) -> dict[str, Any]:
    """The `data` of the unified create answer: `id` is the client's external_task_id while the task
    waits in the queue (as a /v1 answer's task_id is: never empty), Kling's once Kling has it."""
    return {
        "id": task.kling_task_id,
        "status": status_of(task),
        "create_time": task.upstream_created_at or task.created_at,
        "update_time": task.upstream_updated_at or task.updated_at,
        "external_id": task.client_task_id,
    }


def task_view(task: Task, base_url: str) -> dict[str, Any]:
    """One task as ``GET /tasks`` shows it: Kling's fields, each output with the archive's link beside
    Kling's `url` once archived. Billing is not kept (the legacy `final_unit_deduction` is shown as
    Kling's `billing` when there is one)."""
    view: dict[str, Any] = {**create_answer(task), "message": task.status_msg}
    result = task.result_with_archive_links(base_url) or {}
    outputs: list[dict[str, Any]] = [{"type": "video", **video} for video in result.get("videos") or []]
    outputs += [
        {"type": "image", **image} if isinstance(image, dict) else {"type": "image", "url": image}
        for image in result.get("images") or []
    ]
    if outputs:
        view["outputs"] = outputs
    if task.final_unit_deduction is not None:
        view["billing"] = [{"charge_type": "unit", "amount": task.final_unit_deduction}]
    return view
