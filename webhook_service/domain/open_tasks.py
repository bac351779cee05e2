"""The tasks Kling has open, by when to ask about them next: what reconciliation works from.

A task enters the index when Kling takes it and leaves it when it is final. Each poll that brings
nothing new pushes its next check further out (keys.py's `open` and `poll-count`).
"""

from __future__ import annotations

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.keys import Keys
from webhook_service.replies import texts


class OpenTasks:
    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def check_later(self, pipe: Pipeline | redis.Redis, external_task_id: str, after_s: float) -> None:
        pipe.zadd(self.keys.open, {external_task_id: now_ms() + int(after_s * 1000)})

    def due(self, limit: int) -> list[str]:
        """Open tasks whose next check is due, oldest first: O(log n + limit), never a scan."""
        return texts(self.redis.zrangebyscore(self.keys.open, 0, now_ms(), start=0, num=limit))

    def closed(self, pipe: Pipeline, external_task_id: str) -> None:
        """The task is final: stop checking on it."""
        pipe.zrem(self.keys.open, external_task_id)
        pipe.hdel(self.keys.poll_count, external_task_id)

    def nothing_new(self, external_task_id: str) -> int:
        """Count one more poll in a row that brought nothing new; returns how many so far."""
        return int(self.redis.hincrby(self.keys.poll_count, external_task_id, 1))

    def news(self, external_task_id: str) -> None:
        self.redis.hdel(self.keys.poll_count, external_task_id)
