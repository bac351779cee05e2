"""The RQ worker class, and the `Services` each job runs with.

RQ forks a work horse per job. Objects holding sockets (the Redis pool, the Kling client) must be
built in the process that uses them, never inherited across the fork, so each horse builds its job's
`Services` from the worker's settings, and the job's entry point reads them with `job_services()`. They
are built when the job first asks, inside the job: a failure to build them (a bad archive setting) fails
the job, which RQ then retries, rather than killing the horse. Tests run an entry point in their own
process with `running_jobs_with(services)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from multiprocessing.process import BaseProcess
from typing import Any

from rq import Queue, Worker, worker_registration
from rq.job import Job

from webhook_service.config import Settings
from webhook_service.integrations import logs, metrics
from webhook_service.jobs import Periodic, keep_scheduled, periodic_check_s
from webhook_service.services import Services

log = logging.getLogger(__name__)

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
    metrics to files of its own pid, one set per job, never reused.

    With `periodic` work, the worker also keeps it going, without a restart of any process: every
    `periodic_check_s` it schedules any chain of ticks found missing (a Redis lost or flushed takes them
    along), restarts RQ's scheduler process if it died (a Redis restart can kill it; it is what moves
    due ticks into the queue), and registers itself again if Redis forgot it. RQ runs its maintenance
    only between two waits for a job, and an idle worker waits up to its `worker_ttl` less 15 s (405 s
    by default): the wait is shortened to the check's period.
    """

    def __init__(
        self,
        *args: Any,
        settings: Settings | None = None,
        periodic: Iterable[Periodic] = (),
        **kwargs: Any,
    ) -> None:
        self.periodic = tuple(periodic)
        self.periodic_check_s = periodic_check_s(self.periodic)
        if self.periodic:
            kwargs.setdefault("worker_ttl", int(self.periodic_check_s) + 15)
        super().__init__(*args, **kwargs)
        self.settings = settings or Settings.from_env()
        self._periodic_checked_at: float | None = None

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or self._periodic_check_due()

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq's, untyped
        if self._periodic_check_due():
            self._periodic_checked_at = time.monotonic()
            self._keep_periodic_work_going()

    def _periodic_check_due(self) -> bool:
        last = self._periodic_checked_at
        return bool(self.periodic) and (last is None or time.monotonic() - last >= self.periodic_check_s)

    def _keep_periodic_work_going(self) -> None:
        scheduler = self.scheduler
        process: BaseProcess | None = scheduler._process if scheduler is not None else None
        if scheduler is not None and (process is None or not process.is_alive()):
            scheduler.acquire_locks(auto_start=True)  # as RQ's own maintenance does, but sooner
        self._register_again_if_forgotten()
        for work in self.periodic:
            if keep_scheduled(self.connection, work):
                log.warning(
                    "periodic work %r had no tick scheduled (a first start, or Redis lost or flushed): "
                    "scheduled again",
                    work.name,
                )

    def _register_again_if_forgotten(self) -> None:
        """A flushed Redis forgets the worker too: `rq info` and the dashboard would count it dead."""
        if self.connection.sismember(self.redis_workers_keys, self.key):
            return
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.in_work_horse()
        logs.reset(job_id=job.id, job=job.func_name)
        with running_jobs_with(_built_once(self.settings)):
            super().main_work_horse(job, queue)
