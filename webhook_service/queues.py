"""The service's RQ queues and how work is put on them.

Jobs carry ids, never payloads: a job reads the task from the store when it runs, so a retried job
sees the task as it is then, not as it was when it was enqueued.
"""

from __future__ import annotations

import hashlib

import redis
from redis.client import Pipeline
from rq import Queue, Retry

ARCHIVE_QUEUE = "archive"
NOTIFY_QUEUE = "notify"
ALL_QUEUES = (ARCHIVE_QUEUE, NOTIFY_QUEUE)

ARCHIVE_JOB_TIMEOUT_S = 60 * 60
ARCHIVE_RETRY = Retry(max=5, interval=[10, 60, 300, 900, 1800])


def job_id(kind: str, external_task_id: str) -> str:
    """A deterministic job id: RQ allows only [A-Za-z0-9_-], external_task_ids may hold more."""
    digest = hashlib.sha256(external_task_id.encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


def enqueue_archive(connection: redis.Redis, external_task_id: str, pipeline: Pipeline | None = None) -> None:
    """Queue the archive job for a task; inside `pipeline` it commits with the caller's transaction."""
    Queue(ARCHIVE_QUEUE, connection=connection).enqueue_call(
        "workers.archive.archive_task",
        args=(external_task_id,),
        job_id=job_id("archive", external_task_id),
        timeout=ARCHIVE_JOB_TIMEOUT_S,
        retry=ARCHIVE_RETRY,
        pipeline=pipeline,
    )
