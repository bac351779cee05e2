"""The OpenAPI document's path items, by hand, after the views they describe (web/kling_api.py,
web/callbacks.py, web/tasks_api.py, web/deliveries_api.py, web/usage_api.py, web/events_api.py,
web/health.py, web/metrics.py, here).

Every answer a view can give is listed with its schema: the schemathesis test checks the running service
against this, so an answer missing here, or shaped otherwise, fails the suite.
"""

from __future__ import annotations

from typing import Any

from webhook_service.config import Settings
from webhook_service.domain import usage
from webhook_service.domain.events import EVENT_TYPES as KNOWN_EVENT_TYPES
from webhook_service.domain.task_types import TASK_TYPES, TaskType
from webhook_service.domain.tasks import DEFAULT_TYPE, Status
from webhook_service.web.openapi.schemas import STRING, envelope, obj, ref

JSON = "application/json"


def _param(
    name: str, where: str, schema: dict[str, Any], description: str = "", required: bool = False
) -> dict[str, Any]:
    param = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    return {**param, "description": description} if description else param


def _answer(description: str, schema: dict[str, Any] | None = None, media: str = JSON) -> dict[str, Any]:
    return {"description": description, **({"content": {media: {"schema": schema}}} if schema else {})}


_READY = obj(
    {
        "status": {"const": "ok"},
        "redis": {"const": "ok"},
        "durable": {
            "type": ["boolean", "null"],
            "description": "Redis persists (AOF or RDB); null when it refuses CONFIG (docs/operations.md)",
        },
        "persistence": {**STRING, "description": "e.g. `aof (appendfsync everysec)`, `none`, `unknown`"},
        "maxmemory_policy": {"type": ["string", "null"]},
    }
)


def _errors(*statuses: str) -> dict[str, Any]:
    why = {
        "400": "invalid request (on the service's own routes, or query): `errors` lists every problem",
        "401": "no or bad client credentials (codes 1001-1004); for a callback, a bad signature",
        "403": "the callback URL's token is missing or invalid",
        "404": "not found",
        "409": "conflict",
        "413": "body too large",
        "429": "too many failed authentications from this address: wait `Retry-After` seconds",
        "503": "Redis unavailable, or for a create the archive that keeps its Base64 images (code 5001)",
        "4XX": "refused (for a create: Kling's own status, code and message)",
        "5XX": "Kling or the service failed",
    }
    return {status: _answer(why[status], ref("Error")) for status in statuses}


def _op(tag: str, summary: str, answers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tags": [tag], "summary": summary, "responses": answers, **extra}


DAY = {"type": "string", "format": "date", "description": "a UTC day, YYYY-MM-DD"}
TENANT_NAME = "^[a-z0-9][a-z0-9_-]{0,31}$"
TASK_REF = _param("task_ref", "path", {"type": "string", "minLength": 1}, "task_id or external_task_id")
TENANT = _param(
    "tenant",
    "query",
    {"type": "string", "pattern": TENANT_NAME},
    "one tenant (an admin's keys; a tenant's own may name only itself)",
)
CURSOR = {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}
_TYPE = "(?:" + "|".join(t.replace(".", "\\.") for t in KNOWN_EVENT_TYPES) + ")"
EVENT_TYPES = _param(
    "types",
    "query",
    {"type": "string", "pattern": f"^{_TYPE}(?:,{_TYPE})*$"},
    "comma-separated event types (default: every type)",
)


def _archived_file(summary: str, whole: str, media: str, operation_id: str) -> dict[str, Any]:
    """`GET /v1/tasks/<ref>/<videos|images>/<index>`: one file of the archive, served alike whatever it is."""
    binary = {"type": "string", "format": "binary"}
    return {
        "get": _op(
            "Tasks",
            summary,
            {
                "200": _answer(whole, binary, media),
                "206": _answer("part of the file", binary, media),
                "302": _answer("redirect to a presigned URL"),
                "304": _answer("not modified"),
                "416": _answer("range not satisfiable", ref("Error")),
                **_errors("400", "401", "429", "404", "503"),
            },
            operationId=operation_id,
            parameters=[TASK_REF, _param("index", "path", {"type": "integer", "minimum": 0})],
        )
    }


def drop_in_paths(kind: TaskType, body: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Kling's own paths for one task type; served twice, at /v1/... and /kling/v1/... (the gateways'
    layout). The default type's operations keep the names they had before there were others; the
    others' names are camel case, hyphens dropped (kolors-virtual-try-on: KolorsVirtualTryOn)."""
    camel = "".join(part.capitalize() for part in kind.name.split("-"))
    suffix = ("" if kind.name == DEFAULT_TYPE else camel) + suffix
    page = [
        _param("pageNum", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}),
        _param("pageSize", "query", {"type": "integer", "minimum": 1, "maximum": 500, "default": 30}),
    ]
    prefer = _param(
        "Prefer",
        "header",
        STRING,
        "`respond-async`: answer 202 at once with the task queued; a worker sends it",
    )
    return {
        kind.path: {
            "post": _op(
                "Kling API",
                f"{kind.summary}: validated, recorded, sent to Kling",
                {
                    "200": _answer("Kling took the task", envelope(ref("CreateAnswer"), "SUCCEED")),
                    "202": _answer(
                        "queued (async asked for, or at the concurrency limit)",
                        envelope(ref("CreateAnswer"), "QUEUED"),
                    ),
                    **_errors("400", "401", "429", "413", "503", "4XX", "5XX"),
                },
                operationId=f"createTask{suffix}",
                description="Kling's body. Rules across fields are checked too; a refused request lists "
                "every problem in `errors` and nothing goes upstream.",
                parameters=[prefer],
                requestBody={"required": True, "content": {JSON: {"schema": body}}},
            ),
            "get": _op(
                "Kling API",
                f"List the {kind.name} tasks, newest first",
                {
                    "200": _answer("a page", envelope({"type": "array", "items": ref("KlingTask")})),
                    **_errors("400", "401", "429", "503"),
                },
                operationId=f"listTasks{suffix}",
                parameters=page,
            ),
        },
        kind.path + "/{task_ref}": {
            "get": _op(
                "Kling API",
                f"One {kind.name} task in Kling's shape, with archive links once archived",
                {
                    "200": _answer("the task", envelope(ref("KlingTask"))),
                    **_errors("401", "429", "404", "503"),
                },
                operationId=f"getTask{suffix}",
                parameters=[TASK_REF],
            )
        },
    }


def service_paths(settings: Settings) -> dict[str, Any]:
    return {
        "/callbacks/kling": {
            "post": _op(
                "Callbacks",
                "Where Kling calls back (each task's URL carries its own token)",
                {
                    "200": _answer("recorded", ref("CallbackAnswer")),
                    **_errors("400", "401", "403", "404", "409", "413", "503"),
                },
                operationId="klingCallback",
                description="Either callback shape: legacy `task_id`/`task_status` or newer `id`/`status`. "
                "The signature is checked when KLING_WEBHOOK_SECRET is set (Standard Webhooks headers).",
                parameters=[_param("token", "query", STRING, "the task's signed token", required=True)],
                requestBody={"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
                security=[],
            )
        },
        "/v1/tasks": {
            "get": _op(
                "Tasks",
                "Your tasks of every type, newest first, each as GET /v1/tasks/{task_ref} shows it",
                {
                    "200": _answer("a page", envelope({"type": "array", "items": ref("Task")})),
                    **_errors("400", "401", "429", "503"),
                },
                operationId="listServiceTasks",
                parameters=[
                    _param("type", "query", {"enum": list(TASK_TYPES)}),
                    _param("status", "query", {"enum": [s.value for s in Status]}),
                    _param(
                        "offset",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
                    ),
                    _param(
                        "limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
                    ),
                ],
            )
        },
        "/v1/tasks/{task_ref}": {
            "get": _op(
                "Tasks",
                "Everything about a task: status, archive, archived videos or images, history",
                {
                    "200": _answer("the task", envelope(ref("Task"))),
                    **_errors("400", "401", "429", "404", "503"),
                },
                operationId="getServiceTask",
                parameters=[TASK_REF],
            )
        },
        "/v1/tasks/{task_ref}/videos/{index}": _archived_file(
            "An archived video (Range supported), or a redirect to a presigned URL (S3)",
            "the file",
            "video/mp4",
            "getArchivedVideo",
        ),
        "/v1/tasks/{task_ref}/images/{index}": _archived_file(
            "An archived image of an image task, or a redirect to a presigned URL (S3)",
            "the file, with the type its bytes showed",
            "image/*",
            "getArchivedImage",
        ),
        "/v1/usage": {
            "get": _op(
                "Usage",
                "Who spent the account's units: tasks by final status and units, per UTC day and model",
                {
                    "200": _answer("usage, by tenant", envelope(ref("Usage"))),
                    **_errors("400", "401", "429", "503"),
                },
                operationId="getUsage",
                description="A task counts on the UTC day it was created, once it is final, under its "
                "latest final status. A tenant's key sees its own tenant; an admin's every tenant with "
                "usage recorded in the last 400 days, or the one `tenant` names.",
                parameters=[
                    _param("from", "query", DAY, f"default: {usage.DEFAULT_DAYS - 1} days before `to`"),
                    _param("to", "query", DAY, f"default: today (UTC); at most {usage.MAX_DAYS} days in all"),
                    TENANT,
                ],
            )
        },
        "/healthz": {
            "get": _op(
                "Operations",
                "The process is alive",
                {"200": _answer("alive", obj({"status": {"const": "ok"}}))},
                operationId="healthz",
                security=[],
            )
        },
        "/readyz": {
            "get": _op(
                "Operations",
                "Redis answers, and what it promises to keep",
                {
                    "200": _answer("ready", _READY),
                    "503": _answer(
                        "Redis does not answer", obj({"status": {"const": "unavailable"}, "redis": STRING})
                    ),
                },
                operationId="readyz",
                security=[],
            )
        },
        "/metrics": {
            "get": _op(
                "Operations",
                "Prometheus metrics"
                + ("" if settings.metrics_public else " (client credentials: METRICS_PUBLIC is off)"),
                {"200": _answer("the exposition", STRING, "text/plain"), **_errors("401", "429", "503")},
                operationId="metrics",
                description="A tenant's key sees the series without a `tenant` label and its own "
                "tenant's; an admin's key (or anyone, with METRICS_PUBLIC) sees every series.",
                **({"security": []} if settings.metrics_public else {}),
            )
        },
        "/openapi.json": {
            "get": _op(
                "Operations",
                "This document",
                {"200": _answer("OpenAPI 3.1", {"type": "object"})},
                operationId="openapi",
                security=[],
            )
        },
        "/docs": {
            "get": _op(
                "Operations",
                "This document as a page",
                {"200": _answer("HTML", STRING, "text/html")},
                operationId="docs",
                security=[],
            )
        },
    }
