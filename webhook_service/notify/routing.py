"""Where events go: the tenant's event log, the sinks that want an event, and raising it inside the
change it reports.

Sinks: the operator's webhooks (`NOTIFY_WEBHOOK_URLS`), the task's own `callback_url`, Slack and email,
each with its event filter; and the tenant's own endpoints (notify/endpoints.py), each with its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis
from redis.client import Pipeline

from webhook_service.config import Settings
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.tasks import Task
from webhook_service.jobs import enqueue_fan_out
from webhook_service.keys import Keys
from webhook_service.notify import endpoints, event_log


class SinkKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"


@dataclass(frozen=True)
class Sink:
    kind: SinkKind
    target: str  # the URL; for email, the recipients joined with commas
    client: bool = False  # a client's URL (a callback_url, an endpoint's): untrusted
    endpoint: str | None = None  # a tenant's endpoint (notify/endpoints.py): its id

    @property
    def key(self) -> str:
        """What a delivery's id is made from: two endpoints at one URL are two sinks."""
        return f"endpoint:{self.endpoint}" if self.endpoint else f"{self.kind.value}:{self.target}"

    @property
    def has_endpoint(self) -> bool:
        """Webhooks and Slack are HTTP endpoints that can be gone (410) and disabled; email is not."""
        return self.kind is not SinkKind.EMAIL


def sinks_for(settings: Settings, task: Task, event_type: str) -> list[Sink]:
    """Every sink whose filter takes `event_type`; the task's callback_url counts as a generic webhook."""
    return _sinks(settings, event_type, task.client_callback_url)


def operator_sinks_for(settings: Settings, event_type: str) -> list[Sink]:
    """The operator's webhooks, Slack and email whose filter takes `event_type`: for an event of no task."""
    return _sinks(settings, event_type, None)


def _sinks(settings: Settings, event_type: str, callback: str | None) -> list[Sink]:
    sinks: list[Sink] = []
    if event_type in settings.notify_webhook_events:
        sinks += [Sink(SinkKind.WEBHOOK, url) for url in dict.fromkeys(settings.notify_webhook_urls)]
        if callback and callback not in settings.notify_webhook_urls:
            sinks.append(Sink(SinkKind.WEBHOOK, callback, client=True))
    if settings.slack_webhook_url and event_type in settings.slack_events:
        sinks.append(Sink(SinkKind.SLACK, settings.slack_webhook_url))
    if settings.smtp_url and event_type in settings.email_events:
        sinks.append(Sink(SinkKind.EMAIL, ",".join(settings.notify_email_to)))
    return sinks


def raise_event(
    connection: redis.Redis, pipe: Pipeline, settings: Settings, keys: Keys, task: Task, event_type: EventType
) -> None:
    """Record the event in its tenant's log and queue its fan-out, inside the caller's transaction: both
    commit with the change or not at all.

    The log (notify/event_log.py) takes every event: a pipeline that reads it sees each one. The fan-out
    is queued only for an event some sink wants (every sink has an event filter): most of a task's
    events are usually filtered out, and each would cost a job. Whether the tenant's endpoints want it
    is remembered for a few seconds per process (`endpoints.wanted`): an endpoint added in another
    process within those seconds misses the events raised meanwhile.
    """
    the_id = event_id(task.external_task_id, event_type)
    event_log.record(pipe, keys, task, the_id, event_type)
    wanted = sinks_for(settings, task, event_type.value) or endpoints.wanted(
        connection, keys, task.tenant, event_type.value
    )
    if wanted:
        enqueue_fan_out(connection, pipe, the_id, task.external_task_id, event_type.value)
