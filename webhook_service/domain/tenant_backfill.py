"""Putting what was recorded before tenants existed into the tenants' own indexes, once per Redis.

Every task and delivery recorded since enters its tenant's indexes (`tasks:tenant:<t>`,
`deliveries:tenant:<t>[:<status>]`) as it is made. Older ones are only in the shared indexes, so the
prune job (workers/prune.py) walks the task list by creation time, a slice per pass, and adds each
task and its deliveries to its tenant's indexes; then it marks the walk `done`. Until then the
default tenant's lists read the shared indexes and keep their own (store.py, deliveries.py), so
nothing is missing from them meanwhile.
"""

from __future__ import annotations

from webhook_service.replies import scored, text_or_none
from webhook_service.services import Services

STEP = 500


def backfill_step(services: Services) -> bool:
    """Index the next slice of tasks; True once the walk is complete (then a single GET per call)."""
    keys = services.keys
    cursor = text_or_none(services.redis.get(keys.tenant_backfill))
    if cursor == "done":
        return True
    page = scored(
        services.redis.zrangebyscore(keys.tasks, cursor or "-inf", "+inf", start=0, num=STEP, withscores=True)
    )
    pipe = services.redis.pipeline(transaction=True)
    for task in services.store.many([member for member, _ in page]):
        pipe.zadd(keys.tenant_tasks(task.tenant), {task.external_task_id: task.created_at})
        for delivery in services.deliveries.of_task(task.external_task_id):
            pipe.zadd(keys.tenant_deliveries(delivery.tenant), {delivery.id: delivery.created_at})
            status_index = keys.tenant_deliveries(delivery.tenant, delivery.status.value)
            pipe.zadd(status_index, {delivery.id: delivery.updated_at})
    if len(page) < STEP:
        following = "done"
    else:  # as in retention's backfill: re-reading the last instant is harmless; one instant moves on
        first, last = page[0][1], page[-1][1]
        following = f"({last!r}" if first == last else repr(last)
    pipe.set(keys.tenant_backfill, following)
    pipe.execute()
    return following == "done"
