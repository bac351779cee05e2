"""Disabling a tenant's endpoint (notify/endpoints.py) when it is gone or has failed for too long, and
telling the tenant and the operator.

An endpoint that answers 410 Gone, or that has failed without a single success for
ENDPOINT_DISABLE_AFTER_S (5 days by default: longer than the retry schedule, so one receiver's bad
weekend is weathered), is disabled. Its pending deliveries become dead letters at once rather than
retrying into the void for the rest of their schedule; they are replayable once it is enabled again
(`PATCH /v1/endpoints/<id> {"enabled": true}`). Whoever disables it first raises one `endpoint.disabled`
event: in the tenant's event log (notify/event_log.py), for a pipeline that reads rather than receives,
and to the tenant's other endpoints that want it and to the operator's webhooks, Slack and email (each
filter takes it by default: NOTIFY_EVENTS).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime

from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import ENDPOINT_DISABLED, Event
from webhook_service.notify.endpoints import Endpoint
from webhook_service.notify.records import Delivery
from webhook_service.notify.routing import Sink, SinkKind, operator_sinks_for
from webhook_service.services import Services

log = logging.getLogger(__name__)


def check_failing(svc: Services, endpoint_id: str) -> None:
    """After a failed attempt: disable the endpoint if it has failed for ENDPOINT_DISABLE_AFTER_S."""
    endpoint = svc.endpoints.get(endpoint_id)
    if endpoint is None or not endpoint.enabled or endpoint.failing_since is None:
        return
    if now_ms() - endpoint.failing_since >= svc.settings.endpoint_disable_after_s * 1000:
        disable(svc, endpoint_id, "failing")


def disable(svc: Services, endpoint_id: str, reason: str) -> None:
    """Disable the endpoint, dead-letter what was pending for it and raise `endpoint.disabled`; nothing
    when it is disabled already (another worker got there first) or gone."""
    endpoint = svc.endpoints.disable(endpoint_id, reason)
    if endpoint is None:
        return
    given_up = svc.deliveries.give_up_pending(endpoint_id, "endpoint_disabled")
    log.warning(
        "endpoint %s of tenant %s disabled (%s); %d pending deliveries are dead letters until it is "
        'enabled again (PATCH /v1/endpoints/%s {"enabled": true}) and they are replayed',
        endpoint_id,
        endpoint.tenant,
        reason,
        len(given_up),
        endpoint_id,
    )
    _announce(svc, endpoint, len(given_up))


def _announce(svc: Services, endpoint: Endpoint, dead_letters: int) -> None:
    at = endpoint.disabled_at or now_ms()
    body = {
        "type": ENDPOINT_DISABLED,
        "timestamp": datetime.fromtimestamp(at / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "data": {**endpoint.view(), "dead_letters": dead_letters},
    }
    digest = hashlib.sha256(f"{endpoint.id}\n{ENDPOINT_DISABLED}\n{at}".encode()).hexdigest()[:32]
    svc.events.record_taskless(endpoint.tenant, f"evt_{digest}", ENDPOINT_DISABLED, at, endpoint.id)
    sinks = operator_sinks_for(svc.settings, ENDPOINT_DISABLED)
    sinks += [
        Sink(SinkKind.WEBHOOK, other.url, client=True, endpoint=other.id)
        for other in svc.endpoints.of_tenant(endpoint.tenant)
        if other.id != endpoint.id and other.enabled and other.wants(ENDPOINT_DISABLED)
    ]
    if not sinks:
        return  # nobody to tell: nothing stored (an event without deliveries would never be pruned)
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    event = svc.deliveries.save_event(
        Event(f"evt_{digest}", ENDPOINT_DISABLED, "", payload, "", endpoint.tenant)
    )
    for sink in sinks:
        svc.deliveries.create(Delivery.new(event, sink))
