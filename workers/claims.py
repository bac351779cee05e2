"""How a worker takes a job so that a worker killed in the next instant loses nothing.

RQ's worker takes a job from several queues with BLPOP: from then until the job is recorded as started,
a few milliseconds later, its id is held only in the worker's memory, and a worker killed in between
(a host lost, an OOM kill) loses the job for good; its status stays `queued` and nothing runs it again.
Under load a worker spends a fair share of its time in that window: a cluster test lost a task's
archive and fan-out jobs this way. RQ avoids it only for a worker of one queue, which takes the job
with BLMOVE into the queue's intermediate list, and RQ's maintenance fails a job left there.

`ClaimingQueue.dequeue_any` takes the first job of the queues, in their order, with one script that
moves it into its queue's intermediate list and notes when; RQ takes it out of the list in the step that
records the job as started (`ServiceWorker.prepare_job_execution`). Redis has no blocking move from
several lists, so an idle worker polls, at most POLL_MAX_S apart. A job left in an intermediate list
UNSTARTED_AFTER_S after it was taken is put back at the front of its queue by the next maintenance pass
(`UnstartedJobs.cleanup`, which RQ's maintenance calls): it never started, so it is run, not failed,
and counts no retry. When each job was taken is kept in a hash beside the list until that pass, which
forgets the jobs that have left the list: between two passes it holds the jobs taken since. A worker
that took a job and then waited longer than UNSTARTED_AFTER_S for Redis (a failover) runs it while
another worker may too: jobs here run at least once, never zero times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.utils import as_text

if TYPE_CHECKING:
    from rq.worker import BaseWorker

log = logging.getLogger(__name__)

POLL_FIRST_S = 0.005  # an idle worker's first wait; each next one twice as long...
POLL_MAX_S = 0.05  # ...up to this: a job enqueued to an idle worker waits 25 ms on average
UNSTARTED_AFTER_S = 60.0  # RQ's own limit for its intermediate lists


def taken_at_key(queue_key: str) -> str:
    """The hash of when each job in the queue's intermediate list was taken (seconds, Redis's clock)."""
    return f"{IntermediateQueue.get_intermediate_queue_key(queue_key)}:taken_at"


class ClaimingQueue(Queue):
    """RQ's queue, taken from without a window in which a job is nowhere but in a worker's memory."""

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        queues = list(queues)
        keys = [key for queue in queues for key in (queue.key, queue.intermediate_queue_key)]
        keys += [taken_at_key(queue.key) for queue in queues]
        take = connection.register_script(_TAKE)
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = POLL_FIRST_S
        while True:
            taken = take(keys=keys)
            if taken is None:
                if deadline is None:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DequeueTimeout(timeout, [queue.key for queue in queues])
                time.sleep(min(wait, left))
                wait = min(wait * 2, POLL_MAX_S)
                continue
            position, job_id = int(taken[0]) - 1, as_text(taken[1])
            queue = queues[position]
            try:
                job = (job_class or queue.job_class).fetch(
                    job_id, connection=connection, serializer=serializer
                )
            except NoSuchJobError:  # deleted while queued, as RQ's own dequeue skips it
                queue.intermediate_queue.remove(job_id)
                continue
            return job, queue

    @property
    def intermediate_queue(self) -> UnstartedJobs:
        return UnstartedJobs(self.key, self.connection)


class UnstartedJobs(IntermediateQueue):
    """A queue's intermediate list, whose jobs left there by a dead worker are run again."""

    def cleanup(self, worker: BaseWorker | None, queue: Queue, now: float | None = None) -> None:
        """Put back at the front of the queue every job taken UNSTARTED_AFTER_S ago or earlier and still
        not started. RQ's maintenance calls this, under the queue's maintenance lock; `now` (seconds,
        Redis's clock by default) lets a test run the pass as it will run later."""
        requeue = self.connection.register_script(_REQUEUE_UNSTARTED)
        requeued = [
            as_text(job_id)
            for job_id in requeue(
                keys=[self.key, queue.key, taken_at_key(queue.key)],
                args=[UNSTARTED_AFTER_S, "" if now is None else now],
            )
        ]
        if requeued:
            log.warning(
                "jobs taken from %s by a worker that never started them (it died, or lost Redis) were "
                "queued again: %s",
                queue.name,
                ", ".join(requeued),
            )


# KEYS: each queue and its intermediate list, in the worker's order, then each queue's taken_at hash.
# Takes the first job found, notes when, and returns {queue's position (1-based), job id}; nil if none.
_TAKE = """
local queues = #KEYS / 3
local now = redis.call('TIME')[1]
for i = 1, queues do
  local id = redis.call('LMOVE', KEYS[2 * i - 1], KEYS[2 * i], 'LEFT', 'RIGHT')
  if id then
    redis.call('HSET', KEYS[2 * queues + i], id, now)
    return {i, id}
  end
end
return nil
"""

# KEYS: the intermediate list, its queue, its taken_at hash. ARGV: how long a job may stay unstarted,
# and the time now ('' for Redis's clock). Moves the jobs taken that long ago back to the front of the
# queue, oldest first in front, and forgets when the jobs no longer in the list were taken. Returns the
# ids put back.
_REQUEUE_UNSTARTED = """
local now = tonumber(ARGV[2]) or tonumber(redis.call('TIME')[1])
local limit = tonumber(ARGV[1])
local held = {}
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do held[id] = true end
local taken = redis.call('HGETALL', KEYS[3])
local stuck = {}
for i = 1, #taken, 2 do
  local id, at = taken[i], tonumber(taken[i + 1])
  if not held[id] then
    redis.call('HDEL', KEYS[3], id)
  elseif now - at >= limit then
    table.insert(stuck, {at, id})
  end
end
for id, _ in pairs(held) do
  if redis.call('HEXISTS', KEYS[3], id) == 0 then redis.call('HSET', KEYS[3], id, now) end
end
table.sort(stuck, function(a, b) return a[1] > b[1] end)
local requeued = {}
for _, entry in ipairs(stuck) do
  redis.call('LREM', KEYS[1], 1, entry[2])
  redis.call('HDEL', KEYS[3], entry[2])
  redis.call('LPUSH', KEYS[2], entry[2])
  table.insert(requeued, entry[2])
end
return requeued
"""
