"""The notification jobs: notify/send.py does the work."""

from __future__ import annotations

from datetime import UTC, datetime

from rq import get_current_job

from webhook_service.notify import drain as drains
from webhook_service.notify import send
from workers.horse import job_services


def fan_out(event_id: str, external_task_id: str, event_type: str) -> None:
    send.fan_out(job_services(), event_id, external_task_id, event_type, _raised_at())


def deliver(delivery_id: str) -> None:
    job = get_current_job()
    send.deliver(job_services(), delivery_id, job.id if job is not None else None)


def drain(target: str) -> None:
    drains.drain(job_services(), target)


def _raised_at() -> datetime:
    """When the change was committed: the fan-out job was queued in the same transaction. Only when the
    event log no longer holds the event (notify/event_order.py): RQ queues a retried job again, and its
    `enqueued_at` then says when."""
    job = get_current_job()
    enqueued = job.enqueued_at if job is not None else None
    return enqueued.replace(tzinfo=UTC) if enqueued is not None else datetime.now(UTC)
