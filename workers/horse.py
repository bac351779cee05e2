"""The RQ worker class, and the `Services` each job runs with.

A worker runs most jobs in its own process, one after the other, as RQ's `SimpleWorker` does: a fork per
job cost more CPU than the short jobs themselves (event fan-outs, deliveries, dispatches, ticks). Jobs of
the queues in WORKER_FORK_QUEUES (the archive download by default; jobs.py says why) still run in a
work horse that RQ forks for the job. Objects holding sockets (the Redis pool, the Kling client) must be
built in the process that uses them, never inherited across a fork: the worker builds its `Services`
once, for all the jobs it runs itself, and each forked horse builds its own. A job's entry point reads
them with `job_services()`. They are built when a job first asks, inside the job: a failure to build
them (a bad archive setting) fails the job, which RQ then retries, rather than killing the worker. Tests
run an entry point in their own process with `running_jobs_with(services)`.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from multiprocessing.process import BaseProcess
from typing import Any

from rq import Queue, Worker, worker_registration
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.worker import WorkerStatus

from webhook_service.config import Settings
from webhook_service.integrations import logs, metrics, outbound
from webhook_service.jobs import Periodic, fork_queues, keep_scheduled, periodic_check_s
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
    """RQ's worker, forking a horse only for the jobs of `forked_queues` (WORKER_FORK_QUEUES).

    A job run in the worker's process takes RQ's own path for it (`SimpleWorker.execute_job`), so its
    bookkeeping is RQ's: the started registry, retries, failures, and the timeout, enforced by the same
    SIGALRM death penalty as in a horse. Its logs carry its ids, and its metrics go to the worker's
    files. A forked horse builds its own Services and starts its logs and metrics for the one job it
    runs: it would otherwise log with the previous job's ids and write metrics to files of its own pid,
    one set per job, never reused.

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
        forked_queues: Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.periodic = tuple(periodic)
        self.periodic_check_s = periodic_check_s(self.periodic)
        if self.periodic:
            kwargs.setdefault("worker_ttl", int(self.periodic_check_s) + 15)
        super().__init__(*args, **kwargs)
        self.settings = settings or Settings.from_env()
        self.forked_queues = fork_queues(self.settings) if forked_queues is None else frozenset(forked_queues)
        self._own_services = _built_once(self.settings)
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

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self._forks(job):
            super().execute_job(job, queue)
            return
        self.prepare_execution(job)
        logs.reset(job_id=job.id, job=job.func_name)
        try:
            with running_jobs_with(self._own_services):
                self.perform_job(job, queue)
        finally:
            logs.reset()  # the worker's own lines between jobs belong to no job
        self.set_state(WorkerStatus.IDLE)

    def get_heartbeat_ttl(self, job: Job) -> int:
        """How long the job's heartbeat lasts. A forked horse's is renewed by its worker every
        job_monitoring_interval; a job run here is not renewed until it ends, so its heartbeat must
        outlast its timeout (as `SimpleWorker`'s does), or another worker would take it for abandoned
        and run it a second time while it still runs."""
        if self._forks(job):
            return int(super().get_heartbeat_ttl(job))
        if job.timeout == -1:
            return DEFAULT_WORKER_TTL
        return int(job.timeout or DEFAULT_WORKER_TTL) + 60

    def _forks(self, job: Job) -> bool:
        return job.origin in self.forked_queues

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        """Fork with what a horse would otherwise build or copy first: the TLS context its download
        client needs (built once here, it is inherited: only settings, no connection), and the worker's
        objects moved out of the garbage collector's reach, so the horse's collections do not touch, and
        copy, every page it shares with the worker. The worker unfreezes at once: frozen, its own garbage
        would never be collected. (The child never returns from RQ's fork_work_horse.)"""
        outbound.tls_context()
        gc.freeze()
        try:
            super().fork_work_horse(job, queue)
        finally:
            gc.unfreeze()

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        metrics.in_work_horse()
        logs.reset(job_id=job.id, job=job.func_name)
        with running_jobs_with(_built_once(self.settings)):
            super().main_work_horse(job, queue)
