"""The delivery job's queueing: inside the caller's transaction, now or at a time."""

from __future__ import annotations

import math
import time
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from webhook_service.queues import NOTIFY_QUEUE

DELIVERY_JOB = "workers.notify.deliver"
DELIVERY_JOB_TIMEOUT_S = 120  # an attempt stops itself after NOTIFY_TIMEOUT_S; this only ends a hung job
# For a job that crashed (a Redis outage, a bug), not for a receiver's failure: those follow the schedule.
CRASH_RETRY_INTERVALS_S = [30, 300, 1800]


def enqueue_delivery(
    connection: redis.Redis, pipe: Pipeline, delivery_id: str, job_id: str, at: float | None = None
) -> None:
    """Queue the job for the next attempt inside `pipe`'s transaction: now, or at `at` (epoch seconds).

    `Queue.enqueue_at` is not used: in rq 2.12 it adds the job to the schedule outside the pipeline it
    is given, and rounds the time down to the second. The job must commit with the record, and a
    receiver's Retry-After must never be cut short, so the time is rounded up here.
    """
    queue = Queue(NOTIFY_QUEUE, connection=connection)
    options: dict[str, Any] = {
        "args": (delivery_id,),
        "job_id": job_id,
        "timeout": DELIVERY_JOB_TIMEOUT_S,
        "retry": Retry(max=len(CRASH_RETRY_INTERVALS_S), interval=CRASH_RETRY_INTERVALS_S),
    }
    if at is None or at <= time.time():
        queue.enqueue_call(DELIVERY_JOB, pipeline=pipe, **options)
        return
    job = queue.create_job(DELIVERY_JOB, status=JobStatus.SCHEDULED, **options)
    job.save(pipeline=pipe)
    pipe.sadd(queue.redis_queues_keys, queue.key)
    pipe.zadd(ScheduledJobRegistry(queue=queue).key, {job_id: math.ceil(at)})
