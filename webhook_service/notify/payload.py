"""An event as receivers get it: built once, stored, and sent as the very same bytes on every attempt.

The body is the Standard Webhooks shape `{"type", "timestamp", "data"}` with the task as
`GET /v1/tasks/<id>` shows it (links to the archived videos, never their bytes). It is serialised
once, when the event is fanned out, so a retry next week sends what the first attempt sent, and a
receiver that deduplicates on `webhook-id` sees one message however often it arrives.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from webhook_service.lifecycle import Services
from webhook_service.task_views import task_view
from webhook_service.tasks import Task


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    external_task_id: str
    payload: str  # the exact JSON body of every webhook attempt
    prompt: str  # the request's prompt, for Slack and email: the task view does not hold the request

    @property
    def body(self) -> dict[str, Any]:
        return json.loads(self.payload)

    @property
    def data(self) -> dict[str, Any]:
        return self.body["data"]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        return cls(**json.loads(raw))


def build_event(svc: Services, task: Task, event_id: str, event_type: str, at: datetime) -> Event:
    """The event for `task` as it is now; `at` is when the change it reports was committed."""
    body = {
        "type": event_type,
        "timestamp": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": task_view(svc, task),
    }
    request = svc.store.request(task.external_task_id) or {}
    prompt = request.get("prompt") if isinstance(request.get("prompt"), str) else ""
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return Event(event_id, event_type, task.external_task_id, payload, prompt)
