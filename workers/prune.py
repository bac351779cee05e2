"""The retention tick: one pruning pass (domain/retention.py), then the next slot's tick is scheduled."""

from __future__ import annotations

from webhook_service.domain.retention import prune
from webhook_service.jobs import periodic_work, schedule_tick
from workers.horse import job_services


def tick() -> dict[str, int]:
    svc = job_services()
    try:
        report = prune(svc)
    finally:
        schedule_tick(svc.redis, periodic_work(svc.settings)["prune"])
    return {"removed": len(report.removed), "postponed": len(report.postponed)}
