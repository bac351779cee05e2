"""Kling's unified API, drop-in: its create paths (the model in the path, ``/text-to-video/kling-3.0``)
and ``GET /tasks?task_ids=`` or ``?external_task_ids=``, served from our own records.

Registered at the root, as Kling serves it, and under ``/kling``, as the gateways do. A create goes
through the same validation, queue and submission as a /v1 create (web/kling_api.py `create`), only
its body and its answer are the unified API's. ``GET /tasks`` answers the caller's own tasks only
(another tenant's are as absent as unknown ones): Kling does not document what it answers for an
unknown id, so an unknown id is left out of `data`, as a batch of several ids needs anyway. ``POST
/tasks`` lists them by cursor (domain/unified_list.py).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import Task
from webhook_service.domain.unified import MAX_IDS, task_view
from webhook_service.domain.unified_list import list_page
from webhook_service.domain.unified_rules import TASKS_PATH
from webhook_service.web.auth import current_scope, require_client
from webhook_service.web.context import current_services as services
from webhook_service.web.errors import (
    CODE_BAD_REQUEST,
    ApiError,
    envelope,
    invalid_request,
    json_object,
    whole_body,
)
from webhook_service.web.kling_api import create

bp = Blueprint("unified_api", __name__)
_BY = ("task_ids", "external_task_ids")


@bp.before_request
def authenticate() -> None:
    require_client(services())


def _refused(field: str, code: str, message: str) -> ApiError:
    return ApiError(
        400,
        CODE_BAD_REQUEST,
        f"{field}: {message}",
        errors=[{"field": field, "code": code, "message": message}],
    )


def _ids() -> tuple[str, list[str]]:
    """Which kind of id was asked for, and the ids (comma-separated, each once, in order)."""
    given = [name for name in _BY if name in request.args]
    if len(given) != 1:
        raise _refused("task_ids", "exclusive", "give exactly one of task_ids and external_task_ids")
    by = given[0]
    ids = list(dict.fromkeys(part.strip() for part in request.args[by].split(",") if part.strip()))
    if not ids:
        raise _refused(by, "missing", "names no task: give one id or several separated by ','")
    if len(ids) > MAX_IDS:
        raise _refused(by, "too_many", f"names {len(ids)} tasks; at most {MAX_IDS} in one query")
    return by, ids


def _named(task: Task, by: str, ref: str) -> bool:
    """task_ids name Kling's ids, external_task_ids the client's own: each finds its own kind only."""
    if by == "task_ids":  # a queued task's id is its external_task_id until Kling gives one
        return ref in (task.kling_task_id, *task.upstream_task_ids)
    return ref == task.client_task_id


@bp.get(TASKS_PATH)
def query_tasks() -> Response:
    by, ids = _ids()
    store, scope = services().store, current_scope()
    found = [task for ref in ids if (task := store.find(ref, scope)) is not None and _named(task, by, ref)]
    base_url = services().settings.public_base_url
    return jsonify(envelope(0, "SUCCEED", [task_view(task, base_url) for task in found]))


@bp.post(TASKS_PATH)
def list_tasks() -> Response:
    """Kling's list by cursor (domain/unified_list.py); no body is an empty one: every field is optional."""
    raw = whole_body(request)
    body = json_object(raw, "the request body", request.content_type) if raw.strip() else {}
    try:
        page = list_page(services().store, current_scope(), body)
    except RequestInvalid as invalid:
        raise invalid_request(invalid) from None
    base_url = services().settings.public_base_url
    result = [task_view(task, base_url) for task in page.tasks]
    data = {
        "result": result,
        "count": len(result),
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    }
    return jsonify(envelope(0, "SUCCEED", data))


def _route_unified_types() -> None:
    for name, kind in TASK_TYPES.items():
        if kind.unified:
            defaults = {"type_name": name}
            endpoint = f"create_{name.replace('.', '_')}"  # Flask's endpoints take no '.'
            bp.add_url_rule(kind.path, endpoint, create, methods=["POST"], defaults=defaults)


_route_unified_types()
