"""The periodic reconciliation pass, on RQ's scheduler.

Each tick is a job for one time slot (`reconcile-<slot>`): every worker schedules the next slot when
it starts and every tick schedules the one after it, and a slot's job id is the same whoever
schedules it, so there is one tick per slot however many workers run. The pass itself also takes a
lock, so two ticks can never overlap.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
from rq import Queue

from webhook_service.queues import MAINTENANCE_QUEUE
from webhook_service.reconcile import reconcile
from workers.context import services


def tick() -> dict[str, int]:
    svc = services()
    try:
        report = reconcile(svc)
    finally:
        schedule_next_tick(svc.redis, svc.settings.reconcile_interval_s)
    return {"polled": len(report.polled), "changed": len(report.changed), "expired": len(report.expired)}


def schedule_next_tick(connection: redis.Redis, interval_s: float) -> None:
    slot = int(time.time() // interval_s) + 1
    Queue(MAINTENANCE_QUEUE, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * interval_s, UTC),
        "workers.reconcile.tick",
        job_id=f"reconcile-{slot}",
        job_timeout=int(interval_s * 4 + 120),
    )
