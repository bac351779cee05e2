"""The service's RQ queues, job ids and retry schedules: the defaults of all background work, in one place.

Jobs carry ids, never payloads: a job reads the task from the store when it runs, so a retried job
sees the task as it is then, not as it was when it was enqueued.
"""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

import redis
from redis.client import Pipeline
from rq import Queue, Retry

SUBMIT_QUEUE = "submit"
ARCHIVE_QUEUE = "archive"
NOTIFY_QUEUE = "notify"
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (SUBMIT_QUEUE, ARCHIVE_QUEUE, NOTIFY_QUEUE, MAINTENANCE_QUEUE)  # in priority order

DISPATCH_JOB_ID = "dispatch"
DISPATCH_JOB_TIMEOUT_S = 10 * 60

ARCHIVE_JOB_TIMEOUT_S = 60 * 60  # a 2 GiB video at a slow 1 MB/s still fits
ARCHIVE_RETRIES = 8  # with a 10 s base: about 18 hours in all, well inside Kling's 30 days

# How a worker finds jobs whose worker died (SIGKILL, lost machine): RQ marks a job abandoned when its
# heartbeat (job monitoring interval + 60 s) lapses, and a live worker's maintenance pass, every
# MAINTENANCE_INTERVAL_S, then retries it. Recovery after a whole worker dies: at most ~2.5 minutes.
JOB_MONITORING_INTERVAL_S = 30
MAINTENANCE_INTERVAL_S = 60


def backoff_intervals(
    base_s: float, count: int, factor: float = 3.0, cap_s: float = 6 * 3600, jitter: float = 0.2
) -> list[int]:
    """Exponential back-off with ±jitter, capped. RQ repeats only the list it is given, so compute it.

    A base of 0 retries at once (RQ then re-enqueues without the scheduler): for tests.
    """
    return [
        round(min(cap_s, base_s * factor**n) * random.uniform(1 - jitter, 1 + jitter)) for n in range(count)
    ]


def job_id(kind: str, external_task_id: str) -> str:
    """A deterministic job id: RQ allows only [A-Za-z0-9_-], external_task_ids may hold more."""
    digest = hashlib.sha256(external_task_id.encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


def enqueue_archive(
    connection: redis.Redis, external_task_id: str, *, retry_base_s: float, pipeline: Pipeline | None = None
) -> None:
    """Queue the archive job for a task; inside `pipeline` it commits with the caller's transaction."""
    Queue(ARCHIVE_QUEUE, connection=connection).enqueue_call(
        "workers.archive.archive_task",
        args=(external_task_id,),
        job_id=job_id("archive", external_task_id),
        timeout=ARCHIVE_JOB_TIMEOUT_S,
        retry=Retry(max=ARCHIVE_RETRIES, interval=backoff_intervals(retry_base_s, ARCHIVE_RETRIES)),
        pipeline=pipeline,
    )


def enqueue_dispatch(
    connection: redis.Redis, reason: str, *, pipeline: Pipeline | None = None, delay_s: float = 0
) -> None:
    """Wake a worker to send queued tasks upstream (after `delay_s`, e.g. when a pause ends).

    The job id comes from the reason (a slot freed by this task, this task accepted, this pause):
    the same reason wakes once, and a wake-up never shares its id with a dispatch already running,
    which RQ would let the running job's completion swallow.
    """
    queue = Queue(SUBMIT_QUEUE, connection=connection)
    dispatch_id = job_id(DISPATCH_JOB_ID, reason)
    if delay_s > 0:
        when = timedelta(seconds=delay_s)
        queue.enqueue_in(
            when, "workers.submit.dispatch_job", job_id=dispatch_id, job_timeout=DISPATCH_JOB_TIMEOUT_S
        )
        return
    queue.enqueue_call(
        "workers.submit.dispatch_job", job_id=dispatch_id, timeout=DISPATCH_JOB_TIMEOUT_S, pipeline=pipeline
    )
