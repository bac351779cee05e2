"""The OpenAPI path items of Kling's unified API (web/unified_api.py): each unified type's create path
and `GET /tasks`, at the root and under `/kling`. The create bodies' schemas come from their rules, as
the /v1 types' do."""

from __future__ import annotations

from typing import Any

from webhook_service.config import Settings
from webhook_service.domain import unified_list
from webhook_service.domain.body_rules import body_json_schema
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.unified import MAX_IDS
from webhook_service.domain.unified_rules import TASKS_PATH
from webhook_service.web.openapi.paths import JSON, _answer, _errors, _op, _param
from webhook_service.web.openapi.schemas import MS, REF, STRING, envelope, obj

BOOL = {"type": "boolean"}

_STATUS = {"enum": ["queued", "submitted", "processing", "succeeded", "failed"]}
_CREATED = obj(
    {
        "id": {**STRING, "description": "Kling's task id; the external_task_id while the task is queued"},
        "status": _STATUS,
        "create_time": MS,
        "update_time": MS,
        "external_id": STRING,
    }
)
_OUTPUT = obj(
    {
        "type": {"enum": ["video", "image"]},
        "id": STRING,
        "url": STRING,
        "watermark_url": STRING,
        "duration": STRING,
        "archive_url": {**STRING, "description": "the archived copy, once archived"},
        "watermark_archive_url": STRING,
        "index": {"type": "integer"},
    },
    required=["type"],
)
_TASK = obj(
    {
        **_CREATED["properties"],
        "message": {**STRING, "description": "why the task failed"},
        "outputs": {"type": "array", "items": _OUTPUT},
        "billing": {"type": "array", "items": obj({"charge_type": STRING, "amount": STRING})},
    },
    required=["id", "status", "create_time", "update_time", "external_id", "message"],
)
_IDS = {"type": "string", "minLength": 1, "description": f"comma-separated, at most {MAX_IDS}"}


def unified_paths(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The path items, and the nested shapes their bodies refer to."""
    paths: dict[str, Any] = {}
    list_body, nested = body_json_schema(unified_list.RULES, ref_template=REF)
    page = obj(
        {"result": _task_list(), "count": {"type": "integer"}, "next_cursor": STRING, "has_more": BOOL}
    )
    for prefix, suffix in (("", ""), ("/kling", "ViaGateway")):
        for kind in TASK_TYPES.values():
            if not kind.unified:
                continue
            body, shapes = body_json_schema(kind.rules, settings.kling_extra_fields, ref_template=REF)
            nested.update(shapes)
            name = "".join(part.capitalize() for part in kind.name.replace(".", "-").split("-"))
            paths[prefix + kind.path] = {
                "post": _op(
                    "Kling unified API",
                    f"{kind.summary}: validated, recorded, sent to Kling",
                    {
                        "200": _answer("Kling took the task", envelope(_CREATED, "SUCCEED")),
                        "202": _answer("queued", envelope(_CREATED, "QUEUED")),
                        **_errors("400", "401", "429", "413", "503", "4XX", "5XX"),
                    },
                    operationId=f"createTask{name}{suffix}",
                    description="Kling's unified body; `options.callback_url` is the client's own "
                    "(the service calls Kling back at its own), `options.external_task_id` its id.",
                    parameters=[_param("Prefer", "header", STRING, "`respond-async`: answer 202 at once")],
                    requestBody={"required": True, "content": {JSON: {"schema": body}}},
                )
            }
        paths[prefix + TASKS_PATH] = {
            "get": _op(
                "Kling unified API",
                "The caller's tasks named by Kling's ids or by the caller's own (exactly one of the two)",
                {
                    "200": _answer("the tasks found (unknown ids left out)", envelope(_task_list())),
                    **_errors("400", "401", "429", "503"),
                },
                operationId=f"queryTasks{suffix}",
                parameters=[_param("task_ids", "query", _IDS), _param("external_task_ids", "query", _IDS)],
            ),
            "post": _op(
                "Kling unified API",
                "The caller's tasks created in a time window, newest first, a page at a time by cursor",
                {
                    "200": _answer("a page (`next_cursor` empty on the last)", envelope(page)),
                    **_errors("400", "401", "429", "413", "503"),
                },
                operationId=f"listTasks{suffix}",
                requestBody={"required": False, "content": {JSON: {"schema": list_body}}},
            ),
        }
    return paths, nested


def _task_list() -> dict[str, Any]:
    return {"type": "array", "items": _TASK}
