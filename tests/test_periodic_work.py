"""Periodic work keeps its own schedule: after Redis is flushed, or RQ's scheduler process is killed,
the ticks come back by themselves, without restarting any process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.scheduler import RQScheduler

from tests.conftest import Workers
from tests.support import wait_for
from webhook_service.config import Settings
from webhook_service.jobs import (
    ARCHIVE_QUEUE,
    MAINTENANCE_QUEUE,
    RECONCILE_JOB,
    Periodic,
    keep_scheduled,
    periodic_work,
)
from webhook_service.keys import Keys

INTERVAL_S = 2.0
SCHEDULER_POLL_S = 1.0  # RQ's scheduler moves due jobs into their queue once a second


def ticks_scheduled(connection: redis.Redis, name: str) -> bool:
    return any(connection.scan_iter(match=f"rq:job:{name}-*", count=1000))


def passes(connection: redis.Redis) -> int:
    return int(connection.llen(Keys().reconcile_passes))


def test_a_chain_is_scheduled_again_only_when_it_is_broken(redis_url: str) -> None:
    """At a slot's start its tick may not have run yet: the chain is whole, and nothing is logged as
    missing. Once that tick has run without scheduling the next one, or Redis is flushed, it is not."""
    connection = redis.Redis.from_url(redis_url)
    work = Periodic("reconcile", RECONCILE_JOB, 3600)
    current = int(time.time() // work.interval_s)
    Queue(MAINTENANCE_QUEUE, connection=connection).enqueue_in(
        timedelta(seconds=1), RECONCILE_JOB, job_id=f"reconcile-{current}"
    )
    assert keep_scheduled(connection, work) is False
    assert not Job.exists(f"reconcile-{current + 1}", connection=connection)

    Job.fetch(f"reconcile-{current}", connection=connection).set_status(JobStatus.FINISHED)
    assert keep_scheduled(connection, work) is True
    assert Job.exists(f"reconcile-{current + 1}", connection=connection)
    assert keep_scheduled(connection, work) is False

    connection.flushdb()
    assert keep_scheduled(connection, work) is True


def test_a_tick_waiting_behind_a_backlog_is_not_scheduled_again_every_slot(redis_url: str) -> None:
    """Workers busy with other jobs: the tick of a slot long past still waits in its queue. The chain is
    in place (that tick schedules the next when it runs): one more tick per slot would pile up."""
    connection = redis.Redis.from_url(redis_url)
    work = Periodic("reconcile", RECONCILE_JOB, 1.0)
    five_slots_ago = int(time.time() // work.interval_s) - 5
    queue = Queue(MAINTENANCE_QUEUE, connection=connection)
    queue.enqueue(RECONCILE_JOB, job_id=f"reconcile-{five_slots_ago}")

    assert keep_scheduled(connection, work) is False
    assert queue.get_job_ids() == [f"reconcile-{five_slots_ago}"]
    assert not ticks_scheduled_after(connection, "reconcile", five_slots_ago)


class StepAfterFirstCommand(redis.Redis):
    """A connection after whose first command `step` runs (on another connection): what RQ's scheduler or
    a worker may do between two reads of a check."""

    step: Callable[[], object] | None = None

    def execute_command(self, *args: Any, **options: Any) -> Any:
        answer = super().execute_command(*args, **options)
        step, self.step = self.step, None
        if step is not None:
            step()
        return answer


# The steps of a tick's way, each one of RQ's own operations, in order: due, moved into its queue by
# the scheduler; taken by a worker (into the intermediate list); its execution recorded (the started
# registry); its status set to started by the work horse.
WAY = ("scheduled to queued", "taken by a worker", "execution recorded", "started")
# (how many steps it took before the check, the step it takes during the check if any)
POINTS = [(n, WAY[n]) for n in range(len(WAY))] + [(n, None) for n in range(len(WAY) + 1)]


@pytest.mark.parametrize(("taken", "during"), POINTS)
def test_a_tick_on_its_way_is_never_missed(redis_url: str, taken: int, during: str | None) -> None:
    """Wherever a tick is on its way, and whichever step it takes while the chain is checked, it is
    found. The places it moves between were read one after another, and not all of them: a tick moved
    from the scheduled registry into its queue just after the queue was read, or sitting in a worker's
    intermediate list, was seen nowhere, and a worker logged "no tick scheduled" in a healthy run."""
    plain = redis.Redis.from_url(redis_url)
    work = Periodic("reconcile", RECONCILE_JOB, 3600)
    tick = f"reconcile-{int(time.time() // work.interval_s)}"
    queue = Queue(MAINTENANCE_QUEUE, connection=plain)
    queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), RECONCILE_JOB, job_id=tick)
    scheduler = RQScheduler([queue], connection=plain)
    worker = Worker([queue], connection=plain)
    held: list[Job] = []

    def take() -> None:
        found = Queue.dequeue_any([queue], None, connection=plain)
        assert found is not None
        held.append(found[0])

    moves: dict[str, Callable[[], object]] = {
        "scheduled to queued": scheduler.enqueue_scheduled_jobs,
        "taken by a worker": take,
        "execution recorded": lambda: worker.prepare_execution(held[0]),
        "started": lambda: worker.prepare_job_execution(held[0]),
    }
    assert scheduler.acquire_locks()
    try:
        for step in WAY[:taken]:
            moves[step]()
        checking = StepAfterFirstCommand.from_url(redis_url)
        checking.step = moves[during] if during else None
        assert keep_scheduled(checking, work) is False
        assert checking.step is None  # the step was taken, during the check
        assert not ticks_scheduled_after(plain, "reconcile", int(tick.rsplit("-", 1)[1]))
    finally:
        scheduler.release_locks()


def ticks_scheduled_after(connection: redis.Redis, name: str, slot: int) -> list[str]:
    found = [key.decode() for key in connection.scan_iter(match=f"rq:job:{name}-*", count=1000)]
    return [key for key in found if int(key.rsplit("-", 1)[1]) > slot]


@pytest.fixture
def worker_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "RECONCILE_INTERVAL_S": str(INTERVAL_S)}


@pytest.mark.timeout(120)
def test_every_chain_of_ticks_comes_back_after_redis_is_flushed(worker_env: dict[str, str]) -> None:
    connection = redis.Redis.from_url(worker_env["REDIS_URL"])
    work = periodic_work(Settings.from_env(worker_env)).values()
    workers = Workers(worker_env)
    try:
        workers.start()
        workers.start()
        wait_for(lambda: all(ticks_scheduled(connection, w.name) for w in work), timeout=30, what="ticks")
        wait_for(lambda: passes(connection) > 0, timeout=30, what="a first reconciliation pass")

        connection.flushdb()
        flushed_at = time.monotonic()
        shortest = min(w.interval_s for w in work)
        for periodic in work:
            wait_for(
                lambda name=periodic.name: ticks_scheduled(connection, name),
                timeout=2 * shortest,
                what=f"the {periodic.name} ticks to be scheduled again",
            )
        wait_for(
            lambda: passes(connection) > 0,
            timeout=2 * INTERVAL_S + SCHEDULER_POLL_S - (time.monotonic() - flushed_at),
            what="a reconciliation pass within two intervals of the flush",
        )
        assert Worker.count(connection=connection) == 2  # both registered again, neither restarted
        assert all(process.poll() is None for process in workers.processes)
    finally:
        workers.stop()


@pytest.mark.timeout(120)
def test_a_killed_scheduler_process_is_started_again(worker_env: dict[str, str]) -> None:
    """RQ's scheduler process moves due ticks (and every retry) into the queues; a Redis restart can
    kill it, and RQ itself would start it again only at its next maintenance, a minute later."""
    connection = redis.Redis.from_url(worker_env["REDIS_URL"])
    workers = Workers(worker_env)
    try:
        workers.start()
        pid = wait_for(lambda: scheduler_pid(connection), timeout=30, what="the scheduler process")
        wait_for(lambda: passes(connection) > 0, timeout=30, what="a first reconciliation pass")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        before = passes(connection)
        wait_for(
            lambda: (scheduler_pid(connection) or pid) != pid, timeout=2 * INTERVAL_S, what="a new scheduler"
        )
        wait_for(
            lambda: passes(connection) > before,
            timeout=2 * INTERVAL_S + SCHEDULER_POLL_S - (time.monotonic() - killed_at),
            what="a reconciliation pass within two intervals of the kill",
        )
    finally:
        workers.stop()


def scheduler_pid(connection: redis.Redis) -> int | None:
    """The pid of the live scheduler process, from the record it keeps in Redis."""
    for key in connection.scan_iter(match="rq:scheduler:*"):
        pid = connection.hget(key, "pid")
        if pid and int(pid) and not key.startswith(b"rq:scheduler-lock:"):
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                continue
            return int(pid)
    return None


@pytest.mark.timeout(120)
def test_reconciliation_runs_amid_a_backlog_of_downloads(worker_env: dict[str, str]) -> None:
    """Ticks are few and short, downloads many and long: a worker takes a due tick before the next
    download, or callbacks Kling never sent would wait for the whole backlog (and their tasks hold the
    account's slots meanwhile). Here the backlog is 30 jobs of half a second on the archive queue."""
    connection = redis.Redis.from_url(worker_env["REDIS_URL"])
    archive = Queue(ARCHIVE_QUEUE, connection=connection)
    for _ in range(30):
        archive.enqueue("time.sleep", 0.5)
    workers = Workers(worker_env)
    try:
        workers.start()
        wait_for(lambda: passes(connection) > 0, timeout=60, what="a reconciliation pass")
        assert archive.count > 0, "the pass waited for the whole backlog of downloads"
    finally:
        workers.stop()
