"""Where a delivery is listed (keys.py names the indexes): among every delivery, its tenant's and, for a
tenant's endpoint, its endpoint's, each by creation time and by the time it entered its status; and, for
an endpoint's delivery still pending, in the set its endpoint dead-letters when it is disabled or
deleted. An endpoint's own indexes are what `?endpoint=` lists and replays; they cost two sorted-set
entries a delivery, and go with the deliveries (retention), not with the endpoint, whose deletion would
otherwise drop a set as large as its month of deliveries in one command.

Kept apart from the records themselves (notify/deliveries.py): every write of a delivery moves it between
these in the same transaction, and retention takes it out of all of them.
"""

from __future__ import annotations

import redis
from redis.client import Pipeline

from webhook_service.domain.tenants import DEFAULT_TENANT, Scope
from webhook_service.keys import Keys
from webhook_service.notify.records import Delivery, DeliveryStatus


def indexes(keys: Keys, delivery: Delivery, status: DeliveryStatus | None) -> list[str]:
    """The sorted sets that hold `delivery`: by creation time (`status` None), or by when it entered
    `status`."""
    name = status.value if status is not None else None
    found = [keys.deliveries(name), keys.tenant_deliveries(delivery.tenant, name)]
    if delivery.endpoint is not None:
        found.append(keys.endpoint_deliveries(delivery.endpoint, name))
    return found


def index_new(pipe: Pipeline, keys: Keys, delivery: Delivery) -> None:
    """Queue a new delivery's entries by creation time (its status's come with `index_write`)."""
    for index in indexes(keys, delivery, None):
        pipe.zadd(index, {delivery.id: delivery.created_at})


def index_write(pipe: Pipeline, keys: Keys, delivery: Delivery, previous: DeliveryStatus | None) -> None:
    """Queue the moves of a delivery written with its status, which was `previous` (None: new)."""
    if delivery.endpoint is not None:  # what to dead-letter when the endpoint is disabled or deleted
        pending = keys.endpoint_pending(delivery.endpoint)
        if delivery.status is DeliveryStatus.PENDING:
            pipe.sadd(pending, delivery.id)
        else:
            pipe.srem(pending, delivery.id)
    if previous is delivery.status:
        return
    if previous is not None:
        for index in indexes(keys, delivery, previous):
            pipe.zrem(index, delivery.id)
    for index in indexes(keys, delivery, delivery.status):
        pipe.zadd(index, {delivery.id: delivery.updated_at})


def unindex(pipe: Pipeline, keys: Keys, delivery: Delivery) -> None:
    """Queue a removed delivery's removal from every index that holds it."""
    for index in [*indexes(keys, delivery, None), *indexes(keys, delivery, delivery.status)]:
        pipe.zrem(index, delivery.id)
    if delivery.endpoint is not None:
        pipe.srem(keys.endpoint_pending(delivery.endpoint), delivery.id)


def scoped_index(
    connection: redis.Redis,
    keys: Keys,
    scope: Scope,
    status: DeliveryStatus | None,
    endpoint: str | None = None,
) -> str:
    """The index `scope` lists (by creation time, or those in `status`): `endpoint`'s, when one is named
    (one `scope` sees: the caller checked), else every delivery's for an admin, else the tenant's.
    Deliveries made before tenants are in the shared indexes only until the backfill
    (domain/tenant_backfill.py) has put them in the default tenant's: until then the default tenant reads
    the shared ones, filtered."""
    name = status.value if status is not None else None
    if endpoint is not None:
        return keys.endpoint_deliveries(endpoint, name)
    if scope.admin:
        return keys.deliveries(name)
    if scope.tenant == DEFAULT_TENANT and connection.get(keys.tenant_backfill) != b"done":
        return keys.deliveries(name)
    return keys.tenant_deliveries(scope.tenant, name)
