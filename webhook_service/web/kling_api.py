"""The drop-in Kling API: the same paths, bodies and envelopes as Kling, served from our own records.

Registered twice, at `/v1/...` (Kling's own layout) and `/kling/v1/...` (the gateways' layout), so a
client of either switches by changing only its base URL.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from webhook_service.domain.errors import TaskExists
from webhook_service.domain.submission import accept, submit_and_wait
from webhook_service.domain.tasks import Status
from webhook_service.domain.validation import RequestInvalid, validate_image2video
from webhook_service.domain.views import not_found_message
from webhook_service.integrations import logs
from webhook_service.jobs import enqueue_dispatch
from webhook_service.web.auth import require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import CODE_BAD_REQUEST, CODE_NOT_FOUND, ApiError, envelope, json_object

bp = Blueprint("kling_api", __name__)

PAGE_NUM_MAX = 1000
PAGE_SIZE_MAX = 500


@bp.before_request
def authenticate() -> None:
    require_client(services().settings)


@bp.post("/v1/videos/image2video")
def create() -> tuple[Response, int]:
    body = json_object(request.get_data(), "the request body")
    settings = services().settings
    try:
        clean = validate_image2video(
            body, extra_fields=settings.kling_extra_fields, allowed_hosts=settings.notify_allowed_hosts
        )
    except RequestInvalid as invalid:
        problems = [p.as_dict() for p in invalid.problems]
        summary = "; ".join(f"{p['field'] or 'body'}: {p['message']}" for p in problems[:3])
        raise ApiError(400, CODE_BAD_REQUEST, f"invalid request: {summary}", errors=problems) from None
    logs.bind(external_task_id=clean.get("external_task_id"))
    respond_async = "respond-async" in request.headers.get("Prefer", "").lower()
    try:
        if respond_async:
            task = accept(services(), clean)
            enqueue_dispatch(services().redis, f"accepted-{task.external_task_id}")
        else:
            task = submit_and_wait(services(), clean, settings.submit_wait_s)
    except TaskExists:
        raise ApiError(
            400,
            CODE_BAD_REQUEST,
            f"external_task_id {clean['external_task_id']!r} is already used by another task",
        ) from None
    if task.status is Status.REJECTED and task.error:
        raise ApiError(task.error["http_status"] or 502, task.error["code"] or 5000, task.error["message"])
    data = {
        "task_id": task.task_id or "",
        "task_status": task.kling_view()["task_status"],
        "task_info": {"external_task_id": task.external_task_id},
        "created_at": task.upstream_created_at or task.created_at,
        "updated_at": task.upstream_updated_at or task.updated_at,
    }
    if task.status is Status.QUEUED:
        # Not upstream yet (async asked for, or the account is at its limit): it will be, in order.
        return jsonify(envelope(0, "QUEUED", data)), 202
    return jsonify(envelope(0, "SUCCEED", data)), 200


@bp.get("/v1/videos/image2video/<path:task_ref>")
def get_one(task_ref: str) -> Response:
    task = services().store.find(task_ref)
    if task is None:
        raise ApiError(404, CODE_NOT_FOUND, not_found_message(services(), task_ref))
    return jsonify(envelope(0, "SUCCEED", task.kling_view(services().settings.public_base_url)))


@bp.get("/v1/videos/image2video")
def list_tasks() -> Response:
    page_num = _bounded_int("pageNum", 1, PAGE_NUM_MAX, default=1)
    page_size = _bounded_int("pageSize", 1, PAGE_SIZE_MAX, default=30)
    tasks = services().store.newest(offset=(page_num - 1) * page_size, limit=page_size)
    return jsonify(
        envelope(0, "SUCCEED", [task.kling_view(services().settings.public_base_url) for task in tasks])
    )


def _bounded_int(name: str, low: int, high: int, *, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(
            400,
            CODE_BAD_REQUEST,
            f"{name} must be an integer from {low} to {high}",
            errors=[{"field": name, "code": "range", "message": f"must be an integer from {low} to {high}"}],
        )
    return value
