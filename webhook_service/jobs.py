"""All background work in one place: the RQ queues, every job's function, id, timeout and retry policy,
and the helpers that queue them (RQ's `defaults.py` habit).

Jobs carry ids, never payloads: a job reads the task from the store when it runs, so a retried job
sees the task as it is then, not as it was when it was enqueued. Job functions are named by their
import path (the thin entry points in `workers/`), so that queueing a job never imports the code that
runs it. Helpers that take a `pipeline` queue inside the caller's transaction: the job commits with
the change that asks for it, or not at all.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from webhook_service.config import ConfigError, Settings
from webhook_service.replies import text_or_none

SUBMIT_QUEUE = "submit"
ARCHIVE_QUEUE = "archive"
NOTIFY_QUEUE = "notify"
MAINTENANCE_QUEUE = "maintenance"
# In priority order: a worker takes the next job from the first queue that has one. The periodic ticks
# come second: they are due once an interval and short (a reconciliation pass is bounded by its poll
# budget), and behind a backlog of downloads they waited for all of it, while the tasks whose callbacks
# never came held the account's slots.
ALL_QUEUES = (SUBMIT_QUEUE, MAINTENANCE_QUEUE, ARCHIVE_QUEUE, NOTIFY_QUEUE)
# The queues whose jobs a worker runs in a forked work horse (WORKER_FORK_QUEUES); the others' jobs run
# in the worker's own process (workers/horse.py), their heartbeats renewed by a thread as a worker
# renews a horse's, their timeouts enforced by the same SIGALRM. None by default: a fork cost the
# pipeline half its worker CPU (docs/benchmarks.md). `archive` forks the download again, for a horse
# the worker can kill if it hangs where the alarm cannot reach.
DEFAULT_FORK_QUEUES: frozenset[str] = frozenset()

DISPATCH_JOB = "workers.submit.dispatch_job"
ARCHIVE_JOB = "workers.archive.archive_task"
FAN_OUT_JOB = "workers.notify.fan_out"
DELIVERY_JOB = "workers.notify.deliver"
DRAIN_JOB = "workers.notify.drain"
RECONCILE_JOB = "workers.reconcile.tick"
PRUNE_JOB = "workers.prune.tick"
JOB_FUNCTIONS = (DISPATCH_JOB, ARCHIVE_JOB, FAN_OUT_JOB, DELIVERY_JOB, DRAIN_JOB, RECONCILE_JOB, PRUNE_JOB)

DISPATCH_JOB_ID = "dispatch"
DISPATCH_JOB_TIMEOUT_S = 10 * 60
DISPATCH_WANTED_TTL_S = 30  # see wake_dispatch

ARCHIVE_JOB_ID = "archive"  # and the task's id, hashed (archive_job_id)
ARCHIVE_JOB_TIMEOUT_S = 60 * 60  # a 2 GiB video at a slow 1 MB/s still fits
ARCHIVE_RETRIES = 8  # with a 10 s base: about 18 hours in all, well inside Kling's 30 days

FAN_OUT_JOB_TIMEOUT_S = 60
# A fan-out makes the first attempt of one delivery itself (notify/send.py), when an attempt fits well
# within its timeout; that delivery's own job is scheduled this long after, in case the fan-out dies:
# past its timeout, so it never runs while the fan-out's attempt can still be going on.
FIRST_ATTEMPT_BACKSTOP_S = FAN_OUT_JOB_TIMEOUT_S + 30
# A fan-out killed half-way runs again (it is idempotent: deliveries have deterministic ids).
FAN_OUT_RETRY_INTERVALS_S = [5, 60, 600]

DELIVERY_JOB_TIMEOUT_S = 120  # an attempt stops itself after NOTIFY_TIMEOUT_S; this only ends a hung job
# For a delivery job that crashed (a Redis outage, a bug), not for a receiver's failure: those follow
# NOTIFY_RETRY_SCHEDULE_S, which the job applies itself (notify/send.py).
DELIVERY_CRASH_RETRY_INTERVALS_S = [30, 300, 1800]

# RQ keeps a failed job (its arguments and traceback) for a year unless told otherwise. Ours are retried
# or recorded on the task itself (an archive that gave up, a dead letter): a failed job is only worth its
# traceback while someone may read it.
FAILED_JOB_TTL_S = 14 * 86400
# A finished job's record: nothing reads it (jobs report through the task), and RQ's default (500 s)
# keeps some 8 KB per job, four jobs a task: under load, most of the service's Redis.
JOB_RESULT_TTL_S = 60

# How a worker finds jobs whose worker died (SIGKILL, lost machine): RQ marks a job abandoned when its
# heartbeat lapses, and a live worker's maintenance pass, every MAINTENANCE_INTERVAL_S, then retries it
# (if it has retries: a dispatch or a tick has none, and the next one does its work). A job's
# heartbeat, renewed every job monitoring interval while it runs (by its worker for a forked horse, by
# a thread of the worker for a job it runs itself), lasts that interval + 60 s: recovery within ~2.5
# minutes, an hour-long download's as a fan-out's.
JOB_MONITORING_INTERVAL_S = 30
MAINTENANCE_INTERVAL_S = 60

# Retries are spread by ±20 % (`jittered`): the jobs of many tasks that failed together (a storage or a
# receiver's outage) do not all come back in the same second.
RETRY_JITTER = 0.2


def fork_queues(settings: Settings) -> frozenset[str]:
    """The queues whose jobs run in a forked work horse under these settings (WORKER_FORK_QUEUES)."""
    chosen = settings.worker_fork_queues
    if chosen is None:
        return DEFAULT_FORK_QUEUES
    if chosen == ("all",):
        return frozenset(ALL_QUEUES)
    if chosen == ("none",):
        return frozenset()
    unknown = sorted(set(chosen) - set(ALL_QUEUES))
    if unknown:
        raise ConfigError(
            f"WORKER_FORK_QUEUES: unknown queue(s) {', '.join(unknown)}; the queues are "
            f"{', '.join(ALL_QUEUES)} (or `all`, or `none`)"
        )
    return frozenset(chosen)


def jittered(seconds: float, jitter: float = RETRY_JITTER) -> float:
    """`seconds` made up to `jitter` (a fraction) shorter or longer, at random: the retries' spread."""
    return seconds * random.uniform(1 - jitter, 1 + jitter)


def backoff_intervals(
    base_s: float, count: int, factor: float = 3.0, cap_s: float = 6 * 3600, jitter: float = RETRY_JITTER
) -> list[int]:
    """Exponential back-off with ±jitter, capped. RQ repeats only the list it is given, so compute it.

    A base of 0 retries at once (RQ then re-enqueues without the scheduler): for tests.
    """
    return [round(jittered(min(cap_s, base_s * factor**n), jitter)) for n in range(count)]


def job_id(kind: str, external_task_id: str) -> str:
    """A deterministic job id: RQ allows only [A-Za-z0-9_-], external_task_ids may hold more."""
    digest = hashlib.sha256(external_task_id.encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


def archive_job_id(external_task_id: str) -> str:
    """The id of a task's archive job: one a task, whoever queues it."""
    return job_id(ARCHIVE_JOB_ID, external_task_id)


def enqueue_archive(
    connection: redis.Redis, external_task_id: str, *, retry_base_s: float, pipeline: Pipeline | None = None
) -> None:
    """Queue the archive job for a task."""
    Queue(ARCHIVE_QUEUE, connection=connection).enqueue_call(
        ARCHIVE_JOB,
        args=(external_task_id,),
        job_id=archive_job_id(external_task_id),
        timeout=ARCHIVE_JOB_TIMEOUT_S,
        retry=Retry(max=ARCHIVE_RETRIES, interval=backoff_intervals(retry_base_s, ARCHIVE_RETRIES)),
        failure_ttl=FAILED_JOB_TTL_S,
        result_ttl=JOB_RESULT_TTL_S,
        pipeline=pipeline,
    )


def wake_dispatch(connection: redis.Redis, wanted_key: str, reason: str) -> None:
    """Wake a worker to send queued tasks upstream now, unless a dispatch is already queued that has not
    started: that one will find what is queued now. A burst of a thousand creates costs a few
    dispatch jobs, not a thousand.

    `wanted_key` (Keys.dispatch_wanted) says a dispatch is queued and not started: set here, NX, and
    deleted by the dispatch job as it starts, before it takes from the queues. So a task queued before
    this call is either seen by a dispatch that has not yet started, or wakes one of its own. A job lost
    with its worker before it started leaves the key for DISPATCH_WANTED_TTL_S at most; meanwhile the
    reconciliation pass dispatches, as it does for any wake-up that was lost.
    """
    if connection.set(wanted_key, reason, nx=True, ex=DISPATCH_WANTED_TTL_S):
        enqueue_dispatch(connection, reason)


def enqueue_dispatch(
    connection: redis.Redis, reason: str, *, pipeline: Pipeline | None = None, delay_s: float = 0
) -> None:
    """Wake a worker to send queued tasks upstream (after `delay_s`, e.g. when a pause ends).

    The job id comes from the reason (a slot freed by this task, this task accepted, this pause):
    the same reason wakes once, and a wake-up never shares its id with a dispatch already running,
    which RQ would let the running job's completion swallow.
    """
    queue = Queue(SUBMIT_QUEUE, connection=connection)
    dispatch_id = job_id(DISPATCH_JOB_ID, reason)
    if delay_s > 0:
        when = timedelta(seconds=delay_s)
        queue.enqueue_in(
            when,
            DISPATCH_JOB,
            job_id=dispatch_id,
            job_timeout=DISPATCH_JOB_TIMEOUT_S,
            failure_ttl=FAILED_JOB_TTL_S,
            result_ttl=JOB_RESULT_TTL_S,
        )
        return
    queue.enqueue_call(
        DISPATCH_JOB,
        job_id=dispatch_id,
        timeout=DISPATCH_JOB_TIMEOUT_S,
        failure_ttl=FAILED_JOB_TTL_S,
        result_ttl=JOB_RESULT_TTL_S,
        pipeline=pipeline,
    )


def enqueue_fan_out(
    connection: redis.Redis, pipeline: Pipeline, event_id: str, external_task_id: str, event_type: str
) -> None:
    """Queue an event's fan-out; its job id is the event's id, so one event is fanned out once."""
    Queue(NOTIFY_QUEUE, connection=connection).enqueue_call(
        FAN_OUT_JOB,
        args=(event_id, external_task_id, event_type),
        job_id=event_id,
        timeout=FAN_OUT_JOB_TIMEOUT_S,
        retry=Retry(max=len(FAN_OUT_RETRY_INTERVALS_S), interval=FAN_OUT_RETRY_INTERVALS_S),
        failure_ttl=FAILED_JOB_TTL_S,
        result_ttl=JOB_RESULT_TTL_S,
        pipeline=pipeline,
    )


def delivery_job_id(delivery_id: str, attempt: int, replays: int, waits: int) -> str:
    """The job of a delivery's next attempt: its first is the delivery's id (notify/records.py), each
    later one names the attempt, the replay and the wait it follows, so no two jobs share an id and a
    stale one finds the record naming another."""
    return f"{delivery_id}-{attempt}-r{replays}-w{waits}"


def cancel_delivery_job(connection: redis.Redis, job_id: str) -> None:
    """Remove a delivery's scheduled job that has nothing left to do (notify/send.py's first attempt,
    made by its fan-out): a job that ran would only find another owner on the record."""
    with connection.pipeline(transaction=True) as pipe:
        pipe.zrem(ScheduledJobRegistry(NOTIFY_QUEUE, connection=connection).key, job_id)
        pipe.delete(Job.key_for(job_id))
        pipe.execute()


def enqueue_delivery(
    connection: redis.Redis, pipeline: Pipeline, delivery_id: str, job_id: str, at: float | None = None
) -> None:
    """Queue the job for a delivery's next attempt: now, or at `at` (epoch seconds).

    `Queue.enqueue_at` is not used: in rq 2.12 it adds the job to the schedule outside the pipeline it
    is given, and rounds the time down to the second. The job must commit with the record, and a
    receiver's Retry-After must never be cut short, so the time is rounded up here.
    """
    queue = Queue(NOTIFY_QUEUE, connection=connection)
    options: dict[str, Any] = {
        "args": (delivery_id,),
        "job_id": job_id,
        "timeout": DELIVERY_JOB_TIMEOUT_S,
        "retry": Retry(max=len(DELIVERY_CRASH_RETRY_INTERVALS_S), interval=DELIVERY_CRASH_RETRY_INTERVALS_S),
        "failure_ttl": FAILED_JOB_TTL_S,
        "result_ttl": JOB_RESULT_TTL_S,
    }
    if at is None or at <= time.time():
        queue.enqueue_call(DELIVERY_JOB, pipeline=pipeline, **options)
        return
    job = queue.create_job(DELIVERY_JOB, status=JobStatus.SCHEDULED, **options)
    job.save(pipeline=pipeline)
    pipeline.sadd(queue.redis_queues_keys, queue.key)
    pipeline.zadd(ScheduledJobRegistry(queue=queue).key, {job_id: math.ceil(at)})


def enqueue_drain(connection: redis.Redis, pipeline: Pipeline, target: str, at: float) -> None:
    """Schedule the drain of the deliveries waiting their turn at `target` (notify/drain.py), at `at`
    (epoch seconds), inside the caller's transaction.

    Its id is the target and the second it runs in, which is always one to come: asked for again in that
    second, it is the same job (scheduled twice is scheduled once), so a target has at most one drain a
    second however many deliveries wait there, and never the id of a drain already running, which RQ
    would let the running one's completion swallow.
    """
    second = max(math.ceil(at), math.floor(time.time()) + 1)
    queue = Queue(NOTIFY_QUEUE, connection=connection)
    drain_id = f"drain-{target}-{second}"
    job = queue.create_job(
        DRAIN_JOB,
        args=(target,),
        job_id=drain_id,
        status=JobStatus.SCHEDULED,
        timeout=DELIVERY_JOB_TIMEOUT_S,
        retry=Retry(max=len(DELIVERY_CRASH_RETRY_INTERVALS_S), interval=DELIVERY_CRASH_RETRY_INTERVALS_S),
        failure_ttl=FAILED_JOB_TTL_S,
        result_ttl=JOB_RESULT_TTL_S,
    )
    job.save(pipeline=pipeline)
    pipeline.sadd(queue.redis_queues_keys, queue.key)
    pipeline.zadd(ScheduledJobRegistry(queue=queue).key, {drain_id: second})


@dataclass(frozen=True)
class Periodic:
    """Work that runs every `interval_s`, as a chain of ticks: each tick schedules the next one."""

    name: str  # the job ids are `<name>-<slot>`
    function: str
    interval_s: float


def periodic_work(settings: Settings) -> dict[str, Periodic]:
    """Every periodic job by name, with its interval under these settings."""
    work = [
        Periodic("reconcile", RECONCILE_JOB, settings.reconcile_interval_s),
        Periodic("prune", PRUNE_JOB, settings.prune_interval_s),
    ]
    return {periodic.name: periodic for periodic in work}


def schedule_tick(connection: redis.Redis, work: Periodic) -> None:
    """Queue the tick of the next time slot.

    Every tick schedules the one after it, and workers schedule the next slot whenever they find it
    missing (`keep_scheduled`); a slot's job id is the same whoever schedules it, so there is one
    tick per slot however many workers run.
    """
    slot = _next_slot(work)
    Queue(MAINTENANCE_QUEUE, connection=connection).enqueue_at(
        datetime.fromtimestamp(slot * work.interval_s, UTC),
        work.function,
        job_id=f"{work.name}-{slot}",
        job_timeout=int(work.interval_s * 4 + 120),
        failure_ttl=FAILED_JOB_TTL_S,
        result_ttl=JOB_RESULT_TTL_S,
    )


def keep_scheduled(connection: redis.Redis, work: Periodic) -> bool:
    """Schedule the next slot's tick unless the chain is in place; True when it was missing.

    The chain of ticks lives only in Redis: a Redis lost or flushed takes it along, and no tick is left
    to schedule the next one. It is in place while any of its ticks is still to run (scheduled, queued
    or running: each schedules the next itself), whatever its slot: behind a backlog of jobs a tick
    waits in its queue for several slots, and scheduling one per slot meanwhile piled up ticks that
    then ran back to back. Workers call this at every periodic check (workers/horse.py): one script
    over the maintenance queue's lists, which hold the ticks only.
    """
    if _tick_to_run(connection, work):
        return False
    schedule_tick(connection, work)
    return True


def _tick_to_run(connection: redis.Redis, work: Periodic) -> bool:
    """Whether a tick of `work` is still to run, from every place RQ keeps it on its way, read in one step.

    A tick moves from the scheduled registry to the queue (in one MULTI), from the queue to the
    intermediate list when a worker takes it (one LMOVE), into the started registry, and out when it has
    scheduled the next tick. Read one after another, or without the intermediate list, it could be
    missed in flight: a worker then logged "no tick scheduled" in a healthy run. The script reads the
    places and each tick's status atomically, so a tick is always found in one of them.
    """
    queue = Queue(MAINTENANCE_QUEUE, connection=connection)
    places = [
        ScheduledJobRegistry(queue=queue).key,
        StartedJobRegistry(queue=queue).key,
        queue.key,
        queue.intermediate_queue_key,
    ]
    found = connection.register_script(_TICK_TO_RUN)(
        keys=places, args=[f"{work.name}-", Job.key_for(""), *_STILL_TO_RUN]
    )
    return bool(found)


# KEYS: the scheduled and started registries (sorted sets; a started entry is `<job id>:<execution id>`),
# the queue and its intermediate list. ARGV: the ticks' id prefix, the job hashes' key prefix, and the
# statuses of a job still to run. 1 when a tick is found in any of them with such a status. (The job
# hashes are read by names made here, which a Redis Cluster would refuse; the service runs on one
# primary: docs/deployment.md.)
_TICK_TO_RUN = """
local prefix, job_key = ARGV[1], ARGV[2]
local still = {}
for i = 3, #ARGV do still[ARGV[i]] = true end
for i, place in ipairs(KEYS) do
  local read = i <= 2 and 'ZRANGE' or 'LRANGE'
  for _, entry in ipairs(redis.call(read, place, 0, -1)) do
    local id = string.match(entry, '^[^:]*')
    if string.sub(id, 1, #prefix) == prefix then
      local status = redis.call('HGET', job_key .. id, 'status')
      if status and still[status] then return 1 end
    end
  end
end
return 0
"""


def still_to_run(connection: redis.Redis, job_id: str) -> bool:
    """The job exists and has not ended: scheduled, queued, deferred or running."""
    return text_or_none(connection.hget(Job.key_for(job_id), "status")) in _STILL_TO_RUN


def periodic_check_s(work: Iterable[Periodic]) -> float:
    """How often a worker checks that every chain of ticks is in place: at half the shortest interval,
    so that a lost chain ticks again within two of its intervals; at most every second, at least every
    MAINTENANCE_INTERVAL_S."""
    shortest = min((periodic.interval_s for periodic in work), default=MAINTENANCE_INTERVAL_S)
    return max(1.0, min(float(MAINTENANCE_INTERVAL_S), shortest / 2))


_STILL_TO_RUN = {
    s.value for s in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED)
}


def _next_slot(work: Periodic) -> int:
    return int(time.time() // work.interval_s) + 1
