"""`/v1/tasks/...`: the service's own view of a task (everything it knows), and its archived videos or
images; `/v1/tasks` lists them across every task type.

Kling's API has no place for the archive, so it lives beside it. Kling lists each type at its own path
only; a pipeline that uses several types wants one list of its tasks, narrowed by type or status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, send_file
from flask.typing import ResponseReturnValue

from webhook_service.domain.task_lists import newest_matching
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import Status, Task
from webhook_service.domain.views import not_found_message, task_view
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import CODE_NOT_FOUND, ApiError, envelope
from webhook_service.web.params import check_query, query, takes

bp = Blueprint("tasks", __name__, url_prefix="/v1/tasks")

PRESIGNED_URL_TTL_S = 3600
LIST_LIMIT_MAX = 100
LIST_HISTORY = 5  # a listed task's newest history entries, summarised; the rest is one GET away


@bp.before_request
def authenticate() -> None:
    require_client(services())


bp.before_request(check_query)


def _find(task_ref: str) -> Task:
    task = services().store.find(task_ref, current_scope())
    if task is None:
        raise ApiError(404, CODE_NOT_FOUND, not_found_message(services(), task_ref, current_scope()))
    return task


@bp.get("")
@takes("type", "status", "offset", "limit")
def list_tasks() -> Response:
    """The caller's tasks, newest first, every type unless `type` names one, any status unless `status`
    does."""
    asked = query()
    type_name = asked.choice("type", TASK_TYPES)
    status = asked.choice("status", [s.value for s in Status])
    offset = asked.integer("offset", 0, 1_000_000, 0)
    limit = asked.integer("limit", 1, LIST_LIMIT_MAX, 20)
    asked.done()
    found = newest_matching(
        services().store,
        current_scope(),
        lambda task: (
            (not type_name or task.type == type_name) and (not status or task.status.value == status)
        ),
        offset=offset,
        limit=limit,
    )
    return jsonify(
        envelope(0, "SUCCEED", [task_view(services(), t, history_last=LIST_HISTORY) for t in found])
    )


@bp.get("/<path:task_ref>")
def get_task(task_ref: str) -> Response:
    return jsonify(envelope(0, "SUCCEED", task_view(services(), _find(task_ref))))


@bp.get("/<path:task_ref>/videos/<int:index>")
def get_video(task_ref: str, index: int) -> ResponseReturnValue:
    return _archived_file(_find(task_ref).archived_videos, "video", index)


@bp.get("/<path:task_ref>/images/<int:index>")
def get_image(task_ref: str, index: int) -> ResponseReturnValue:
    return _archived_file(_find(task_ref).archived_images, "image", index)


def _archived_file(entries: list[dict[str, Any]], kind: str, index: int) -> ResponseReturnValue:
    """The file from the local archive, with the content type it was archived with; or a redirect to a
    presigned URL of the bucket."""
    if index >= len(entries):
        raise ApiError(404, CODE_NOT_FOUND, f"task has {len(entries)} archived {kind}(s); no {index}")
    key = entries[index]["key"]
    storage = services().storage
    path = storage.local_path(key)
    if path is not None:
        if not path.is_file():
            raise ApiError(404, CODE_NOT_FOUND, "the archived file is missing from the archive")
        mimetype = entries[index].get("content_type", "video/mp4")
        return send_file(path, mimetype=mimetype, conditional=True, download_name=path.name)
    url = storage.presigned_url(key, PRESIGNED_URL_TTL_S)
    if url is None:
        raise ApiError(404, CODE_NOT_FOUND, "the archive cannot serve this file")
    return redirect(url, code=302)
