"""The service's own view of a task: everything it knows, and the archived videos themselves.

Kling's API has no place for the archive, so it lives beside it under `/v1/tasks/...`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, send_file

from webhook_service.auth import require_client
from webhook_service.errors import CODE_NOT_FOUND, ApiError, envelope
from webhook_service.lifecycle import Services
from webhook_service.lifecycle import current_services as services
from webhook_service.outbound import redact
from webhook_service.tasks import Task

bp = Blueprint("tasks", __name__, url_prefix="/v1/tasks")

PRESIGNED_URL_TTL_S = 3600


@bp.before_request
def authenticate() -> None:
    require_client(services().settings)


def task_view(svc: Services, task: Task) -> dict[str, Any]:
    """The whole task: upstream status, archive state, archived videos with their links, history."""
    base_url = svc.settings.public_base_url
    data = task.to_dict()
    if task.client_callback_url:  # any API client may read any task: not a secret it may carry
        data["client_callback_url"] = redact(task.client_callback_url)
    data["task_result"] = task.result_with_archive_links(base_url)
    data["archived_videos"] = [
        {**video, "index": n, "url": task.archive_link(base_url, n)}
        for n, video in enumerate(task.archived_videos)
    ]
    data["history"] = svc.store.history(task.external_task_id)
    return data


def _find(task_ref: str) -> Task:
    task = services().store.find(task_ref)
    if task is None:
        raise ApiError(404, CODE_NOT_FOUND, f"no task with task_id or external_task_id {task_ref!r}")
    return task


@bp.get("/<path:task_ref>")
def get_task(task_ref: str) -> Response:
    return jsonify(envelope(0, "SUCCEED", task_view(services(), _find(task_ref))))


@bp.get("/<path:task_ref>/videos/<int:index>")
def get_video(task_ref: str, index: int) -> Response:
    task = _find(task_ref)
    if index >= len(task.archived_videos):
        raise ApiError(
            404, CODE_NOT_FOUND, f"task has {len(task.archived_videos)} archived video(s); no {index}"
        )
    key = task.archived_videos[index]["key"]
    storage = services().storage
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise ApiError(404, CODE_NOT_FOUND, "the archived file is missing from the archive")
        return send_file(path, mimetype="video/mp4", conditional=True, download_name=path.name)
    url = storage.presigned_url(key, PRESIGNED_URL_TTL_S)
    if url is None:
        raise ApiError(404, CODE_NOT_FOUND, "the archive cannot serve this file")
    return redirect(url, code=302)
