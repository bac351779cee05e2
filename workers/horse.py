"""The RQ worker class, and the `Services` each job runs with.

A worker runs its jobs in its own process, one after the other, as RQ's `SimpleWorker` does: a fork per
job cost more CPU than the short jobs themselves (event fan-outs, deliveries, dispatches, ticks), and
half the pipeline's when only the archive download was forked. A thread renews the heartbeat of the job
being run, as a worker does for its horse. Jobs of the queues in WORKER_FORK_QUEUES (none by default;
jobs.py says when to choose `archive`) run in a work horse that RQ forks for the job. Objects holding
sockets (the Redis pool, the Kling client) must be built in the process that uses them, never inherited
across a fork: the worker builds its `Services` once, for all the jobs it runs itself, and each forked
horse builds its own. A job's entry point reads them with `job_services()`. They are built when a job
first asks, inside the job: a failure to build them (a bad archive setting) fails the job, which RQ then
retries, rather than killing the worker. Tests run an entry point in their own process with
`running_jobs_with(services)`.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from multiprocessing.process import BaseProcess
from typing import Any

from rq import Queue, Worker, worker_registration
from rq.job import Job
from rq.worker import WorkerStatus

from webhook_service.config import Settings
from webhook_service.integrations import logs, metrics, outbound
from webhook_service.jobs import Periodic, fork_queues, keep_scheduled, periodic_check_s
from webhook_service.services import Services
from workers.claims import ClaimingQueue

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
    SIGALRM death penalty as in a horse; its heartbeat is renewed as a horse's is. Its logs carry its
    ids, and its metrics go to the worker's files. A forked horse builds its own Services and starts its
    logs and metrics for the one job it runs: it would otherwise log with the previous job's ids and
    write metrics to files of its own pid, one set per job, never reused.

    With `periodic` work, the worker also keeps it going, without a restart of any process: every
    `periodic_check_s` it schedules any chain of ticks found missing (a Redis lost or flushed takes them
    along), restarts RQ's scheduler process if it died (a Redis restart can kill it; it is what moves
    due ticks into the queue), and registers itself again if Redis forgot it. RQ runs its maintenance
    only between two waits for a job, and an idle worker waits up to its `worker_ttl` less 15 s (405 s
    by default): the wait is shortened to the check's period.

    It takes its jobs from `ClaimingQueue`s (workers/claims.py), so that a job it took is never only in
    its memory; give it queue names, which it makes into those.
    """

    queue_class = ClaimingQueue

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

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """RQ takes a job out of its intermediate list only for a worker of a single queue, the one it
        lets take jobs into that list; this worker takes every job into it (workers/claims.py)."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if self._forks(job):
            super().execute_job(job, queue)
            return
        self.prepare_execution(job)
        logs.reset(job_id=job.id, job=job.func_name)
        try:
            with running_jobs_with(self._own_services), self._heartbeats_kept(job):
                self.perform_job(job, queue)
        finally:
            logs.reset()  # the worker's own lines between jobs belong to no job
        self.set_state(WorkerStatus.IDLE)

    @contextmanager
    def _heartbeats_kept(self, job: Job) -> Iterator[None]:
        """Renew the heartbeats of a job run here, as a worker does for its forked horse: every
        job_monitoring_interval, each lasting that interval + 60 s (RQ's `get_heartbeat_ttl`). A job whose
        worker dies is then found by a live worker within minutes, an archive download's as soon as a
        delivery's, rather than after its whole timeout (an hour for a download).

        Renewal stops once the job has run past its timeout: RQ's SIGALRM death penalty ends it then,
        and a job still running after that is stuck where the alarm cannot reach (a C call that retries
        through signals); its heartbeat lapses, a live worker retries the job elsewhere, and this
        worker, shown dead by `rq info` when its own heartbeat lapses, is left for its supervisor."""
        done = threading.Event()
        started = time.monotonic()

        def keep() -> None:
            # Signals to the process go to the main thread, not this one: the job's alarm must interrupt
            # the call the job is blocked in (a socket read fails with EINTR and the handler raises),
            # and the worker's SIGTERM and SIGINT must reach it at once.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM, signal.SIGTERM, signal.SIGINT})
            while not done.wait(self.job_monitoring_interval):
                working = time.monotonic() - started
                if job.timeout is not None and 0 < job.timeout < working:
                    log.error(
                        "job %s has run %.0f s, past its %s s timeout: its heartbeat is no longer renewed, "
                        "so a live worker retries it; this worker needs a restart",
                        job.id,
                        working,
                        job.timeout,
                    )
                    return
                try:
                    self.set_current_job_working_time(working)
                    self.maintain_heartbeats(job)
                except Exception as error:  # Redis away (the next try is well inside the TTL), or the job
                    if not done.is_set():  # ended meanwhile and RQ cleared its execution: nothing to renew
                        log.warning("could not renew the heartbeat of job %s: %r", job.id, error)

        keeper = threading.Thread(target=keep, name=f"heartbeat of {job.id}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            done.set()
            keeper.join()

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
