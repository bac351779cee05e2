"""The RQ worker class: each work horse starts its logs and metrics for the one job it runs."""

from __future__ import annotations

from rq import Queue, Worker
from rq.job import Job

from webhook_service import logs, metrics


class ServiceWorker(Worker):
    """RQ's forking worker. The horse is forked from the worker, so without this it would log with
    the previous job's ids and write metrics to files of its own pid: one set per job, never reused."""

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.in_work_horse()
        logs.reset(job_id=job.id, job=job.func_name)
        super().main_work_horse(job, queue)
