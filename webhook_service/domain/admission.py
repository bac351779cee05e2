"""Who may go upstream, and when: the submission queue and the concurrency slots.

Kling limits how many tasks an account has open at once (1303 past it). The service keeps its own
count below `KLING_MAX_CONCURRENCY`, so a burst of a thousand requests waits here in arrival order
instead of being turned away upstream. The keys are keys.py's `submit_queue`, `slots`, `pause_until`,
`pause_level` and `slot_taken_at`.
"""

from __future__ import annotations

import random
import time

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.keys import Keys
from webhook_service.replies import text

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


class Admission:
    def __init__(self, connection: redis.Redis, keys: Keys, max_concurrency: int) -> None:
        self.redis = connection
        self.keys = keys
        self.max_concurrency = max_concurrency
        self._take_next = connection.register_script(_TAKE_NEXT)
        self._put_back = connection.register_script(_PUT_BACK)

    def enqueue(self, pipe: Pipeline, external_task_id: str, tenant: str = DEFAULT_TENANT) -> None:
        pipe.zadd(self.keys.submit_queue, {external_task_id: time.time_ns() // 1000}, nx=True)

    def take_next(self) -> str | None:
        """The next task to send upstream, now holding a slot; None when paused, full or empty."""
        k = self.keys
        taken = self._take_next(
            keys=[k.submit_queue, k.slots, k.pause_until, k.slot_taken_at],
            args=[self.max_concurrency, now_ms()],
        )
        return text(taken) if taken else None

    def put_back(self, external_task_id: str) -> None:
        """Free the task's slot and return it to the queue in its arrival place (before later ones)."""
        k = self.keys
        self._put_back(keys=[k.submit_queue, k.slots, k.slot_taken_at], args=[external_task_id, 0])

    def sent(self, pipe: Pipeline, external_task_id: str) -> None:
        """Kling has the task (or said no): it is no longer in the hands of a sender."""
        pipe.hdel(self.keys.slot_taken_at, external_task_id)

    def abandoned(self, older_than_s: float) -> list[str]:
        """Tasks taken to be sent longer ago than that and never settled: their sender died."""
        cutoff = now_ms() - older_than_s * 1000
        taken = self.redis.hgetall(self.keys.slot_taken_at)
        return [text(k) for k, at in taken.items() if int(at) < cutoff]

    def release(self, pipe: Pipeline, external_task_id: str) -> None:
        """The task is final: free its slot."""
        pipe.zrem(self.keys.slots, external_task_id)
        pipe.hdel(self.keys.slot_taken_at, external_task_id)

    def pause(self) -> float:
        """Kling said slow down (1302/1303/5001): wait longer after each consecutive refusal."""
        level = int(self.redis.incr(self.keys.pause_level))
        delay = min(PAUSE_CAP_S, PAUSE_BASE_S * 2.0 ** (level - 1)) * random.uniform(1.0, 1.5)
        self.redis.set(self.keys.pause_until, now_ms() + int(delay * 1000))
        return delay

    def resume(self) -> None:
        if self.redis.exists(self.keys.pause_level):
            self.redis.delete(self.keys.pause_level, self.keys.pause_until)

    def paused_for_s(self) -> float:
        until = int(self.redis.get(self.keys.pause_until) or 0)
        return max(0.0, (until - now_ms()) / 1000.0)

    def waiting(self) -> int:
        return int(self.redis.zcard(self.keys.submit_queue))

    def in_flight(self) -> int:
        return int(self.redis.zcard(self.keys.slots))
