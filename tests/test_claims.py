"""A job a worker has taken is never only in that worker's memory: killed at any instant, the worker
loses no job, and one it took and never started is run by the next worker. Real `python -m workers`
processes killed with SIGKILL, and a real Redis."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

import pytest
import redis
from rq import Queue, Retry, get_current_job
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from tests.conftest import Workers
from tests.support import wait_for
from webhook_service.jobs import ALL_QUEUES, ARCHIVE_QUEUE, JOB_MONITORING_INTERVAL_S, NOTIFY_QUEUE
from workers.claims import UNSTARTED_AFTER_S, ClaimingQueue

RAN = "test:ran"  # the set of the ids of the jobs that ran


def note_run() -> None:
    """A job that notes it ran."""
    job = get_current_job()
    assert job is not None
    job.connection.sadd(RAN, job.id)


def ran(connection: redis.Redis) -> set[str]:
    return {member.decode() for member in connection.smembers(RAN)}


def ran_more_than(connection: redis.Redis, count: int) -> Callable[[], bool]:
    return lambda: bool(connection.scard(RAN) > count)


def queues(connection: redis.Redis) -> list[ClaimingQueue]:
    return [ClaimingQueue(name, connection=connection) for name in ALL_QUEUES]


def wherever(connection: redis.Redis, queue: Queue) -> dict[str, set[str]]:
    """Every place RQ keeps a job of `queue` that has not ended, with the jobs in it."""
    return {
        "queued": set(queue.get_job_ids()),
        "taken": set(queue.intermediate_queue.get_job_ids()),
        "started": set(StartedJobRegistry(queue=queue).get_job_ids()),
    }


def run_maintenance_as_it_will_run(connection: redis.Redis) -> None:
    """A live worker's maintenance passes, run now as they will run once the dead workers' jobs are due
    again, instead of waiting out the clock in a test: a job taken and never started, UNSTARTED_AFTER_S
    after it was taken; one whose worker died while running it, once its heartbeat has lapsed."""
    later = time.time() + UNSTARTED_AFTER_S + JOB_MONITORING_INTERVAL_S + 61
    for queue in queues(connection):
        queue.intermediate_queue.cleanup(None, queue)  # first seen
        queue.intermediate_queue.cleanup(None, queue, now=later)
        StartedJobRegistry(queue=queue).cleanup(timestamp=later)


def test_a_job_taken_by_a_worker_that_died_before_starting_it_is_run_by_the_next(
    env: dict[str, str], redis_url: str
) -> None:
    connection = redis.Redis.from_url(redis_url)
    queue = ClaimingQueue(NOTIFY_QUEUE, connection=connection)
    behind = queue.enqueue(note_run)
    first = queue.enqueue(note_run, at_front=True)

    # A worker takes the first job, as every worker does, and dies before it records the job as started.
    taken = ClaimingQueue.dequeue_any(queues(connection), None, connection=connection)
    assert taken is not None and taken[0].id == first.id
    # The job is nowhere but in its worker's memory under RQ's BLPOP: here it waits in the queue's
    # intermediate list, still queued.
    assert wherever(connection, queue) == {"queued": {behind.id}, "taken": {first.id}, "started": set()}
    assert first.get_status(refresh=True) == JobStatus.QUEUED

    # A live worker's maintenance leaves it there while its worker may still start it...
    queue.intermediate_queue.cleanup(None, queue)
    queue.intermediate_queue.cleanup(None, queue, now=time.time() + UNSTARTED_AFTER_S - 5)
    assert wherever(connection, queue)["taken"] == {first.id}
    # ...and puts it back at the front of its queue once it has been there UNSTARTED_AFTER_S.
    queue.intermediate_queue.cleanup(None, queue, now=time.time() + UNSTARTED_AFTER_S + 1)
    assert queue.get_job_ids() == [first.id, behind.id]
    assert wherever(connection, queue)["taken"] == set()
    assert Job.fetch(first.id, connection=connection).retries_left is None  # no failure counted

    worker = Workers({**env, "RECONCILE_INTERVAL_S": "4", "PRUNE_INTERVAL_S": "4"})
    try:
        worker.start()
        wait_for(lambda: ran(connection) == {first.id, behind.id}, timeout=30, what="both jobs to run")
    finally:
        worker.stop()
    assert first.get_status(refresh=True) == JobStatus.FINISHED
    # What is left of the taking: nothing, once a maintenance pass has seen the lists empty.
    queue.intermediate_queue.cleanup(None, queue)
    assert not connection.exists(f"{queue.intermediate_queue_key}:taken_at")


@pytest.mark.timeout(240)
def test_workers_killed_at_any_instant_lose_no_job(env: dict[str, str], redis_url: str) -> None:
    """Workers are killed (SIGKILL, as a lost host kills them) over and over while they run short jobs;
    after each kill every job is still somewhere RQ keeps it, and all of them run in the end. Under
    RQ's BLPOP a worker spends a fair share of its time holding a job only in memory: killed there,
    the job vanished, and this test lost one in most runs."""
    connection = redis.Redis.from_url(redis_url)
    by_name = {queue.name: queue for queue in queues(connection)}
    jobs: set[str] = set()
    for n in range(600):
        queue = by_name[(NOTIFY_QUEUE, ARCHIVE_QUEUE)[n % 2]]
        jobs.add(queue.enqueue(note_run, retry=Retry(max=3)).id)

    workers = Workers({**env, "RECONCILE_INTERVAL_S": "4", "PRUNE_INTERVAL_S": "4"})
    kills = caught_taken = 0
    taken_before: set[str] = set()
    chance = random.Random(17)
    deadline = time.monotonic() + 120
    try:
        while kills < 20 and time.monotonic() < deadline and len(ran(connection)) < len(jobs) - 60:
            worker = workers.start()
            ran_before = connection.scard(RAN)
            wait_for(
                ran_more_than(connection, ran_before + 4), timeout=30, interval=0.001, what="jobs to run"
            )
            time.sleep(chance.uniform(0, 0.006))  # not a wait: the kill lands anywhere in a job's cycle
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
            kills += 1
            places = [wherever(connection, q) for q in by_name.values()]
            kept = {job for found in places for place in found.values() for job in place}
            taken = {job for found in places for job in found["taken"]}
            caught_taken += bool(taken - taken_before)
            taken_before = taken
            lost = jobs - ran(connection) - kept
            assert not lost, f"jobs lost by the worker killed at kill {kills}: {sorted(lost)}"
        assert kills >= 10
        print(f"{kills} workers killed, {caught_taken} of them holding a job taken and not started")

        run_maintenance_as_it_will_run(connection)
        workers.start()
        wait_for(lambda: ran(connection) == jobs, timeout=90, interval=0.2, what="every job to run")
    finally:
        workers.stop()
