"""The OpenAPI paths of the event log (web/events_api.py): a page or long-poll, and Server-Sent Events."""

from __future__ import annotations

from typing import Any

from webhook_service.domain.task_types import TASK_TYPES as KNOWN_TASK_TYPES
from webhook_service.web import events_api
from webhook_service.web.openapi.paths import CURSOR, EVENT_TYPES, TENANT, _answer, _errors, _op, _param
from webhook_service.web.openapi.schemas import envelope, ref

_TASK_TYPE = "(?:" + "|".join(name.replace(".", "\\.") for name in KNOWN_TASK_TYPES) + ")"
TASK_TYPES = _param(
    "task_types",
    "query",
    {"type": "string", "pattern": f"^{_TASK_TYPE}(?:,{_TASK_TYPE})*$"},
    "comma-separated task types (image2video, text2video, kling-3.0-text-to-video, ...): only the events "
    "of tasks of those types (default: every event, of any task or none)",
)


def event_paths() -> dict[str, Any]:
    return {
        "/v1/events": {
            "get": _op(
                "Events",
                "The tenant's events in order, after a cursor; with `wait`, a long-poll",
                {
                    "200": {
                        **_answer("a page", envelope(ref("EventPage"))),
                        "headers": {
                            "Retry-After": {
                                "description": "seconds: only with `retry_after_ms` (the same, rounded up)",
                                "schema": {"type": "integer", "minimum": 1},
                            }
                        },
                    },
                    **_errors("400", "401", "429", "503"),
                },
                operationId="listEvents",
                description="Every event of the tenant's tasks, whether or not a sink wants it, oldest "
                "first, as long as its task is kept. Without `after`, from the start of what is kept. "
                "With `wait`, when nothing follows the cursor, waits up to that many seconds for the "
                "first event; only EVENTS_WAITING_MAX requests wait at once per web process, and one "
                "over that budget is answered at once (`waited: false`); when it has no events, with a "
                "`Retry-After` header and `retry_after_ms`: poll again after that, not at once. A tenant "
                "reads its own log; an admin its own tenant's, or the one `tenant` names.",
                parameters=[
                    _param("after", "query", CURSOR, "a cursor (`next_cursor`, an event's `cursor`)"),
                    _param(
                        "limit",
                        "query",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": events_api.LIMIT_MAX,
                            "default": events_api.LIMIT_DEFAULT,
                        },
                    ),
                    EVENT_TYPES,
                    TASK_TYPES,
                    _param(
                        "wait",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": events_api.WAIT_MAX_S, "default": 0},
                        "seconds to wait for an event when none follows the cursor",
                    ),
                    TENANT,
                ],
            )
        },
        "/v1/events/stream": {
            "get": _op(
                "Events",
                "The same events as Server-Sent Events, resumed from Last-Event-ID",
                {
                    "200": _answer(
                        "`retry:`, then each event as `id:` (its cursor), `event:` (its type) and `data:` "
                        f"(the Event as JSON); a comment line after each {events_api.KEEPALIVE_S:g} s of "
                        "silence; the stream ends after EVENTS_STREAM_S and the client reconnects with "
                        "Last-Event-ID. Over the process's budget (EVENTS_WAITING_MAX): at once, a comment, "
                        f"`retry: {events_api.BUSY_RETRY_MS}` and the end",
                        ref("ServerSentEvent"),
                        "text/event-stream",
                    ),
                    **_errors("400", "401", "429", "503"),
                },
                operationId="streamEvents",
                parameters=[
                    _param("after", "query", CURSOR, "where to start, if no Last-Event-ID"),
                    EVENT_TYPES,
                    TASK_TYPES,
                    TENANT,
                    _param(
                        "Last-Event-ID", "header", CURSOR, "where an EventSource left off: wins over `after`"
                    ),
                ],
            )
        },
    }
