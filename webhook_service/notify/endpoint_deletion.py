"""Deleting a tenant's endpoint (`DELETE /v1/endpoints/<id>`) settles what was pending for it.

A delivery waiting its turn at an endpoint (notify/turns.py) has no job of its own: only the endpoint's
drain starts it, and the drain reads the endpoint's waiting set, which goes with the endpoint. Left
alone, such a delivery would stay pending for good, and hold its task in Redis for good too (retention
waits while a delivery is pending). So a deletion makes every pending delivery of the endpoint a dead
letter (`reason: endpoint_deleted`) before the endpoint goes: one that had a job finds nothing to do when
its job runs, and one that waited is settled there and then. Retention then removes them with their
tasks as any dead letter, DEAD_LETTER_RETENTION_S after they failed; they cannot be replayed, having
nowhere to go.

The endpoint is disabled first, so that nothing becomes pending for it meanwhile (a fan-out records its
deliveries as skipped, an attempt about to start gives up), and a deletion cut short (a process killed
between the steps) leaves a disabled endpoint to delete again, not deliveries pending with nowhere to go.
"""

from __future__ import annotations

import logging

from webhook_service.domain.tenants import Scope
from webhook_service.notify.records import ENDPOINT_DELETED
from webhook_service.services import Services

log = logging.getLogger(__name__)
DELETING = "deleted"  # the disabled_reason of an endpoint whose deletion was cut short


def delete_endpoint(svc: Services, endpoint_id: str, scope: Scope) -> int | None:
    """Delete the endpoint if `scope` may: how many of its deliveries became dead letters; None when
    `scope` has no such endpoint."""
    found = svc.endpoints.get(endpoint_id, scope)
    if found is None:
        return None
    svc.endpoints.disable(endpoint_id, DELETING)  # None when disabled already: nothing more to stop
    dead = svc.deliveries.give_up_pending(endpoint_id, ENDPOINT_DELETED)
    if not svc.endpoints.delete(endpoint_id, scope):
        return None  # deleted by another request meanwhile
    log.info(
        "endpoint %s of tenant %s deleted; %d pending deliveries are dead letters",
        endpoint_id,
        found.tenant,
        len(dead),
    )
    return len(dead)
