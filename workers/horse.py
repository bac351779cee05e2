"""The RQ worker class, and the `Services` each job runs with.

RQ forks a work horse per job. Objects holding sockets (the Redis pool, the Kling client) must be
built in the process that uses them, never inherited across the fork, so each horse builds its job's
`Services` from the worker's settings, and the job's entry point reads them with `job_services()`. They
are built when the job first asks, inside the job: a failure to build them (a bad archive setting) fails
the job, which RQ then retries, rather than killing the horse. Tests run an entry point in their own
process with `running_jobs_with(services)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rq import Queue, Worker
from rq.job import Job

from webhook_service.config import Settings
from webhook_service.integrations import logs, metrics
from webhook_service.services import Services

_job_services: ContextVar[Callable[[], Services]] = ContextVar("job_services")


def job_services() -> Services:
    """The Services of the job being run; outside one, a clear error rather than a half-built default."""
    try:
        get = _job_services.get()
    except LookupError:
        raise RuntimeError(
            "no Services for this job: run it in a ServiceWorker, or in a test within running_jobs_with()"
        ) from None
    return get()


@contextmanager
def running_jobs_with(services: Services | Callable[[], Services]) -> Iterator[None]:
    """Run job entry points in this process with `services`, or with what the callable builds."""
    get = services if callable(services) else lambda: services
    token = _job_services.set(get)
    try:
        yield
    finally:
        _job_services.reset(token)


def _built_once(settings: Settings) -> Callable[[], Services]:
    built: list[Services] = []

    def get() -> Services:
        if not built:
            built.append(Services.build(settings))
        return built[0]

    return get


class ServiceWorker(Worker):
    """RQ's forking worker. Each horse builds its Services, and starts its logs and metrics for the one
    job it runs: forked from the worker, it would otherwise log with the previous job's ids and write
    metrics to files of its own pid, one set per job, never reused."""

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings or Settings.from_env()

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.in_work_horse()
        logs.reset(job_id=job.id, job=job.func_name)
        with running_jobs_with(_built_once(self.settings)):
            super().main_work_horse(job, queue)
