"""The drop-in Kling API: the same paths, bodies and envelopes as Kling, served from our own records.

Registered twice, at `/v1/...` (Kling's own layout) and `/kling/v1/...` (the gateways' layout), so a
client of either switches by changing only its base URL; and for each task type the service serves
(domain/task_types.py), at that type's path, where a task is found only by its own type's routes, as at
Kling.

A synchronous create holds its web thread while it waits for Kling (a free slot, then Kling's answer):
up to SUBMIT_WAIT_S, or KLING_TIMEOUT_S when Kling is slow. Only SUBMIT_WAITING_MAX of them may do so
at once in a process; the others are answered as `Prefer: respond-async` is, 202 queued at once, and a
worker sends them. With fewer of them than the process has threads (gunicorn.conf.py checks it), a
full account or a slow Kling can never take the thread Kling's callbacks and the health checks need.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Flask, Response, jsonify, request
from flask.blueprints import BlueprintSetupState

from webhook_service.domain.errors import TaskExists
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.store_checks import TAKEN, validated
from webhook_service.domain.submission import accept, submit_and_wait
from webhook_service.domain.task_lists import newest_matching
from webhook_service.domain.task_types import TASK_TYPES, task_type
from webhook_service.domain.tasks import Status, Task
from webhook_service.domain.unified import create_answer
from webhook_service.domain.views import not_found_message
from webhook_service.integrations import logs, metrics
from webhook_service.jobs import wake_dispatch
from webhook_service.web import waiting
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.context import services_of
from webhook_service.web.errors import (
    CODE_BAD_REQUEST,
    CODE_NOT_FOUND,
    ApiError,
    envelope,
    invalid_request,
    json_object,
    whole_body,
)
from webhook_service.web.identify_face import PATH as IDENTIFY_FACE_PATH
from webhook_service.web.identify_face import identify_face

bp = Blueprint("kling_api", __name__)

PAGE_NUM_MAX = 1000
PAGE_SIZE_MAX = 500


@bp.record_once
def give_the_process_a_waiting_budget(state: BlueprintSetupState) -> None:
    app = cast(Flask, state.app)
    waiting.install(app, waiting.SUBMITS, services_of(app).settings.submit_waiting_max)


@bp.before_request
def authenticate() -> None:
    require_client(services())


def create(type_name: str) -> tuple[Response, int]:
    body = json_object(whole_body(request), "the request body", request.content_type)
    settings = services().settings
    tenant = current_scope().tenant
    try:
        clean = validated(
            services(),
            tenant,
            type_name,
            body,
            extra_fields=settings.kling_extra_fields,
            allowed_hosts=settings.notify_allowed_hosts,
        )
    except RequestInvalid as invalid:  # the body's problems, and then the store's too (store_checks.py)
        raise invalid_request(invalid) from None
    logs.bind(external_task_id=clean.get("external_task_id"))
    respond_async = "respond-async" in request.headers.get("Prefer", "").lower()
    budget = waiting.budget(waiting.SUBMITS)
    may_wait = not respond_async and budget.acquire(blocking=False)
    try:
        if not respond_async:
            metrics.sync_create(waited=may_wait)
        if may_wait:
            task = submit_and_wait(services(), clean, settings.submit_wait_s, tenant, type_name)
        else:
            task = accept(services(), clean, tenant, type_name)
            wake_dispatch(
                services().redis, services().keys.dispatch_wanted, f"accepted-{task.external_task_id}"
            )
    except RequestInvalid as invalid:  # the store's problems with a body that has none of its own
        raise invalid_request(invalid) from None
    except TaskExists:
        message = f"external_task_id {clean['external_task_id']!r} is already used by another task"
        field = "options.external_task_id" if task_type(type_name).unified else "external_task_id"
        raise ApiError(
            400,
            CODE_BAD_REQUEST,
            message,
            errors=[{"field": field, "code": "taken", "message": TAKEN}],
        ) from None
    finally:
        if may_wait:
            budget.release()
    if task.status is Status.REJECTED and task.error:
        raise ApiError(task.error["http_status"] or 502, task.error["code"] or 5000, task.error["message"])
    data = {
        "task_id": task.kling_task_id,
        "task_status": task.kling_view()["task_status"],
        "task_info": {"external_task_id": task.client_task_id},
        "created_at": task.upstream_created_at or task.created_at,
        "updated_at": task.upstream_updated_at or task.updated_at,
    }
    if task_type(type_name).unified:  # Kling's unified API answers in its own shape (web/unified_api.py)
        data = create_answer(task)
    if task.status is Status.QUEUED:
        # Not upstream yet (async asked for, the waiting budget spent, or the account at its limit): it
        # will be, in order.
        return jsonify(envelope(0, "QUEUED", data)), 202
    return jsonify(envelope(0, "SUCCEED", data)), 200


def get_one(type_name: str, task_ref: str) -> Response:
    task: Task | None = services().store.find(task_ref, current_scope())
    if task is not None and task.type != type_name:
        task = None  # Kling finds a task at its own type's path only
    if task is None:
        raise ApiError(404, CODE_NOT_FOUND, not_found_message(services(), task_ref, current_scope()))
    return jsonify(envelope(0, "SUCCEED", task.kling_view(services().settings.public_base_url)))


def list_tasks(type_name: str) -> Response:
    page_num = _bounded_int("pageNum", 1, PAGE_NUM_MAX, default=1)
    page_size = _bounded_int("pageSize", 1, PAGE_SIZE_MAX, default=30)
    tasks = newest_matching(
        services().store,
        current_scope(),
        lambda task: task.type == type_name,
        offset=(page_num - 1) * page_size,
        limit=page_size,
    )
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


def _route_every_task_type() -> None:
    """Kling's three routes at each /v1 type's path, the type passed to the view (the unified API's
    types are routed by web/unified_api.py)."""
    for name, kind in TASK_TYPES.items():
        if kind.unified:
            continue
        defaults = {"type_name": name}
        bp.add_url_rule(kind.path, f"create_{name}", create, methods=["POST"], defaults=defaults)
        bp.add_url_rule(kind.path, f"list_{name}", list_tasks, methods=["GET"], defaults=defaults)
        item = f"{kind.path}/<path:task_ref>"
        bp.add_url_rule(item, f"get_{name}", get_one, methods=["GET"], defaults=defaults)


_route_every_task_type()
# Synchronous, no task: Kling's faces of a video, for an advanced lip-sync task (web/identify_face.py).
bp.add_url_rule(IDENTIFY_FACE_PATH, "identify_face", identify_face, methods=["POST"])
