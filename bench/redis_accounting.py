"""What one task costs in Redis, counted whole: the keys it owns and its share of the keys it shares.

A task owns keys of its own (keys.py): its record, request, history, task_id lookup, the video index
entry of each video it made (and the set of the tasks extending it, if any), the list of its entries in
the event log, its deliveries with their set and attempts, and the events they send. It also takes a
place in keys every task shares: a member in the sorted sets, sets and hashes that index tasks and
deliveries (by creation, by retention time, by status, by tenant; a delivery still among its sink's
waiting ones, `turns:<target>:waiting`, which a finished task's normally has left), and entries in its
tenant's event log (a stream). A sink's turn (`sink:<id>:busy`, `endpoint:<id>:busy`) is held only
while an attempt is in flight: a finished task holds none. A shared key's bytes are split evenly over
its members, so a task's share of one is MEMORY USAGE divided by the number of members, times the
members that are the task's (its ids, its deliveries' and its events'); a stream's, MEMORY USAGE
divided by its entries, times the task's entries. Per-day and per-hour counters (usage, activity) are
not per task and not counted.

Every figure is MEMORY USAGE with SAMPLES 0: exact. RQ's keys are RQ's and left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from webhook_service.domain.tenants import DEFAULT_TENANT
from webhook_service.keys import Keys
from webhook_service.replies import texts

KEYS = Keys()
SHARED_KINDS = {b"zset": "ZCARD", b"set": "SCARD", b"hash": "HLEN", b"stream": "XLEN"}


def _json(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


@dataclass(frozen=True)
class TaskIds:
    """Every name the task is known by in Redis: what index members hold."""

    external_id: str
    tenant: str
    upstream_id: str | None
    video_ids: list[str]
    delivery_ids: list[str]
    event_ids: list[str]

    @property
    def members(self) -> list[str]:
        ids = [self.external_id, *self.delivery_ids, *self.event_ids]
        return [*ids, self.upstream_id] if self.upstream_id else ids


def task_ids(connection: redis.Redis, external_id: str) -> TaskIds:
    record = _json(connection.get(KEYS.task(external_id)))
    videos = ((record.get("task_result") or {}).get("videos")) or []
    deliveries = sorted(texts(connection.smembers(KEYS.task_deliveries(external_id))))
    events = {_json(connection.get(KEYS.delivery(d))).get("event_id") for d in deliveries}
    return TaskIds(
        external_id,
        record.get("tenant") or DEFAULT_TENANT,
        record.get("task_id"),
        [v["id"] for v in videos if v.get("id")],
        deliveries,
        sorted(e for e in events if e),
    )


def own_keys(connection: redis.Redis, ids: TaskIds) -> dict[str, list[str]]:
    """The keys that belong to one task alone, by kind, as keys.py names them."""
    videos = [KEYS.video(v) for v in ids.video_ids]
    videos += [k for v in ids.video_ids if connection.exists(k := KEYS.video_extensions(v))]
    return {
        "task": [KEYS.task(ids.external_id)],
        "request": [KEYS.task_request(ids.external_id)],
        "history": [KEYS.task_history(ids.external_id)],
        "task-id": [KEYS.task_id(ids.upstream_id)] if ids.upstream_id else [],
        "video index": videos,
        "log entry ids": [KEYS.task_events(ids.external_id)],
        "deliveries": [KEYS.task_deliveries(ids.external_id), *(KEYS.delivery(d) for d in ids.delivery_ids)],
        "attempts": [KEYS.delivery_attempts(d) for d in ids.delivery_ids],
        "events": [KEYS.event(e) for e in ids.event_ids],
    }


@dataclass(frozen=True)
class SharedKey:
    name: str
    kind: bytes
    per_member: float  # MEMORY USAGE over members (or entries)


def shared_keys(connection: redis.Redis, owned: set[str]) -> list[SharedKey]:
    """The service's keys that hold members of many tasks (every collection no task owns alone)."""
    found = []
    for raw in connection.scan_iter(match=f"{KEYS.prefix}*", count=1000):
        name = raw.decode()
        kind = connection.type(name)
        if name in owned or kind not in SHARED_KINDS:
            continue
        members = int(connection.execute_command(SHARED_KINDS[kind], name))
        if members:
            found.append(SharedKey(name, kind, (connection.memory_usage(name, samples=0) or 0) / members))
    return found


def footprint(connection: redis.Redis, ids: TaskIds, shared: list[SharedKey]) -> dict[str, int]:
    """Bytes by kind for one task: each key of its own, then its share of the indexes and of the log."""
    bytes_by_kind = {
        kind: sum(connection.memory_usage(key, samples=0) or 0 for key in keys)
        for kind, keys in own_keys(connection, ids).items()
    }
    pipe = connection.pipeline(transaction=False)
    asked: list[SharedKey] = []
    for key in shared:
        if key.kind == b"stream":
            continue
        for member in ids.members:
            if key.kind == b"zset":
                pipe.zscore(key.name, member)
            elif key.kind == b"set":
                pipe.sismember(key.name, member)
            else:
                pipe.hexists(key.name, member)
            asked.append(key)
    answers = pipe.execute()  # a member's score (0 is one) or None; else 1 or 0
    held = [
        key.per_member
        for key, answer in zip(asked, answers, strict=True)
        if (answer is not None if key.kind == b"zset" else bool(answer))
    ]
    bytes_by_kind["indexes"] = round(sum(held))
    entries = connection.llen(KEYS.task_events(ids.external_id))
    log = next((k for k in shared if k.name == KEYS.events(ids.tenant)), None)
    bytes_by_kind["event log"] = round(entries * log.per_member) if log else 0
    return bytes_by_kind
