"""The reconciliation tick: one pass (domain/reconcile.py), then the next slot's tick is scheduled.

The pass takes a lock, so two ticks can never overlap; jobs.py says why there is one tick per slot
however many workers run.
"""

from __future__ import annotations

from webhook_service.domain.reconcile import reconcile
from webhook_service.jobs import periodic_work, schedule_tick
from workers.horse import job_services


def tick() -> dict[str, int]:
    svc = job_services()
    try:
        report = reconcile(svc)
    finally:
        schedule_tick(svc.redis, periodic_work(svc.settings)["reconcile"])
    return {"polled": len(report.polled), "changed": len(report.changed), "expired": len(report.expired)}
