"""Events: what downstream systems hear about a task, and how one is named and kept.

An event is raised inside the Redis transaction that makes the change it reports (notify/routing.py
queues its fan-out there). Its id is derived from the task and the event type, and each type happens
at most once per task, so a callback and a poll racing on the same change still raise one event, and
a receiver sees the same `webhook-id` however often a delivery is retried.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from webhook_service.domain.tasks import Status
from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.event_types import ENDPOINT_DISABLED as ENDPOINT_DISABLED
from webhook_service.event_types import EVENT_TYPES as EVENT_TYPES
from webhook_service.event_types import EventType as EventType
from webhook_service.replies import stored_json

FOR_STATUS = {
    Status.SUBMITTED: EventType.SUBMITTED,
    Status.PROCESSING: EventType.PROCESSING,
    Status.SUCCEED: EventType.SUCCEEDED,
    Status.FAILED: EventType.FAILED,
    Status.REJECTED: EventType.FAILED,
}


def event_id(external_task_id: str, event_type: EventType) -> str:
    """Stable across retries and processes: `evt_` + a digest of (task, type); RQ-safe as a job id."""
    digest = hashlib.sha256(f"{external_task_id}\n{event_type.value}".encode()).hexdigest()[:32]
    return f"evt_{digest}"


@dataclass(frozen=True)
class Event:
    """An event as receivers get it: built once (notify/payload.py), stored, and sent as the very same
    bytes on every attempt."""

    id: str
    type: str
    external_task_id: str
    payload: str  # the exact JSON body of every webhook attempt
    prompt: str  # the request's prompt, for Slack and email: the task view does not hold the request
    tenant: str = DEFAULT_TENANT  # whose task: its deliveries are that tenant's

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.payload)
        return body

    @property
    def raised_at(self) -> int:
        """When the change it reports was committed (the body's `timestamp`), epoch milliseconds."""
        return round(datetime.fromisoformat(self.body["timestamp"]).timestamp() * 1000)

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.body["data"]
        return data

    def stored(self) -> bytes:
        """As Redis keeps it: the other fields as a line of JSON, then the payload as it is (inside the
        JSON the payload would be a string with every quote escaped), the whole compressed. The event
        is the largest thing a finished task keeps, for its whole retention, and JSON with ids and URLs
        repeated in it compresses to about 40 %: 2,152 bytes of Redis become about 850."""
        fields = {name: value for name, value in asdict(self).items() if name != "payload"}
        return zlib.compress(f"{stored_json(fields)}\n{self.payload}".encode())

    @classmethod
    def from_stored(cls, raw: str | bytes) -> Event:
        """An event as `stored` writes it, or as kept before: uncompressed (a zlib stream never starts
        with `{`, JSON here always does), or as one JSON object, which JSON writes without a line
        break, so the first one ends the fields' line."""
        data = raw.encode() if isinstance(raw, str) else raw
        kept = (data if data.startswith(b"{") else zlib.decompress(data)).decode()
        fields, line_break, payload = kept.partition("\n")
        if not line_break:
            return cls(**json.loads(kept))
        return cls(**json.loads(fields), payload=payload)
