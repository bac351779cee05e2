"""Notifications at work: fan an event out to every sink that wants it, and make one delivery attempt.

`fan_out` builds the event's payload once and stores it, then records one delivery per matching sink
and queues its job, all idempotently: run twice, it finds what it did the first time. `deliver` makes
one attempt and schedules the next one itself (RQ's own retries cannot wait as long as a receiver's
Retry-After asks), so a slow or dead sink only ever holds up its own deliveries. The RQ jobs that call
them are in workers/notify.py.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from webhook_service.integrations import metrics
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.payload import build_event
from webhook_service.notify.records import Delivery, DeliveryStatus, endpoint_id
from webhook_service.notify.retry import next_delay
from webhook_service.notify.routing import sinks_for
from webhook_service.notify.sinks import Attempt, Verdict, attempt
from webhook_service.redaction import shown_url
from webhook_service.services import Services

log = logging.getLogger(__name__)


def fan_out(
    svc: Services, event_id: str, external_task_id: str, event_type: str, raised_at: datetime
) -> None:
    """Build the event's payload once and queue its deliveries; `raised_at`: when the change committed."""
    task = svc.store.get(external_task_id)
    if task is None:
        log.warning("event %s: task %s is not recorded, nothing to send", event_type, external_task_id)
        return
    sinks = sinks_for(svc.settings, task, event_type)
    if not sinks:
        return
    store = svc.deliveries
    event = store.event(event_id) or store.save_event(build_event(svc, task, event_id, event_type, raised_at))
    for sink in sinks:
        delivery = Delivery.new(event, sink)
        if store.create(delivery):
            log.info("event %s of %s: %s %s", event_type, external_task_id, delivery.status, delivery.id)


def deliver(svc: Services, delivery_id: str, job_id: str | None) -> None:
    """One attempt at one delivery, by the job `job_id`; on failure the next attempt is scheduled, or it
    becomes a dead letter."""
    store = svc.deliveries
    delivery = store.get(delivery_id)
    if delivery is None or delivery.status is not DeliveryStatus.PENDING or delivery.job != job_id:
        log.info("delivery %s: nothing to do for job %s (done, or another job owns it)", delivery_id, job_id)
        return
    sink = delivery.as_sink
    if sink.has_endpoint and store.is_disabled(sink.target):
        store.skip(delivery_id, job_id, "endpoint_disabled")
        log.info("delivery %s skipped: endpoint %s is disabled", delivery_id, shown_url(sink.target))
        return
    event = store.event(delivery.event_id)
    if event is None:  # never written without its deliveries; kept against a flushed or damaged Redis
        store.record_attempt(
            delivery_id, job_id, Attempt(error="event missing"), DeliveryStatus.FAILED, "lost"
        )
        return
    result = attempt(sink, event, svc.settings)
    metrics.delivery_attempted(sink.kind.value, result.verdict.value, delivery.tenant)
    _conclude(store, delivery, job_id, result, svc.settings.notify_retry_schedule_s)


def _conclude(
    store: DeliveryStore, delivery: Delivery, job_id: str | None, result: Attempt, schedule: tuple[float, ...]
) -> None:
    where = f"delivery {delivery.id} ({delivery.event_type} to {delivery.sink} {shown_url(delivery.target)})"
    outcome = result.error or f"HTTP {result.status_code}"
    if result.verdict is Verdict.DELIVERED:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.DELIVERED)
        log.info("%s delivered in %d ms", where, result.latency_ms)
    elif result.verdict is Verdict.GONE:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.FAILED, "gone")
        log.warning(
            "%s: the endpoint answered 410 Gone; deliveries to it are disabled (endpoint %s) until it is "
            "enabled again with DELETE /v1/deliveries/disabled-endpoints/%s",
            where,
            endpoint_id(delivery.target),
            endpoint_id(delivery.target),
        )
    elif result.verdict is Verdict.REFUSED:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.FAILED, "refused")
        log.warning("%s refused, not retried: %s", where, outcome)
    elif (delay := next_delay(schedule, delivery.tries + 1, result.retry_after_s)) is None:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.FAILED, "exhausted")
        log.warning("%s failed (%s) after %d attempts: dead letter", where, outcome, delivery.tries + 1)
    else:
        retry_at = time.time() + delay
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.PENDING, retry_at=retry_at)
        log.info("%s attempt %d failed (%s); next in %.1f s", where, delivery.tries + 1, outcome, delay)
