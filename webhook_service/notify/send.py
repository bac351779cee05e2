"""Notifications at work: fan an event out to every sink that wants it, and make one delivery attempt.

`fan_out` builds the event's payload once and stores it, then records one delivery per matching sink
and queues its job, all idempotently: run twice, it finds what it did the first time. It makes the
first attempt of one of them itself, so an event one sink wants costs one job, not two. `deliver` makes
one attempt and schedules the next one itself (RQ's own retries cannot wait as long as a receiver's
Retry-After asks), after waiting its turn at its sink (notify/turns.py: one attempt at a time per sink),
so a slow or dead sink holds one worker at most and only its own deliveries wait. A delivery to a
tenant's endpoint is sent where the endpoint is at each attempt, with its secrets of the moment: a URL
changed with `PATCH /v1/endpoints/<id>` reaches the retries and replays of what was recorded before (a
URL fixed after an outage is the usual reason to change it). The RQ jobs that call them are in
workers/notify.py.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial

from webhook_service.domain.events import Event
from webhook_service.domain.tasks import Task
from webhook_service.integrations import metrics
from webhook_service.jobs import FAN_OUT_JOB_TIMEOUT_S, FIRST_ATTEMPT_BACKSTOP_S, cancel_delivery_job
from webhook_service.notify import disabling
from webhook_service.notify.callback_signing import callback_secret
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.endpoint_deletion import DELETING
from webhook_service.notify.endpoints import PING, Endpoint
from webhook_service.notify.event_order import earlier_fan_outs_first
from webhook_service.notify.payload import build_event
from webhook_service.notify.records import ENDPOINT_DELETED, Delivery, DeliveryStatus, endpoint_id
from webhook_service.notify.retry import next_delay
from webhook_service.notify.routing import Sink, SinkKind, sinks_for
from webhook_service.notify.sinks import Attempt, Verdict, attempt
from webhook_service.notify.turns import LOCK_MARGIN_S, Turns
from webhook_service.redaction import shown_url
from webhook_service.services import Services

log = logging.getLogger(__name__)


def fan_out(
    svc: Services, event_id: str, external_task_id: str, event_type: str, raised_at: datetime
) -> None:
    """Build the event's payload once and queue its deliveries; `raised_at`: when the change committed.
    The task's earlier events are fanned out first (notify/event_order.py): their deliveries must exist
    for this one's to wait for them at each sink."""
    task = svc.store.get(external_task_id)
    if task is None:
        log.warning("event %s: task %s is not recorded, nothing to send", event_type, external_task_id)
        return
    logged_at = earlier_fan_outs_first(svc.redis, svc.events, task, event_id, partial(_fan_out, svc, task))
    first = _fan_out(svc, task, event_id, event_type, logged_at or raised_at, attempt_first=True)
    if first is not None:
        _first_attempt(svc, first)


def _fan_out(
    svc: Services,
    task: Task,
    event_id: str,
    event_type: str,
    raised_at: datetime,
    *,
    attempt_first: bool = False,
) -> Delivery | None:
    """Record the event's deliveries; with `attempt_first`, the one whose first attempt the caller
    makes itself (returned), its job scheduled FIRST_ATTEMPT_BACKSTOP_S later."""
    sinks = sinks_for(svc.settings, task, event_type) + [
        Sink(SinkKind.WEBHOOK, endpoint.url, client=True, endpoint=endpoint.id)
        for endpoint in svc.endpoints.of_tenant(task.tenant)
        if endpoint.wants(event_type)  # a disabled one's are recorded as skipped, to replay once enabled
    ]
    if not sinks:
        return None
    store = svc.deliveries
    event = store.event(event_id) or store.save_event(build_event(svc, task, event_id, event_type, raised_at))
    attempt_first = (
        attempt_first and svc.settings.notify_timeout_s + LOCK_MARGIN_S <= FAN_OUT_JOB_TIMEOUT_S / 2
    )
    first: Delivery | None = None
    for sink in sinks:
        delivery = Delivery.new(event, sink)
        backstop = time.time() + FIRST_ATTEMPT_BACKSTOP_S if attempt_first and first is None else None
        if store.create(delivery, backstop):
            log.info("event %s of %s: %s %s", event_type, task.external_task_id, delivery.status, delivery.id)
            if backstop is not None and delivery.status is DeliveryStatus.PENDING:
                first = delivery
    return first


def _first_attempt(svc: Services, delivery: Delivery) -> None:
    """The first attempt of one of the event's deliveries, made by its fan-out: a job less for most
    events (the one a single sink wants), the others' jobs already queued, so a slow sink delays no
    other. Its own job, scheduled FIRST_ATTEMPT_BACKSTOP_S later, runs only if the fan-out died: once
    the attempt has moved the record on (delivered, retried by another job, waiting its turn under
    another), that job is removed."""
    deliver(svc, delivery.id, delivery.id)
    after = svc.deliveries.get(delivery.id)
    if after is None or after.job != delivery.id:
        cancel_delivery_job(svc.redis, delivery.id)


def deliver(svc: Services, delivery_id: str, job_id: str | None, *, turn_taken: bool = False) -> None:
    """One attempt at one delivery, by the job `job_id`; on failure the next attempt is scheduled, or it
    becomes a dead letter. It first waits its turn at its sink (notify/turns.py), whatever the sink,
    unless its sink's drain (notify/drain.py) took the turn for it (`turn_taken`)."""
    store = svc.deliveries
    delivery = store.get(delivery_id)
    if delivery is None or delivery.status is not DeliveryStatus.PENDING or delivery.job != job_id:
        log.info("delivery %s: nothing to do for job %s (done, or another job owns it)", delivery_id, job_id)
        return
    sink = delivery.as_sink
    if sink.endpoint is None and sink.has_endpoint and store.is_disabled(delivery):
        store.skip(delivery_id, job_id, "endpoint_disabled")
        log.info("delivery %s skipped: endpoint %s is disabled", delivery_id, shown_url(sink.target))
        return
    event = store.event(delivery.event_id)
    if event is None:  # never written without its deliveries; kept against a flushed or damaged Redis
        store.record_attempt(
            delivery_id, job_id, Attempt(error="event missing"), DeliveryStatus.FAILED, "lost"
        )
        return
    endpoint = svc.endpoints.get(sink.endpoint) if sink.endpoint is not None else None
    if sink.endpoint is not None and (endpoint is None or not endpoint.enabled):
        deleted = endpoint is None or endpoint.disabled_reason == DELETING
        store.give_up(delivery_id, job_id, ENDPOINT_DELETED if deleted else "endpoint_disabled")
        log.info("delivery %s: endpoint %s is disabled or deleted: a dead letter", delivery_id, sink.endpoint)
        return
    if endpoint is not None and endpoint.url != delivery.target:  # it goes where its endpoint is now
        delivery = store.follow(delivery_id, job_id, endpoint.url) or replace(delivery, target=endpoint.url)
    turns = Turns(svc.redis, svc.keys, store, svc.events)
    target = turns.target(delivery.turn_target, endpoint)
    holder = job_id or delivery_id
    if not turn_taken and (wait := turns.wait_for(delivery, target, holder, svc.settings.notify_timeout_s)):
        turns.park(delivery, target, job_id, wait)
        log.info("delivery %s waits its turn at %s: %s", delivery_id, target.name, wait.why)
        return
    try:
        result = _attempt(svc, delivery, job_id, event)
    finally:
        turns.release(target, holder, wake=not turn_taken)
    if endpoint is None:
        return
    if result.verdict is Verdict.GONE:
        disabling.disable(svc, endpoint.id, "gone")
    elif result.verdict is not Verdict.DELIVERED:
        disabling.check_failing(svc, endpoint.id)


def _attempt(svc: Services, delivery: Delivery, job_id: str | None, event: Event) -> Attempt:
    sink = delivery.as_sink
    result = attempt(sink, event, svc.settings, _secrets(svc, sink, delivery.tenant))
    metrics.delivery_attempted(sink.kind.value, result.verdict.value, delivery.tenant)
    _conclude(svc.deliveries, delivery, job_id, result, svc.settings.notify_retry_schedule_s)
    return result


def _secrets(svc: Services, sink: Sink, tenant: str) -> tuple[str, ...]:
    """A tenant's endpoint signs with its own secrets, a task's callback_url with its tenant's
    (notify/callback_signing.py), the operator's webhooks with NOTIFY_WEBHOOK_SECRET."""
    if sink.endpoint is not None:
        return svc.endpoints.signing_secrets(sink.endpoint)
    secret = svc.settings.notify_webhook_secret
    if sink.client:
        secret = callback_secret(secret, tenant)
    return (secret,) if secret else ()


def _conclude(
    store: DeliveryStore, delivery: Delivery, job_id: str | None, result: Attempt, schedule: tuple[float, ...]
) -> None:
    where = f"delivery {delivery.id} ({delivery.event_type} to {delivery.sink} {shown_url(delivery.target)})"
    outcome = result.error or f"HTTP {result.status_code}"
    if result.verdict is Verdict.DELIVERED:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.DELIVERED)
        log.info("%s delivered in %d ms", where, result.latency_ms)
    elif result.verdict is Verdict.GONE and delivery.endpoint is not None:
        store.record_attempt(delivery.id, job_id, result, DeliveryStatus.FAILED, "gone")
        log.warning("%s: the endpoint answered 410 Gone; it is disabled until enabled again", where)
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


def ping(svc: Services, endpoint: Endpoint, timeout_s: float) -> Attempt:
    """Send a signed `ping` event to the endpoint at once (notify/pinging.py), as every delivery is
    sent: with its secrets, through the SSRF guard, but within `timeout_s`. Nothing is retried; the
    attempt counts among the endpoint's own."""
    now = datetime.now(UTC)
    body = {
        "type": PING,
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": {"endpoint_id": endpoint.id, "tenant": endpoint.tenant},
    }
    event = Event(
        id=f"msg_{secrets.token_hex(16)}",
        type=PING,
        external_task_id="",
        payload=json.dumps(body, separators=(",", ":")),
        prompt="",
        tenant=endpoint.tenant,
    )
    sink = Sink(SinkKind.WEBHOOK, endpoint.url, client=True, endpoint=endpoint.id)
    settings = replace(svc.settings, notify_timeout_s=timeout_s)
    result = attempt(sink, event, settings, _secrets(svc, sink, endpoint.tenant))
    metrics.delivery_attempted(sink.kind.value, result.verdict.value, endpoint.tenant)
    svc.endpoints.record_attempt(
        endpoint.id, {**result.record(), "event_type": PING}, result.verdict is Verdict.DELIVERED
    )
    return result
