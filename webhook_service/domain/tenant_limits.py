"""A tenant's share of the submission queue: its weight in the round-robin and the most tasks it may
have upstream at once. Set by the operator (`flask clients create|update`), read by the submission
queue; kept in two Redis hashes (keys.py `tenant_weights`, `tenant_max_open`) so that a change takes
effect on the next task sent, in every process, without a restart.

A tenant without an entry has the defaults: weight 1, no limit of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from webhook_service.keys import Keys
from webhook_service.replies import hash_fields


@dataclass(frozen=True)
class TenantLimits:
    weight: int | None = None  # None: the default, 1
    max_open: int | None = None  # None: no limit of its own (the account's still holds)


def all_limits(connection: redis.Redis, keys: Keys) -> dict[str, TenantLimits]:
    """Every tenant that has an entry in either hash."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.tenant_weights)
        pipe.hgetall(keys.tenant_max_open)
        weights, max_open = (hash_fields(reply) for reply in pipe.execute())
    return {
        tenant: TenantLimits(weight=_int(weights.get(tenant)), max_open=_int(max_open.get(tenant)))
        for tenant in {*weights, *max_open}
    }


def set_weight(connection: redis.Redis, keys: Keys, tenant: str, weight: int) -> None:
    if weight < 1:
        raise ValueError(f"a weight is a whole number of at least 1, got {weight}")
    connection.hset(keys.tenant_weights, tenant, weight)


def set_max_open(connection: redis.Redis, keys: Keys, tenant: str, max_open: int | None) -> None:
    """`None` removes the tenant's own limit."""
    if max_open is None:
        connection.hdel(keys.tenant_max_open, tenant)
        return
    if max_open < 1:
        raise ValueError(f"max_open is a whole number of at least 1 (or none), got {max_open}")
    connection.hset(keys.tenant_max_open, tenant, max_open)


def forget(pipe: redis.client.Pipeline, keys: Keys, tenant: str) -> None:
    """Queue the removal of both entries on `pipe` (a revoked tenant's, in the revocation's transaction)."""
    pipe.hdel(keys.tenant_weights, tenant)
    pipe.hdel(keys.tenant_max_open, tenant)


def _int(raw: str | None) -> int | None:
    return int(raw) if raw is not None else None
