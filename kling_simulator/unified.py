"""Kling's unified API in the simulator: its create paths (`UNIFIED_PATHS`: kling-3.0's text and image
to video and omni video, Kling 2.6's text and image to video, the text and image to video of
kling-2.5-turbo and kling-3.0-turbo, Kling O1's omni video, motion control 3.0 and 2.6),
`GET /tasks?task_ids=` or `?external_task_ids=` and `POST /tasks` (the list by cursor), Bearer the
unified API key when one is configured.

A unified task is made as the /v1 video task of its kind is (the same scenarios, the same real MP4s),
marked `unified`: its options are read from `options`, its callbacks are always in the newer shape
(`id`, `status: succeeded`, `outputs`), and it is found at `/tasks` only, as at Kling.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .auth import Auth
from .state import SimError, SimState
from .tasks import Task, pack_of

# path -> (the /v1 type it is made as, the field its create cannot do without)
UNIFIED_PATHS = {
    "/text-to-video/kling-3.0": ("text2video", "prompt"),
    "/text-to-video/kling-2.6": ("text2video", "prompt"),
    "/image-to-video/kling-2.6": ("image2video", "contents"),
    "/text-to-video/kling-2.5-turbo": ("text2video", "prompt"),
    "/image-to-video/kling-2.5-turbo": ("image2video", "contents"),
    "/text-to-video/kling-3.0-turbo": ("text2video", "prompt"),
    "/image-to-video/kling-3.0-turbo": ("image2video", "contents"),
    "/omni-video/kling-o1": ("text2video", "contents"),
    "/motion-control/kling-3.0": ("image2video", "contents"),
    "/motion-control/kling-2.6": ("image2video", "contents"),
    "/image-to-video/kling-3.0": ("image2video", "contents"),
    "/omni-video/kling-3.0-omni": ("text2video", "contents"),
}
WINDOW_MS = 30 * 24 * 3600 * 1000  # POST /tasks: the last 30 days when no start_time is given
MAX_LIMIT = 500
PRODUCT_TYPES = {"video": "video", "image": "image", "tryon": "try_on"}  # the simulator's pack: Kling's


def _envelope(http: int, code: int, message: str, data: Any = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    if data is not None:
        body["data"] = data
    return jsonify(body), http


def _refusal(body: object, required: str) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not body.get(required):
        return f"{required} is required"
    for holder in ("settings", "options"):
        if body.get(holder) is not None and not isinstance(body[holder], dict):
            return f"{holder} must be an object"
    options = body.get("options") or {}
    for key in ("external_task_id", "callback_url"):
        if options.get(key) is not None and not isinstance(options[key], str):
            return f"options.{key} must be a string"
    return None


def unified_blueprint(state: SimState, auth: Auth, public_url: str | None) -> Blueprint:
    bp = Blueprint("kling_unified", __name__)

    @bp.before_request
    def authenticate() -> tuple[Response, int] | None:
        failure = auth.check_unified(request.headers.get("Authorization"))
        return _envelope(401, *failure) if failure else None

    def create(path: str) -> tuple[Response, int]:
        made_as, required = UNIFIED_PATHS[path]
        body = request.get_json(silent=True)
        if (why := _refusal(body, required)) is not None:
            return _envelope(400, 1201, why)
        assert isinstance(body, dict)
        try:
            base_url = public_url or request.host_url
            task, late_error = state.create(body, dict(request.headers), base_url, made_as, unified=True)
        except SimError as exc:
            return _envelope(exc.http, exc.code, exc.message)
        state.deliver_first(task)
        if late_error is not None:
            return _envelope(late_error.http, late_error.code, late_error.message)
        data = {"id": task.task_id, "status": "submitted", "create_time": task.created_ms}
        data["update_time"] = task.created_ms
        if task.external_task_id is not None:
            data["external_id"] = task.external_task_id
        return _envelope(200, 0, "SUCCEED", data)

    @bp.get("/tasks")
    def query() -> tuple[Response, int]:
        given = [name for name in ("task_ids", "external_task_ids") if request.args.get(name)]
        if len(given) != 1:
            return _envelope(400, 1201, "give exactly one of task_ids and external_task_ids")
        by_external = given[0] == "external_task_ids"
        found = []
        for ref in request.args[given[0]].split(","):
            task = state.get(ref.strip())
            if task is None or not task.unified:
                continue
            if (task.external_task_id if by_external else task.task_id) == ref.strip():
                found.append(task.unified_object())
        return _envelope(200, 0, "SUCCEED", found)

    @bp.post("/tasks")
    def list_tasks() -> tuple[Response, int]:
        body = request.get_json(silent=True) if request.get_data().strip() else {}
        try:
            start, end, offset, limit, keep = _list_query(body)
        except ValueError as error:
            return _envelope(400, 1201, str(error))
        found = [
            shown
            for task in state.unified_tasks()
            if start <= task.created_ms < end and keep(task, shown := task.unified_object())
        ]
        page = found[offset : offset + limit]
        has_more = len(found) > offset + limit
        data = {
            "result": page,
            "count": len(page),
            "next_cursor": f"{start}.{end}.{offset + limit}" if has_more else "",
            "has_more": has_more,
        }
        return _envelope(200, 0, "SUCCEED", data)

    for path in UNIFIED_PATHS:
        name = path.strip("/").replace("/", "_").replace(".", "_")
        bp.add_url_rule(path, f"create_{name}", create, methods=["POST"], defaults={"path": path})
    return bp


def _list_query(body: object) -> tuple[int, int, int, int, Any]:
    """(start, end, offset, limit, keep) from a `POST /tasks` body: the window and offset from the
    cursor when there is one (the simulator's own, as Kling's is opaque), else from the times given as
    strings of ms; ValueError for what Kling refuses."""
    if not isinstance(body, dict):
        raise ValueError("request body must be a JSON object")
    limit = body.get("limit", 100)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer in 1..{MAX_LIMIT}")
    if body.get("cursor"):
        parts = str(body["cursor"]).split(".")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError("cursor is invalid")
        start, end, offset = (int(part) for part in parts)
    else:
        for key in ("start_time", "end_time"):
            if body.get(key) is not None and not (isinstance(body[key], str) and body[key].isdigit()):
                raise ValueError(f"{key} must be a string of Unix ms")
        end = int(body.get("end_time") or time.time() * 1000)
        start, offset = int(body.get("start_time") or end - WINDOW_MS), 0
        if start >= end:
            raise ValueError("start_time must be before end_time")
    filters = body.get("filters") or []
    if not isinstance(filters, list) or not all(isinstance(item, dict) for item in filters):
        raise ValueError("filters must be a list of {key, values}")
    wanted = {item.get("key"): set(item.get("values") or []) for item in filters}

    def keep(task: Task, shown: dict[str, Any]) -> bool:
        statuses, products = wanted.get("status"), wanted.get("product_type")
        product = PRODUCT_TYPES[pack_of(task.task_type)]
        return (statuses is None or shown["status"] in statuses) and (products is None or product in products)

    return start, end, offset, limit, keep
