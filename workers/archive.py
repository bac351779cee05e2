"""The archive job: domain/archive.py does the work, RQ retries a download that failed for now."""

from __future__ import annotations

from rq import get_current_job

from webhook_service.domain import archive
from workers.horse import job_services


def archive_task(external_task_id: str) -> None:
    job = get_current_job()
    retries_left = (job.retries_left or 0) if job is not None else 0
    archive.archive_task(job_services(), external_task_id, retries_left=retries_left)
