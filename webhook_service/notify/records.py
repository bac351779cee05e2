"""A delivery: one event on its way to one sink, and what the API shows of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import Event
from webhook_service.domain.tenants import DEFAULT_TENANT, client_id
from webhook_service.jobs import delivery_job_id
from webhook_service.notify.routing import Sink, SinkKind
from webhook_service.redaction import shown_url


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # an attempt is queued or scheduled
    DELIVERED = "delivered"
    FAILED = "failed"  # a dead letter: schedule exhausted, 410 Gone, a refused address, endpoint disabled
    SKIPPED = "skipped"  # never sent: the endpoint was disabled


REPLAYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.SKIPPED})
ENDPOINT_DELETED = "endpoint_deleted"  # the reason of a dead letter whose endpoint was deleted
SINK_TARGET_PREFIX = "sk_"  # a turn target that is not a tenant's endpoint (Delivery.turn_target)


def delivery_id(event_id: str, sink: Sink) -> str:
    """Deterministic, so fanning an event out twice finds the deliveries it made the first time."""
    return "dlv_" + hashlib.sha256(f"{event_id}\n{sink.key}".encode()).hexdigest()[:32]


def endpoint_id(url: str) -> str:
    """A name for a disabled endpoint that does not show its URL (which may hold a secret)."""
    return "ep_" + hashlib.sha256(url.encode()).hexdigest()[:16]


@dataclass
class Delivery:
    id: str
    event_id: str
    event_type: str
    external_task_id: str
    sink: SinkKind
    target: str  # a tenant's endpoint's: its URL when last sent (each attempt follows the endpoint's)
    client: bool = False
    status: DeliveryStatus = DeliveryStatus.PENDING
    job: str | None = None  # the one job allowed to make the next attempt
    attempts: int = 0  # every attempt ever made
    tries: int = 0  # attempts since created or replayed: the position in the retry schedule
    replays: int = 0
    reason: str | None = None  # why failed or skipped: exhausted, gone, refused, endpoint_disabled/_deleted
    last_error: str | None = None
    created_at: int = field(default_factory=now_ms)
    updated_at: int = field(default_factory=now_ms)
    next_attempt_at: int | None = None
    delivered_at: int | None = None
    failed_at: int | None = None
    tenant: str = DEFAULT_TENANT  # the task's tenant (a record made before tenants: default)
    endpoint: str | None = None  # the tenant's endpoint it goes to (notify/endpoints.py), if one
    raised_at: int = 0  # when its event was raised: the order of a task's events (notify/turns.py)
    waits: int = 0  # times it waited its turn at its endpoint (notify/turns.py): not attempts

    @classmethod
    def new(cls, event: Event, sink: Sink) -> Delivery:
        return cls(
            id=delivery_id(event.id, sink),
            event_id=event.id,
            event_type=event.type,
            external_task_id=event.external_task_id,
            sink=sink.kind,
            target=sink.target,
            client=sink.client,
            tenant=event.tenant,
            endpoint=sink.endpoint,
            raised_at=event.raised_at,
        )

    @property
    def as_sink(self) -> Sink:
        return Sink(self.sink, self.target, self.client, self.endpoint)

    @property
    def turn_target(self) -> str:
        """Where it takes its turns (notify/turns.py): its endpoint's id, else `sk_` and a digest of its
        tenant and sink (one per tenant, so one tenant's backlog at a shared URL never takes another's
        turns), which shows no URL."""
        if self.endpoint is not None:
            return self.endpoint
        digest = hashlib.sha256(f"{self.tenant}\n{self.as_sink.key}".encode()).hexdigest()
        return SINK_TARGET_PREFIX + digest[:16]

    def next_job_id(self) -> str:
        return delivery_job_id(self.id, self.attempts + 1, self.replays, self.waits)

    def view(self) -> dict[str, Any]:
        """As the API shows it: the URL without path or query, and `webhook_id` said outright."""
        data = {k: v for k, v in asdict(self).items() if k not in ("job", "target")}
        shown_task = client_id(self.external_task_id, self.tenant)  # the id the task's client chose
        return {
            **data,
            "external_task_id": shown_task,
            "target": shown_url(self.target),
            "webhook_id": self.event_id,
        }

    @classmethod
    def from_json(cls, raw: str | bytes) -> Delivery:
        data = json.loads(raw)
        data["sink"], data["status"] = SinkKind(data["sink"]), DeliveryStatus(data["status"])
        return cls(**data)
