"""Tasks in Redis: every lookup is a key read, never a scan (keys.py names the keys).

Changes go through `update`, an optimistic compare-and-set (a Lua script commits only if the task is
still what was read), so two callbacks for one task arriving at once can never both apply the same
transition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from webhook_service.domain.bounds import HISTORY_LIMIT, repeat_entry
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import TaskExists, TaskNotFound
from webhook_service.domain.tasks import Outcome, Status, Task
from webhook_service.domain.tenants import DEFAULT_TENANT, EVERYONE, Scope
from webhook_service.keys import Keys
from webhook_service.replies import stored_json, text, text_or_none, texts

AfterCommit = Callable[[Pipeline, Task], None]
# In an after_commit, `pipe.execute_command(WITH_PREVIOUS_REPLY, "RPUSH", key)` runs `RPUSH key <reply>`
# with the reply of the command queued just before it: how the id XADD gives a stream entry is kept
# beside its task in the same commit (notify/event_log.py). Anywhere else Redis refuses it as unknown.
WITH_PREVIOUS_REPLY = "KWS-WITH-PREVIOUS-REPLY"


class TaskStore:
    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._commit_if_unchanged = connection.register_script(_COMMIT_IF_UNCHANGED)
        self._settle_repeat = connection.register_script(_SETTLE_REPEAT)

    def create(
        self,
        task: Task,
        request: dict[str, Any],
        also: Callable[[Pipeline], None] | None = None,
        *,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        """Record a new task; raises TaskExists when its external_task_id is taken.

        `also(pipe)` adds commands (queueing the task) to the transaction that completes the record.
        `history` starts the task's history in place of its `created` entry (a task recorded again).
        """
        key = self.keys.task(task.external_task_id)
        if not self.redis.set(key, task.to_json(), nx=True):
            raise TaskExists(task.external_task_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self.keys.task_request(task.external_task_id), stored_json(request))
        pipe.zadd(self.keys.tasks, {task.external_task_id: task.created_at})
        pipe.zadd(self.keys.tenant_tasks(task.tenant), {task.external_task_id: task.created_at})
        entries = history or [{"at": task.created_at, "event": "created"}]
        pipe.rpush(self.keys.task_history(task.external_task_id), *(stored_json(e) for e in entries))
        self._index_videos(pipe, task, set())  # a task recorded again may have its videos already
        if task.parent_video:
            pipe.sadd(self.keys.video_extensions(task.parent_video["id"]), task.external_task_id)
        if also is not None:
            also(pipe)
        pipe.execute()

    def get(self, external_task_id: str) -> Task | None:
        raw = self.redis.get(self.keys.task(external_task_id))
        return Task.from_json(raw) if raw else None

    def find(self, any_id: str, scope: Scope = EVERYONE) -> Task | None:
        """By Kling's task_id or by the client's external_task_id, as Kling's own query endpoint accepts
        either; only a task `scope` may see (another tenant's is as absent as a missing one)."""
        external_task_id = self.external_id_for(any_id)
        if external_task_id:
            task = self.get(external_task_id)
            if task and scope.sees(task.tenant):
                return task
        for candidate in scope.candidates(any_id):
            task = self.get(candidate)
            if task and scope.sees(task.tenant):
                return task
        return None

    def external_id_for(self, task_id: str) -> str | None:
        return text_or_none(self.redis.get(self.keys.task_id(task_id)))

    def maker_of_video(self, video_id: str) -> str | None:
        """The external_task_id of the task whose result is this Kling video, while it is kept."""
        return text_or_none(self.redis.get(self.keys.video(video_id)))

    def extensions_of_video(self, video_id: str) -> list[str]:
        """The external_task_ids of the video-extend tasks extending this video, in no set order."""
        return sorted(texts(self.redis.smembers(self.keys.video_extensions(video_id))))

    def _index_videos(self, pipe: Pipeline, task: Task, known: set[str]) -> None:
        """Each video of the task's result not in `known` -> the task (domain/video_extend.py reads it).
        NX: the first task to report a video keeps it, so no later news can claim another's video."""
        for video_id in video_ids(task) - known:
            pipe.set(self.keys.video(video_id), task.external_task_id, nx=True)

    def request(self, external_task_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.task_request(external_task_id))
        return json.loads(raw) if raw else None

    def history(self, external_task_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(item) for item in self.redis.lrange(self.keys.task_history(external_task_id), 0, -1)
        ]

    def history_tail(self, external_task_id: str, last: int) -> tuple[list[dict[str, Any]], int]:
        """The newest `last` entries, oldest first, and how many entries there are in all."""
        key = self.keys.task_history(external_task_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lrange(key, -last, -1)
        pipe.llen(key)
        items, count = pipe.execute()
        return [json.loads(item) for item in items], int(count)

    def append_history(self, external_task_id: str, entry: dict[str, Any]) -> None:
        key = self.keys.task_history(external_task_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.rpush(key, stored_json({"at": now_ms(), **entry}))
        pipe.ltrim(key, -HISTORY_LIMIT, -1)
        pipe.execute()

    def newest(self, offset: int, limit: int, scope: Scope = EVERYONE) -> list[Task]:
        """Newest first: every task for an admin, else the scope's tenant's."""
        if scope.admin:
            index = self.keys.tasks
        elif scope.tenant == DEFAULT_TENANT and not self.tenant_indexes_complete():
            # Tasks recorded before tenants are in `tasks` only, until the backfill has put them in
            # the default tenant's index (domain/tenant_backfill.py): read the whole list, keep its own.
            everything = self.many(texts(self.redis.zrevrange(self.keys.tasks, offset, offset + limit - 1)))
            return [task for task in everything if task.tenant == DEFAULT_TENANT]
        else:
            index = self.keys.tenant_tasks(scope.tenant)
        return self.many(texts(self.redis.zrevrange(index, offset, offset + limit - 1)))

    def tenant_indexes_complete(self) -> bool:
        return self.redis.get(self.keys.tenant_backfill) == b"done"

    def many(self, ids: list[str]) -> list[Task]:
        """The tasks with these external_task_ids, in that order, leaving out those not recorded."""
        if not ids:
            return []
        raws = self.redis.mget([self.keys.task(i) for i in ids])
        return [Task.from_json(raw) for raw in raws if raw]

    def remove(self, pipe: Pipeline, task: Task, notice: str, notice_ttl_s: int) -> None:
        """Queue the removal of the task and everything of its own in `pipe`, leaving `notice` under
        each of its ids for `notice_ttl_s`, so a query can say it was removed rather than unknown."""
        ids = [task.external_task_id, *{task.task_id, *task.upstream_task_ids} - {None}]
        pipe.delete(
            self.keys.task(task.external_task_id),
            self.keys.task_request(task.external_task_id),
            self.keys.task_history(task.external_task_id),
            *(self.keys.task_id(i) for i in ids[1:] if i is not None),
            *(self.keys.video(v) for v in video_ids(task)),
            *(self.keys.video_extensions(v) for v in video_ids(task)),
        )
        if task.parent_video:
            pipe.srem(self.keys.video_extensions(task.parent_video["id"]), task.external_task_id)
        pipe.zrem(self.keys.tasks, task.external_task_id)
        pipe.zrem(self.keys.tenant_tasks(task.tenant), task.external_task_id)
        for any_id in ids:
            if any_id is not None:
                pipe.set(self.keys.removed(any_id), notice, ex=notice_ttl_s)

    def removal_notice(self, any_id: str) -> dict[str, Any] | None:
        """What `remove` left under this id (while it lasts): when, and why."""
        raw = self.redis.get(self.keys.removed(any_id))
        notice: dict[str, Any] | None = json.loads(raw) if raw else None
        return notice

    def update(
        self,
        external_task_id: str,
        change: Callable[[Task], Outcome],
        *,
        history: dict[str, Any] | None = None,
        after_commit: AfterCommit | None = None,
        repeat: Repeat | None = None,
    ) -> tuple[Task, Outcome]:
        """Apply `change` to the task atomically and record `history` (with the outcome) beside it.

        `after_commit(pipe, task)` may queue more commands, which commit with the change or not at all,
        so work that must happen exactly once per transition (enqueueing a job) does. Only plain
        writes belong there: the commands run inside a script, which cannot run other scripts. A
        write may take the reply of the one before it (WITH_PREVIOUS_REPLY).

        The commit is a compare-and-set: the changed task and every command are written only if the
        task is still what was read, else it is read again and `change` runs again. That costs two
        round trips where WATCH, GET and MULTI/EXEC cost three. With `repeat` (and `history`), news
        the task already has is settled in one: `change` never runs for it.

        The history entry of news that changed nothing (not APPLIED) keeps no body, only its size and
        sha256 (domain/bounds.py's repeat_entry): repeats cannot fill the history with bodies.
        """
        key, history_key = self.keys.task(external_task_id), self.keys.task_history(external_task_id)
        raw: bytes | str | None = None
        if repeat is not None and history is not None:
            settled = self._settle_repeat(
                keys=[key, history_key],
                args=[
                    repeat.status.value,
                    repeat.task_id or "",
                    _entry_prefix(repeat_entry(history)),
                    HISTORY_LIMIT,
                ],
            )
            if settled is None:
                raise TaskNotFound(external_task_id)
            verdict, raw = settled
            if verdict != b"news":
                return Task.from_json(raw), Outcome(text(verdict))
        while True:
            if raw is None:
                raw = self.redis.get(key)
                if raw is None:
                    raise TaskNotFound(external_task_id)
            task = Task.from_json(raw)
            known_ids, known_videos = {task.task_id, *task.upstream_task_ids}, video_ids(task)
            outcome = change(task)
            commands = self.redis.pipeline()  # collects the commands for the script, never executed
            commands.multi()  # as RQ expects of a pipeline it is given
            stored = task.to_json()
            if stored != text(raw):
                commands.set(key, stored)
            for task_id in {task.task_id, *task.upstream_task_ids} - known_ids:
                if task_id is not None:
                    commands.set(self.keys.task_id(task_id), external_task_id)
            self._index_videos(commands, task, known_videos)
            if history is not None:
                said = history if outcome is Outcome.APPLIED else repeat_entry(history)
                entry = {"at": now_ms(), **said, "outcome": outcome.value, "status": task.status.value}
                commands.rpush(history_key, stored_json(entry))
                commands.ltrim(history_key, -HISTORY_LIMIT, -1)
            if after_commit is not None and outcome is Outcome.APPLIED:
                after_commit(commands, task)
            if self._commit_if_unchanged(keys=[key], args=[raw, *_flatten(commands.command_stack)]):
                return task, outcome
            raw = None


def video_ids(task: Task) -> set[str]:
    """The ids of the videos in the task's result (Kling's `task_result.videos[].id`)."""
    videos = (task.task_result or {}).get("videos")
    found = (
        (video.get("id") for video in videos if isinstance(video, dict)) if isinstance(videos, list) else ()
    )
    return {str(video_id) for video_id in found if video_id not in (None, "")}


@dataclass(frozen=True)
class Repeat:
    """What a piece of news says, enough for the store to tell whether the task knows it already."""

    status: Status
    task_id: str | None


def _entry_prefix(history: dict[str, Any]) -> str:
    """A history entry's JSON without its closing brace: the outcome and status are added last."""
    return stored_json({"at": now_ms(), **history})[:-1]


def _flatten(command_stack: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """Pipelined commands as the commit script reads them: each one's length, then its arguments."""
    flat: list[Any] = []
    for args, _options in command_stack:
        if args[0] in ("EVAL", "EVALSHA"):
            raise ValueError("a script cannot run inside the store's commit: queue plain writes only")
        flat += [len(args), *args]
    return flat


# KEYS[1] the task; ARGV[1] the task as it was read, then each command as its length and arguments (a
# command named WITH_PREVIOUS_REPLY: the command after the name, with the previous reply appended).
_COMMIT_IF_UNCHANGED = (
    f"local WITH_PREVIOUS_REPLY = {WITH_PREVIOUS_REPLY!r}"
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
local reply
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == WITH_PREVIOUS_REPLY then
    local command = {unpack(ARGV, i + 2, i + n)}
    command[#command + 1] = reply
    reply = redis.call(unpack(command))
  else
    reply = redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
return 1
"""
)

# KEYS[1] the task, KEYS[2] its history; ARGV: reported status, task_id ('' for none), the history
# entry without its closing brace, the history's cap. The rule is `apply_update`'s: a status that does
# not move the task forward is a duplicate (same rank) or stale (lower), provided the news names no
# task_id the task does not know yet. Anything else is news, for `change` to apply: answered with the
# task as read, which the compare-and-set then protects.
_SETTLE_REPEAT = (
    "local RANK = {"
    + ", ".join(f"[{status.value!r}] = {status.rank}" for status in Status)
    + "}"
    + """
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local task = cjson.decode(raw)
local known = ARGV[2] == '' or ARGV[2] == task.task_id
if not known and type(task.task_id) == 'string' and type(task.upstream_task_ids) == 'table' then
  for _, id in ipairs(task.upstream_task_ids) do
    if id == ARGV[2] then known = true end
  end
end
local reported, current = RANK[ARGV[1]], RANK[task.status]
if not known or not reported or not current or reported > current then return {'news', raw} end
local outcome = reported == current and 'duplicate' or 'stale'
local entry = ARGV[3] .. ',"outcome":"' .. outcome .. '","status":"' .. task.status .. '"}'
redis.call('RPUSH', KEYS[2], entry)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
return {outcome, raw}
"""
)
