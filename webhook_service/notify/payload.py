"""An event's payload: built once, when the event is fanned out, and sent as the very same bytes on
every attempt.

The body is the Standard Webhooks shape `{"type", "timestamp", "data"}` with the task as
`GET /v1/tasks/<id>` shows it (links to the archived videos, never their bytes), but only a summary of
its history: the last EVENT_HISTORY_ENTRIES entries in a line each, and `history_count`. Each
event is stored until its deliveries are done, and a task's history grows with every callback and
poll: the whole history in every event would multiply it. A retry next week
sends what the first attempt sent, and a receiver that deduplicates on `webhook-id` sees one message
however often it arrives.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from webhook_service.domain.events import Event
from webhook_service.domain.tasks import Task
from webhook_service.domain.views import task_view
from webhook_service.services import Services

EVENT_HISTORY_ENTRIES = 3


def build_event(svc: Services, task: Task, event_id: str, event_type: str, at: datetime) -> Event:
    """The event for `task` as it is now; `at` is when the change it reports was committed."""
    body = {
        "type": event_type,
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": task_view(svc, task, history_last=EVENT_HISTORY_ENTRIES),
    }
    request = svc.store.request(task.external_task_id) or {}
    prompt = request.get("prompt")
    if not isinstance(prompt, str):
        prompt = ""
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Event(event_id, event_type, task.external_task_id, payload, prompt, task.tenant)
