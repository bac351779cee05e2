"""Tasks in Redis: every lookup is a key read, never a scan.

Keys (all under one prefix so several deployments can share a Redis):
- `task:<external_task_id>`          the task record (JSON)
- `task:<external_task_id>:request`  the request body as sent upstream (kept apart: it may hold
                                     megabytes of Base64 that a status change must not rewrite)
- `task:<external_task_id>:history`  every callback and status change, oldest first (JSON list items)
- `task-id:<task_id>`                Kling's task id -> external_task_id
- `tasks`                            sorted set of external_task_ids by creation time (newest-first lists)

Changes go through `update`, an optimistic WATCH/MULTI transaction, so two callbacks for one task
arriving at once can never both apply the same transition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from webhook_service.tasks import Outcome, Task, now_ms

PREFIX = "kws:"
HISTORY_LIMIT = 500

AfterCommit = Callable[[Pipeline, Task, Task], None]


class TaskExists(Exception):
    """A task with this external_task_id is already recorded."""


class TaskNotFound(LookupError):
    pass


class TaskStore:
    def __init__(self, connection: redis.Redis, prefix: str = PREFIX) -> None:
        self.redis = connection
        self.prefix = prefix

    def _task_key(self, external_task_id: str) -> str:
        return f"{self.prefix}task:{external_task_id}"

    def _task_id_key(self, task_id: str) -> str:
        return f"{self.prefix}task-id:{task_id}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}tasks"

    def create(
        self, task: Task, request: dict[str, Any], also: Callable[[Pipeline], None] | None = None
    ) -> None:
        """Record a new task; raises TaskExists when its external_task_id is taken.

        `also(pipe)` adds commands (queueing the task) to the transaction that completes the record.
        """
        key = self._task_key(task.external_task_id)
        if not self.redis.set(key, json.dumps(task.to_dict()), nx=True):
            raise TaskExists(task.external_task_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(f"{key}:request", json.dumps(request))
        pipe.zadd(self._index_key, {task.external_task_id: task.created_at})
        pipe.rpush(f"{key}:history", json.dumps({"at": task.created_at, "event": "created"}))
        if also is not None:
            also(pipe)
        pipe.execute()

    def get(self, external_task_id: str) -> Task | None:
        raw = self.redis.get(self._task_key(external_task_id))
        return Task.from_dict(json.loads(raw)) if raw else None

    def find(self, any_id: str) -> Task | None:
        """By Kling's task_id or by external_task_id, as Kling's own query endpoint accepts either."""
        external_task_id = self.redis.get(self._task_id_key(any_id))
        if external_task_id:
            task = self.get(external_task_id.decode())
            if task:
                return task
        return self.get(any_id)

    def external_id_for(self, task_id: str) -> str | None:
        value = self.redis.get(self._task_id_key(task_id))
        return value.decode() if value else None

    def request(self, external_task_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"{self._task_key(external_task_id)}:request")
        return json.loads(raw) if raw else None

    def history(self, external_task_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(item)
            for item in self.redis.lrange(f"{self._task_key(external_task_id)}:history", 0, -1)
        ]

    def append_history(self, external_task_id: str, entry: dict[str, Any]) -> None:
        key = f"{self._task_key(external_task_id)}:history"
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps({"at": now_ms(), **entry}))
        pipe.ltrim(key, -HISTORY_LIMIT, -1)
        pipe.execute()

    def newest(self, offset: int, limit: int) -> list[Task]:
        ids = [i.decode() for i in self.redis.zrevrange(self._index_key, offset, offset + limit - 1)]
        if not ids:
            return []
        raws = self.redis.mget([self._task_key(i) for i in ids])
        return [Task.from_dict(json.loads(raw)) for raw in raws if raw]

    def update(
        self,
        external_task_id: str,
        change: Callable[[Task], Outcome],
        *,
        history: dict[str, Any] | None = None,
        after_commit: AfterCommit | None = None,
    ) -> tuple[Task, Outcome]:
        """Apply `change` to the task atomically and record `history` (with the outcome) beside it.

        `after_commit(pipe, before, after)` may queue more commands into the same transaction, so work
        that must happen exactly once per transition (enqueueing a job) commits with the transition
        or not at all.
        """
        key = self._task_key(external_task_id)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise TaskNotFound(external_task_id)
                    before = Task.from_dict(json.loads(raw))
                    after = Task.from_dict(json.loads(raw))
                    outcome = change(after)
                    pipe.multi()
                    if outcome is Outcome.APPLIED or after.to_dict() != before.to_dict():
                        pipe.set(key, json.dumps(after.to_dict()))
                    known_ids = {before.task_id, *before.upstream_task_ids}
                    for task_id in {after.task_id, *after.upstream_task_ids} - known_ids - {None}:
                        pipe.set(self._task_id_key(task_id), external_task_id)
                    if history is not None:
                        entry = {
                            "at": now_ms(),
                            **history,
                            "outcome": outcome.value,
                            "status": after.status.value,
                        }
                        pipe.rpush(f"{key}:history", json.dumps(entry))
                        pipe.ltrim(f"{key}:history", -HISTORY_LIMIT, -1)
                    if after_commit is not None and outcome is Outcome.APPLIED:
                        after_commit(pipe, before, after)
                    pipe.execute()
                    return after, outcome
                except redis.WatchError:
                    continue
