"""Who may go upstream, and when: the submission queue, the concurrency slots, the open-task index.

Kling limits how many tasks an account has open at once (1303 past it). The service keeps its own
count below `KLING_MAX_CONCURRENCY`, so a burst of a thousand requests waits here in arrival order
instead of being turned away upstream.

Keys (beside the store's):
- `submit-queue`       sorted set of external_task_ids waiting to be sent, by arrival (µs)
- `slots`              sorted set of external_task_ids holding an upstream slot (score: their arrival,
                       so a task put back takes its old place in the queue)
- `submit-pause-until` ms timestamp before which nothing is sent (after 1302/1303/5001), and its level
- `open`               sorted set of upstream-open tasks by when to check on them next (reconciliation)
- `poll-count`         hash: polls in a row that brought nothing new, per open task
- `slot-taken-at`      hash: when each task still `queued` was taken from the queue to be sent; a
                       sender killed mid-send leaves it behind, and reconciliation puts the task back
"""

from __future__ import annotations

import random
import time

import redis
from redis.client import Pipeline

from webhook_service.store import PREFIX

QUEUE_KEY = f"{PREFIX}submit-queue"
SLOTS_KEY = f"{PREFIX}slots"
PAUSE_KEY = f"{PREFIX}submit-pause-until"
PAUSE_LEVEL_KEY = f"{PREFIX}submit-pause-level"
OPEN_KEY = f"{PREFIX}open"
POLL_COUNT_KEY = f"{PREFIX}poll-count"
TAKEN_AT_KEY = f"{PREFIX}slot-taken-at"

PAUSE_BASE_S = 1.0  # Kling asks for at least 1 s after 1303
PAUSE_CAP_S = 60.0

# Atomically: unless paused or full, move the oldest waiting task into a slot.
_TAKE_NEXT = """
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > tonumber(ARGV[2]) then return false end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[1]) then return false end
local oldest = redis.call('ZPOPMIN', KEYS[1])
if #oldest == 0 then return false end
redis.call('ZADD', KEYS[2], oldest[2], oldest[1])
redis.call('HSET', KEYS[4], oldest[1], ARGV[2])
return oldest[1]
"""

# Atomically: free the task's slot and put it back in the queue where it was.
_PUT_BACK = """
local arrival = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], arrival or ARGV[2], ARGV[1])
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class Admission:
    def __init__(self, connection: redis.Redis, max_concurrency: int) -> None:
        self.redis = connection
        self.max_concurrency = max_concurrency
        self._take_next = connection.register_script(_TAKE_NEXT)
        self._put_back = connection.register_script(_PUT_BACK)

    def enqueue(self, pipe: Pipeline, external_task_id: str) -> None:
        pipe.zadd(QUEUE_KEY, {external_task_id: time.time_ns() // 1000}, nx=True)

    def take_next(self) -> str | None:
        """The next task to send upstream, now holding a slot; None when paused, full or empty."""
        taken = self._take_next(
            keys=[QUEUE_KEY, SLOTS_KEY, PAUSE_KEY, TAKEN_AT_KEY], args=[self.max_concurrency, now_ms()]
        )
        return taken.decode() if taken else None

    def put_back(self, external_task_id: str) -> None:
        """Free the task's slot and return it to the queue in its arrival place (before later ones)."""
        self._put_back(keys=[QUEUE_KEY, SLOTS_KEY, TAKEN_AT_KEY], args=[external_task_id, 0])

    def sent(self, pipe: Pipeline, external_task_id: str) -> None:
        """Kling has the task (or said no): it is no longer in the hands of a sender."""
        pipe.hdel(TAKEN_AT_KEY, external_task_id)

    def abandoned(self, older_than_s: float) -> list[str]:
        """Tasks taken to be sent longer ago than that and never settled: their sender died."""
        cutoff = now_ms() - older_than_s * 1000
        taken = self.redis.hgetall(TAKEN_AT_KEY)
        return [k.decode() for k, at in taken.items() if int(at) < cutoff]

    def release(self, pipe: Pipeline, external_task_id: str) -> None:
        """The task is final: free its slot and stop checking on it."""
        pipe.zrem(SLOTS_KEY, external_task_id)
        pipe.zrem(OPEN_KEY, external_task_id)
        pipe.hdel(POLL_COUNT_KEY, external_task_id)
        pipe.hdel(TAKEN_AT_KEY, external_task_id)

    def pause(self) -> float:
        """Kling said slow down (1302/1303/5001): wait longer after each consecutive refusal."""
        level = int(self.redis.incr(PAUSE_LEVEL_KEY))
        delay = min(PAUSE_CAP_S, PAUSE_BASE_S * 2 ** (level - 1)) * random.uniform(1.0, 1.5)
        self.redis.set(PAUSE_KEY, now_ms() + int(delay * 1000))
        return delay

    def resume(self) -> None:
        if self.redis.exists(PAUSE_LEVEL_KEY):
            self.redis.delete(PAUSE_LEVEL_KEY, PAUSE_KEY)

    def paused_for_s(self) -> float:
        until = int(self.redis.get(PAUSE_KEY) or 0)
        return max(0.0, (until - now_ms()) / 1000)

    def waiting(self) -> int:
        return int(self.redis.zcard(QUEUE_KEY))

    def in_flight(self) -> int:
        return int(self.redis.zcard(SLOTS_KEY))

    def check_later(self, pipe: Pipeline | redis.Redis, external_task_id: str, after_s: float) -> None:
        pipe.zadd(OPEN_KEY, {external_task_id: now_ms() + int(after_s * 1000)})

    def due(self, limit: int) -> list[str]:
        """Open tasks whose next check is due, oldest first: O(log n + limit), never a scan."""
        return [i.decode() for i in self.redis.zrangebyscore(OPEN_KEY, 0, now_ms(), start=0, num=limit)]
