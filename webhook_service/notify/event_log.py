"""The event log: every event of a tenant's tasks, and of its endpoints (`endpoint.disabled`), in order,
for pipelines that read rather than receive (`GET /v1/events`, its Server-Sent Events twin
`/v1/events/stream`, `flask events tail`).

A webhook needs a URL the service can reach and goes only where a sink's filter sends it; a pipeline
behind a firewall, or one that wants every event, reads this log instead. `raise_event`
(notify/routing.py) records each event in its tenant's Redis Stream inside the transaction of the change
it reports, whether or not a sink wants it, so the log has no gaps and holds no event that did not
happen. The entry id XADD gives (`<ms>-<seq>`, increasing) is the reader's cursor; the event's own `id`
is the `webhook-id` its webhooks carry, so a reader that takes both can tell one event from two.

An entry is a summary (type, id, time, the task's ids, type, status and archive state), not the
webhook's payload: that is built at fan-out from the task's request and history, which a commit cannot
read, and a few kilobytes an event, seven events a task, for the whole retention, would outweigh the
tasks themselves. Every entry of a task has the same fields, which a stream stores once per node: an
entry costs about 175 bytes (measured with `kws-<uuid>` ids: 155 without the task's type, which adds 18
for `image2video`, 30 for the longest name), and a task's list of entry ids about 230, about 1.4 KB a
task of seven events in all. The task is one `GET /v1/tasks/<id>` away. An entry
recorded before entries carried the task's type reads with `task_type` null, and matches no
`task_types` filter: the entry says nothing of it, and looking each task up would cost a read an entry.

An entry of no task (`endpoint.disabled`: an endpoint of the tenant was disabled, notify/disabling.py)
has its task's fields empty and names the endpoint instead; a reader that follows the log learns that
its webhooks stopped even when no other endpoint is there to be told.

Bounded like everything else: a task's entries leave when retention removes the task (their ids are
listed beside it, `task:<id>:events`, so they are found without a scan); an entry of no task leaves
TASK_RETENTION_S after it was recorded, by a time index (`events-taskless`) from which each pass takes
only what is due; and MAXLEN ~ LOG_MAX_ENTRIES per tenant backs both up.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import EVENT_TYPES, EventType
from webhook_service.domain.store import WITH_PREVIOUS_REPLY
from webhook_service.domain.task_types import TASK_TYPES
from webhook_service.domain.tasks import Task
from webhook_service.domain.tenants import Scope
from webhook_service.keys import Keys
from webhook_service.replies import entries, text, texts
from webhook_service.tenant_names import NAME_RULE, valid_name

# XADD and the entry's place in the time index in one step: the index needs the id XADD makes.
_RECORD_TASKLESS = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3] .. id)
return id
"""

# A backstop, never the rule: 150,000 to 250,000 tasks' worth of events a tenant (some 130 MB), far
# past what retention keeps unless it has stopped.
LOG_MAX_ENTRIES = 1_000_000
START = "0-0"  # the cursor before every entry: read from the start of what is kept
SCAN_BATCH = 500
# The most entries one page looks at: with a `types` filter that skips nearly everything, a page may
# come back short (or empty) with `has_more`, its cursor moved past what it skipped.
SCAN_MAX = 5000
_CURSOR = re.compile(r"(\d{1,20})-(\d{1,20})\Z")
_ID_MAX = 2**64 - 1
_TENANT_END = " "  # in the time index, `<tenant> <entry id>`: no tenant name has a space
CURSOR_RULE = "a cursor is `<milliseconds>-<sequence>`, as `next_cursor` and each event's `cursor` give it"


class BadEventQuery(ValueError):
    """A query the log cannot answer: `field` names the parameter, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Page:
    """Events in order, and where the next read starts: after the last entry looked at, which may be
    past the last event returned (entries the `types` filter skipped)."""

    events: list[dict[str, Any]]
    next_cursor: str
    has_more: bool  # entries follow next_cursor already: read again without waiting


def record(pipe: Pipeline, keys: Keys, task: Task, event_id: str, event_type: EventType) -> None:
    """Queue the event's entry in its tenant's log, and the entry's id beside the task, in the store's
    commit (its after_commit): both are written with the change the event reports, or neither is."""
    fields: dict[FieldT, EncodableT] = {
        "id": event_id,
        "type": event_type.value,
        "at": now_ms(),
        "external_task_id": task.client_task_id,
        "task_id": task.task_id or "",
        "task_type": task.type,
        "status": task.status.value,
        "archive_state": task.archive_state.value if task.archive_state else "",
    }
    pipe.xadd(keys.events(task.tenant), fields, maxlen=LOG_MAX_ENTRIES, approximate=True)
    pipe.execute_command(WITH_PREVIOUS_REPLY, "RPUSH", keys.task_events(task.external_task_id))


def tenant_to_read(scope: Scope, asked: str | None) -> str:
    """Whose log: the caller's own tenant's; an admin may name any tenant (one log at a time)."""
    if not asked:
        return scope.tenant
    if not valid_name(asked):
        raise BadEventQuery("tenant", f"a tenant name is {NAME_RULE}")
    if not scope.sees(asked):
        raise BadEventQuery("tenant", "only an admin may read another tenant's events")
    return asked


def parse_types(raw: str | None) -> frozenset[str]:
    """Comma-separated event types; none: every type."""
    return _names(raw, "types", "event type", EVENT_TYPES)


def parse_task_types(raw: str | None) -> frozenset[str]:
    """Comma-separated task types (domain/task_types.py's names); none: events of every task, and of
    none (`endpoint.disabled`). Given, only the events of tasks of those types."""
    return _names(raw, "task_types", "task type", tuple(TASK_TYPES))


def _names(raw: str | None, field: str, what: str, known: tuple[str, ...]) -> frozenset[str]:
    asked = {part.strip() for part in (raw or "").split(",") if part.strip()}
    unknown = sorted(asked - set(known))
    if unknown:
        shown = ", ".join(unknown)[:200]
        raise BadEventQuery(field, f"unknown {what}(s) {shown}; known: {', '.join(known)}")
    return frozenset(asked)


def _wanted(event: dict[str, Any], types: frozenset[str], task_types: frozenset[str]) -> bool:
    return (not types or event["type"] in types) and (not task_types or event["task_type"] in task_types)


class EventLog:
    """Reading the tenants' logs; recording the entries of no task; removing entries as retention asks
    (domain/retention.py): a task's with it, those of no task when their time is up."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._record_taskless = connection.register_script(_RECORD_TASKLESS)

    def record_taskless(self, tenant: str, event_id: str, event_type: str, at: int, endpoint_id: str) -> str:
        """Record an event of no task, about one of the tenant's endpoints, and its place in the time
        index retention removes it by; its cursor."""
        args: list[EncodableT] = [LOG_MAX_ENTRIES, at, f"{tenant}{_TENANT_END}"]
        args += ["id", event_id, "type", event_type, "at", at, "endpoint_id", endpoint_id]
        keys = [self.keys.events(tenant), self.keys.events_taskless]
        return text(self._record_taskless(keys=keys, args=args))

    def remove_taskless_before(self, before_ms: int, batch: int) -> int:
        """Remove up to `batch` entries of no task recorded before `before_ms`, oldest first: only what is
        due is read (O(log n + batch)). How many were removed."""
        due = texts(self.redis.zrangebyscore(self.keys.events_taskless, 0, before_ms, start=0, num=batch))
        if not due:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        for member in due:
            tenant, _, entry_id = member.partition(_TENANT_END)
            pipe.xdel(self.keys.events(tenant), entry_id)
        pipe.zrem(self.keys.events_taskless, *due)
        pipe.execute()
        return len(due)

    def cursor(self, tenant: str, raw: str | None, field: str = "after") -> str:
        """`raw` as a cursor of the tenant's log (none: START). One past the newest entry the log ever
        gave is refused: a reader holding it would silently skip every event until then. A log that
        does not exist yet (a new tenant, a Redis that lost its data) takes any cursor."""
        if not raw:
            return START
        match = _CURSOR.match(raw)
        if not match or max(int(part) for part in match.groups()) > _ID_MAX:
            raise BadEventQuery(field, CURSOR_RULE)
        newest = self._last_generated(tenant)
        if newest is not None and _order(raw) > _order(newest):
            raise BadEventQuery(field, f"is past the newest event of this log ({newest}): {CURSOR_RULE}")
        return raw

    def newest(self, tenant: str) -> str:
        """The cursor of the newest entry the tenant's log ever had: reading after it gives only the
        events from now on."""
        return self._last_generated(tenant) or START

    def _last_generated(self, tenant: str) -> str | None:
        """The id of the newest entry the log ever had, removed or not; None while there is no log (yet,
        or any more: a Redis that lost its data)."""
        try:
            return text(self.redis.xinfo_stream(self.keys.events(tenant))["last-generated-id"])
        except redis.ResponseError:  # no such key
            return None

    def page(
        self,
        tenant: str,
        after: str,
        limit: int,
        types: frozenset[str],
        task_types: frozenset[str] = frozenset(),
    ) -> Page:
        """Up to `limit` events after the cursor `after`, oldest first, of `types` (empty: every type) and
        of tasks of `task_types` (empty: any task, or none)."""
        key = self.keys.events(tenant)
        found: list[dict[str, Any]] = []
        cursor = after
        for _ in range(SCAN_MAX // SCAN_BATCH):
            batch = entries(self.redis.xrange(key, f"({cursor}", "+", count=SCAN_BATCH))
            for entry_id, fields in batch:
                if len(found) == limit:
                    return Page(found, cursor, has_more=True)
                cursor = entry_id
                event = _view(tenant, cursor, fields)
                if _wanted(event, types, task_types):
                    found.append(event)
            if len(batch) < SCAN_BATCH:
                return Page(found, cursor, has_more=False)
        return Page(found, cursor, has_more=True)

    def follow(
        self,
        blocking: redis.Redis,
        tenant: str,
        after: str,
        types: frozenset[str],
        *,
        limit: int,
        deadline: float,
        tick_s: float,
        task_types: frozenset[str] = frozenset(),
    ) -> Iterator[Page]:
        """Pages of events after `after` as they are recorded, until `deadline` (time.monotonic()): each
        page as soon as it has events, and an empty one (its cursor moved past any entries of other
        types) after each `tick_s` without any. `blocking` waits in XREAD BLOCK: its read timeout must
        outlast `tick_s`."""
        cursor = after
        while True:
            page = self.page(tenant, cursor, limit, types, task_types)
            cursor = page.next_cursor
            if page.events:
                yield page
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not page.has_more and not self._arrives(blocking, tenant, cursor, min(tick_s, remaining)):
                yield Page([], cursor, has_more=False)

    def _arrives(self, blocking: redis.Redis, tenant: str, cursor: str, seconds: float) -> bool:
        """Whether an entry after `cursor` is recorded within `seconds` (at once if one is there)."""
        block_ms = max(1, round(seconds * 1000))  # 0 would block for ever
        return bool(blocking.xread({self.keys.events(tenant): cursor}, count=1, block=block_ms))

    def of_task(self, tenant: str, external_task_id: str) -> list[dict[str, Any]]:
        """The task's events the log still holds, in the order they were recorded: the order its changes
        committed in (notify/event_order.py)."""
        entry_ids = texts(self.redis.lrange(self.keys.task_events(external_task_id), 0, -1))
        with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xrange(self.keys.events(tenant), entry_id, entry_id)
            found = pipe.execute()
        return [_view(tenant, entry_id, fields) for batch in found for entry_id, fields in entries(batch)]

    def remove(self, pipe: Pipeline, task: Task) -> None:
        """Queue the removal of the task's entries and of their list in `pipe`. Their ids are read now:
        an entry is only ever recorded with a change to its task, which the caller's WATCH on the task
        catches."""
        entry_ids = texts(self.redis.lrange(self.keys.task_events(task.external_task_id), 0, -1))
        if entry_ids:
            pipe.xdel(self.keys.events(task.tenant), *entry_ids)
        pipe.delete(self.keys.task_events(task.external_task_id))


def _order(cursor: str) -> tuple[int, int]:
    milliseconds, _, sequence = cursor.partition("-")
    return int(milliseconds), int(sequence)


def _view(tenant: str, cursor: str, fields: dict[str, str]) -> dict[str, Any]:
    """An entry as readers get it: the fields as recorded, with the cursor, and null for the empty (a
    task's fields in an entry of no task, `endpoint_id` in a task's) and the absent (`task_type` in an
    entry recorded before entries carried it)."""
    return {
        "cursor": cursor,
        "id": fields.get("id", ""),
        "type": fields.get("type", ""),
        "at": int(fields.get("at") or 0),
        "tenant": tenant,
        "external_task_id": fields.get("external_task_id") or None,
        "task_id": fields.get("task_id") or None,
        "task_type": fields.get("task_type") or None,
        "status": fields.get("status") or None,
        "archive_state": fields.get("archive_state") or None,
        "endpoint_id": fields.get("endpoint_id") or None,
    }
