"""The dispatch job: send queued tasks upstream when a slot frees or a pause ends."""

from __future__ import annotations

from webhook_service.domain.submission import dispatch
from webhook_service.jobs import enqueue_dispatch
from workers.horse import job_services

PAUSE_MARGIN_S = 0.5  # RQ's scheduler works in whole seconds: never wake before the pause is over


def dispatch_job() -> int:
    svc = job_services()
    svc.redis.delete(svc.keys.dispatch_wanted)  # before taking: a task queued from now wakes another
    sent = dispatch(svc)
    paused_s = svc.admission.next_wake_s()
    if paused_s > 0:
        # Woken too early, or paused again meanwhile: come back when the pause ends.
        enqueue_dispatch(svc.redis, f"pause-end-{paused_s:.3f}", delay_s=paused_s + PAUSE_MARGIN_S)
    return sent
