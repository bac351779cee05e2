"""Events: what downstream systems hear about a task, and the one place they are raised.

An event is raised inside the Redis transaction that makes the change it reports, by queueing a
fan-out job whose id is the event's id. The id is derived from the task and the event type, and each
type happens at most once per task, so a callback and a poll racing on the same change still raise
one event, and a receiver sees the same `webhook-id` however often a delivery is retried.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import redis
from redis.client import Pipeline
from rq import Queue, Retry

from webhook_service.config import Settings
from webhook_service.queues import NOTIFY_QUEUE
from webhook_service.tasks import Status, Task


class EventType(StrEnum):
    SUBMITTED = "task.submitted"
    PROCESSING = "task.processing"
    SUCCEEDED = "task.succeeded"
    FAILED = "task.failed"
    ARCHIVED = "task.archived"
    ARCHIVE_FAILED = "task.archive_failed"
    EXPIRED = "task.expired"


FOR_STATUS = {
    Status.SUBMITTED: EventType.SUBMITTED,
    Status.PROCESSING: EventType.PROCESSING,
    Status.SUCCEED: EventType.SUCCEEDED,
    Status.FAILED: EventType.FAILED,
    Status.REJECTED: EventType.FAILED,
}

FAN_OUT_JOB_TIMEOUT_S = 60
# A fan-out killed half-way runs again (it is idempotent: deliveries have deterministic ids).
FAN_OUT_RETRY_INTERVALS_S = [5, 60, 600]


def event_id(external_task_id: str, event_type: EventType) -> str:
    """Stable across retries and processes: `evt_` + a digest of (task, type); RQ-safe as a job id."""
    digest = hashlib.sha256(f"{external_task_id}\n{event_type.value}".encode()).hexdigest()[:32]
    return f"evt_{digest}"


def raise_event(
    connection: redis.Redis, pipe: Pipeline, settings: Settings, task: Task, event_type: EventType
) -> None:
    """Queue the fan-out inside the caller's transaction: it commits with the change or not at all.

    An event no sink wants (every sink has an event filter) is not queued at all: most of a task's
    events are usually filtered out, and each would cost a job.
    """
    from webhook_service.notify.sinks import sinks_for  # here: notify builds on the lifecycle that calls this

    if not sinks_for(settings, task, event_type.value):
        return
    Queue(NOTIFY_QUEUE, connection=connection).enqueue_call(
        "workers.notify.fan_out",
        args=(event_id(task.external_task_id, event_type), task.external_task_id, event_type.value),
        job_id=event_id(task.external_task_id, event_type),
        timeout=FAN_OUT_JOB_TIMEOUT_S,
        retry=Retry(max=len(FAN_OUT_RETRY_INTERVALS_S), interval=FAN_OUT_RETRY_INTERVALS_S),
        pipeline=pipe,
    )
