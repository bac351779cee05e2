"""The JSON Schemas of the OpenAPI document's answers, written by hand after the code that builds them.

Each lists the fields a client may rely on and lets others through (`additionalProperties`), so a
field added later does not make the document wrong; the schemathesis test checks every answer of
the running service against them. The create body's schema is not here: it comes from domain/validation.py.
"""

from __future__ import annotations

from typing import Any

from webhook_service.domain.events import EVENT_TYPES
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import ArchiveState, Status
from webhook_service.domain.usage import FINAL_STATUSES
from webhook_service.notify.records import DeliveryStatus
from webhook_service.notify.routing import SinkKind
from webhook_service.notify.sinks import Verdict

REF = "#/components/schemas/{model}"

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
MS = {"type": "integer", "description": "epoch milliseconds"}
OBJECT = {"type": "object"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    keys = list(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": keys, **extra}


def envelope(data: dict[str, Any], message: str = "") -> dict[str, Any]:
    """Kling's envelope: `code` 0 and the `data`."""
    schema = obj({"code": {"const": 0}, "message": STRING, "request_id": STRING, "data": data})
    if message:
        schema["description"] = f"`message` is {message}"
    return schema


_PARENT_VIDEO = obj(
    {"id": STRING, "url": STRING, "duration": {"description": "seconds, as Kling gives it"}},
    required=["id"],
    description="a video-extend task's video it continues: its id from the request, url and duration "
    "once Kling reports them",
)
_KLING_TASK_INFO = obj({"external_task_id": STRING, "parent_video": _PARENT_VIDEO}, ["external_task_id"])
_TASK_LINK = obj(
    {"task_id": STRING, "external_task_id": STRING, "type": STRING, "task_status": STRING},
    required=["task_id", "external_task_id", "type", "task_status"],
)
_VIDEO = obj(
    {
        "id": {"description": "Kling's video id"},
        "url": STRING,
        "duration": {"description": "seconds, as Kling gives it"},
        "archive_url": STRING,
        "watermark_archive_url": STRING,
    },
    required=[],
)
_IMAGE = obj(
    {"index": {"description": "Kling's number for the image"}, "url": STRING, "archive_url": STRING},
    required=[],
)
# A video task's results are in `videos`, an image task's in `images`.
_TASK_RESULT = obj(
    {"videos": {"type": "array", "items": _VIDEO}, "images": {"type": "array", "items": _IMAGE}}, required=[]
)
_DELIVERY_PROPERTIES = {
    "id": STRING,
    "event_id": STRING,
    "webhook_id": STRING,
    "event_type": STRING,
    "external_task_id": STRING,
    "sink": {"enum": [k.value for k in SinkKind]},
    "target": {"type": "string", "description": "the URL without its path or query (they may hold a secret)"},
    "client": {"type": "boolean", "description": "the task's own callback_url"},
    "status": {"enum": [s.value for s in DeliveryStatus]},
    "attempts": INTEGER,
    "tries": INTEGER,
    "replays": INTEGER,
    "reason": nullable(STRING),
    "last_error": nullable(STRING),
    "created_at": MS,
    "updated_at": MS,
    "next_attempt_at": nullable(MS),
    "delivered_at": nullable(MS),
    "failed_at": nullable(MS),
}

_TALLY = {
    "tasks": obj(
        {status.value: INTEGER for status in FINAL_STATUSES},
        description="tasks that reached each final status (an expired task that later got Kling's "
        "final word counts under that status only)",
    ),
    "units": {"type": "number", "description": "Kling's final_unit_deduction, summed"},
}
_USAGE = obj(
    {
        "from": {"type": "string", "format": "date"},
        "to": {"type": "string", "format": "date"},
        "tenants": {
            "type": "array",
            "items": obj(
                {
                    "tenant": STRING,
                    **_TALLY,
                    "days": {
                        "type": "array",
                        "description": "the UTC days (a task's is the day it was created) with usage, "
                        "oldest first",
                        "items": obj(
                            {
                                "day": {"type": "string", "format": "date"},
                                **_TALLY,
                                "models": {
                                    "type": "array",
                                    "items": obj({"model": STRING, **_TALLY}),
                                },
                            }
                        ),
                    },
                }
            ),
        },
    }
)

COMPONENTS: dict[str, Any] = {
    "Error": obj(
        {
            "code": {
                "type": "integer",
                "description": "Kling's code: 1001-1004 auth, 1201 bad request, "
                "1203 not found, 5001 unavailable, or Kling's own for an upstream refusal",
            },
            "message": STRING,
            "request_id": STRING,
            "errors": {
                "type": "array",
                "description": "every problem of a rejected request",
                "items": obj({"field": STRING, "code": STRING, "message": STRING}),
            },
        },
        required=["code", "message", "request_id"],
    ),
    "CreateAnswer": obj(
        {
            "task_id": {
                "type": "string",
                "description": "Kling's; while the task is queued, its external_task_id (either finds it)",
            },
            "task_status": {"enum": ["queued", "submitted", "processing", "succeed", "failed"]},
            "task_info": _KLING_TASK_INFO,
            "created_at": MS,
            "updated_at": MS,
        }
    ),
    "KlingTask": obj(
        {
            "task_id": STRING,
            "task_status": {
                "enum": ["queued", "submitted", "processing", "succeed", "failed"],
                "description": "the service's rejected and expired show as failed",
            },
            "task_status_msg": STRING,
            "task_info": _KLING_TASK_INFO,
            "created_at": MS,
            "updated_at": MS,
            "watermark_info": OBJECT,
            "task_result": _TASK_RESULT,
            "final_unit_deduction": STRING,
        },
        required=["task_id", "task_status", "task_status_msg", "task_info", "created_at", "updated_at"],
    ),
    "Task": obj(
        {
            "external_task_id": STRING,
            "task_id": nullable(STRING),
            "status": {"enum": [s.value for s in Status]},
            "status_msg": STRING,
            "model_name": STRING,
            "archive_state": nullable({"enum": [s.value for s in ArchiveState]}),
            "archive_error": nullable(OBJECT),
            "error": nullable(OBJECT),
            "task_result": nullable(_TASK_RESULT),
            "archived_videos": {
                "type": "array",
                "items": obj(
                    {
                        "index": INTEGER,
                        "url": STRING,
                        "key": STRING,
                        "video_id": STRING,
                        "kind": {"enum": ["video", "watermark"]},
                        "size": INTEGER,
                        "sha256": STRING,
                        "source_url": STRING,
                    },
                    required=["index", "url", "key"],
                ),
            },
            "archived_images": {
                "type": "array",
                "description": "an image task's archived images, each named and typed by its bytes",
                "items": obj(
                    {
                        "index": INTEGER,
                        "url": STRING,
                        "key": STRING,
                        "image_index": {"description": "Kling's number for the image"},
                        "kind": {"const": "image"},
                        "content_type": STRING,
                        "size": INTEGER,
                        "sha256": STRING,
                        "source_url": STRING,
                    },
                    required=["index", "url", "key", "content_type"],
                ),
            },
            "parent_video": nullable(_PARENT_VIDEO),
            "parent_task": nullable(
                {**_TASK_LINK, "description": "the task of yours that made parent_video, while it is kept"}
            ),
            "extensions": {
                "type": "array",
                "description": "your video-extend tasks extending this task's videos (video_id: which)",
                "items": obj(
                    {**_TASK_LINK["properties"], "video_id": STRING}, required=["task_id", "video_id"]
                ),
            },
            "history": {"type": "array", "items": obj({"at": MS, "event": STRING}, required=["at"])},
            "recovered": {
                "type": "boolean",
                "description": "recorded again after Redis lost it: its history before may be missing",
            },
            "created_at": MS,
            "updated_at": MS,
        },
        required=["external_task_id", "status", "archived_videos", "history", "created_at", "updated_at"],
    ),
    "Delivery": obj(_DELIVERY_PROPERTIES),
    "DeliveryWithAttempts": obj(
        {
            **_DELIVERY_PROPERTIES,
            "attempt_log": {
                "type": "array",
                "items": obj(
                    {
                        "at": MS,
                        "status_code": nullable(INTEGER),
                        "error": nullable(STRING),
                        "latency_ms": INTEGER,
                        "response": STRING,
                        "verdict": {"enum": [v.value for v in Verdict]},
                    }
                ),
            },
        }
    ),
    "DisabledEndpoint": obj(
        {
            "endpoint": {"type": "string", "description": "ep_..., the id to enable it again by"},
            "url": STRING,
            "disabled_at": MS,
            "status_code": nullable(INTEGER),
            "delivery_id": STRING,
            "tenant": {
                **nullable(STRING),
                "description": "whose deliveries to it are disabled: the tenant whose task's callback_url "
                "answered 410; null for the operator's webhooks and Slack",
            },
        },
        required=["endpoint", "url", "tenant"],
    ),
    "Usage": _USAGE,
    "Event": obj(
        {
            "cursor": {
                "type": "string",
                "description": "its place in the log: `after` (or `Last-Event-ID`) reads on after it",
            },
            "id": {"type": "string", "description": "evt_...: the `webhook-id` its webhooks carry"},
            "type": {"enum": list(EVENT_TYPES)},
            "at": {"type": "integer", "description": "when it was raised, epoch milliseconds"},
            "tenant": STRING,
            "external_task_id": nullable(
                {"type": "string", "description": "the task's id as its client chose it; null: no task"}
            ),
            "task_id": nullable(STRING),
            "task_type": nullable(
                {
                    "enum": list(TASK_TYPES),
                    "description": "the task's type (`task_types` filters by it); null: no task, or an "
                    "event recorded before events carried it",
                }
            ),
            "status": nullable({"enum": [s.value for s in Status]}),
            "archive_state": nullable({"enum": [s.value for s in ArchiveState]}),
            "endpoint_id": nullable(
                {"type": "string", "description": "`endpoint.disabled`: the endpoint (ep_...); else null"}
            ),
        }
    ),
    "ServerSentEvent": obj(
        {
            "id": {"type": "string", "description": "the event's cursor: an EventSource's Last-Event-ID"},
            "event": {"enum": list(EVENT_TYPES)},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": ref("Event")},
            "retry": {"type": "integer", "description": "ms: how soon to reconnect once the stream ends"},
        },
        required=[],
        description="one block of the stream: an event, or the `retry:` it starts with",
    ),
    "EventPage": obj(
        {
            "events": {"type": "array", "items": ref("Event")},
            "next_cursor": {
                "type": "string",
                "description": "`after` for the next read: past every entry this read looked at",
            },
            "has_more": {"type": "boolean", "description": "entries follow next_cursor already"},
            "waited": {"type": "boolean", "description": "this request waited (`wait`) for events"},
            "retry_after_ms": {
                "type": ["integer", "null"],
                "description": "asked to wait, it could not (the process's waiting budget, "
                "EVENTS_WAITING_MAX, was taken) and found no events: read again after this many ms, as the "
                "`Retry-After` header says; null otherwise",
            },
        }
    ),
    "CallbackAnswer": envelope(
        obj({"outcome": {"enum": ["applied", "duplicate", "stale"]}, "task_status": STRING})
    ),
}
