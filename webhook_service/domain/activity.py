"""Activity: how the last day went, hour by hour, for the dashboard's Tasks page: the tasks that reached
a final status, by status, and the delivery attempts, delivered or not.

Everything is counted when it happens, in the same commit as the change it counts: a task's final
transition by `usage.Transition.record` (the store's after_commit), a delivery attempt's outcome by
`DeliveryStore.record_attempt`. Both run inside a transaction, so only plain writes are made here:
HINCRBY, EXPIRE and SADD. Each count goes in the hour (UTC) it is made.

It is small and bounded, and cheap to read: one hash per tenant per hour, of at most six fields, each
with a Redis TTL of TTL_S (two days: the chart shows one); and the set of tenants that have any, with
the same TTL. The last HOURS hours are HOURS hashes per tenant, read in one pipelined round trip.

A task that expired, then got Kling's final word, counts once: the word takes its count back from
`expired`, in the hour it expired, while that hour's hash is still kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.domain.tasks import Status
from webhook_service.domain.tenants import Scope
from webhook_service.keys import Keys
from webhook_service.replies import text, texts
from webhook_service.tenant_names import valid_name

HOURS = 24
TTL_S = 2 * 86_400
HOUR_MS = 3_600_000
TASK, ATTEMPT = "task", "attempt"  # the fields: task:<status>, attempt:delivered and attempt:failed
DELIVERED, FAILED = "delivered", "failed"


def hour_of(ms: int) -> datetime:
    """The UTC hour that `ms` falls in, as its start."""
    return datetime.fromtimestamp(ms // HOUR_MS * HOUR_MS / 1000, UTC)


def hour_name(hour: datetime) -> str:
    """How an hour names its keys: `YYYY-MM-DDTHH` (UTC)."""
    return hour.strftime("%Y-%m-%dT%H")


def attempt_field(delivered: bool) -> str:
    return f"{ATTEMPT}:{DELIVERED if delivered else FAILED}"


def _key(keys: Keys, tenant: str, hour: datetime) -> str:
    return keys.activity(tenant, hour_name(hour))


def _add(pipe: Pipeline, keys: Keys, tenant: str, at: int, name: str, by: int) -> None:
    key = _key(keys, tenant, hour_of(at))
    pipe.hincrby(key, name, by)
    pipe.expire(key, TTL_S)
    pipe.sadd(keys.activity_tenants, tenant)
    pipe.expire(keys.activity_tenants, TTL_S)


# --- counting: plain writes, queued on the caller's transaction ---


def task_finished(pipe: Pipeline, keys: Keys, tenant: str, status: Status) -> None:
    """A task of `tenant` reached the final `status` now."""
    _add(pipe, keys, tenant, now_ms(), f"{TASK}:{status}", 1)


def task_moved(pipe: Pipeline, keys: Keys, tenant: str, status: Status, since: int) -> None:
    """A task counted as `status` at `since` (expired then) is final otherwise now: take its count back.
    Past the TTL the count has gone with its hash, and there is nothing to take."""
    if now_ms() - since < TTL_S * 1000:
        _add(pipe, keys, tenant, since, f"{TASK}:{status}", -1)


def attempt_made(pipe: Pipeline, keys: Keys, tenant: str, delivered: bool) -> None:
    """A delivery attempt for a task of `tenant` ended now: delivered, or not (to be retried or not)."""
    _add(pipe, keys, tenant, now_ms(), attempt_field(delivered), 1)


# --- reading ---


class FinishedTasks:
    """Tasks counted by the final status they reached (an hour's here, a day's or a model's in
    domain/usage.py), and how many in all. The classes that take it on declare `tasks` as their field."""

    tasks: dict[str, int]

    @property
    def finished(self) -> int:
        return sum(self.tasks.values())


@dataclass
class Hour(FinishedTasks):
    """One hour's counts, summed over the tenants read."""

    start: datetime
    tasks: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status if s.terminal})
    delivered: int = 0
    failed: int = 0  # attempts that did not deliver

    @property
    def attempts(self) -> int:
        return self.delivered + self.failed

    def add(self, stored: dict[bytes, bytes]) -> None:
        """One tenant's hash. A count below zero (a task that expired before this was counted, then
        got its final word) is read as none."""
        for raw_name, raw_value in stored.items():
            kind, _, name = text(raw_name).partition(":")
            count = max(0, int(raw_value))
            if kind == TASK and name in self.tasks:
                self.tasks[name] += count
            elif kind == ATTEMPT and name == DELIVERED:
                self.delivered += count
            elif kind == ATTEMPT and name == FAILED:
                self.failed += count


def tenants_of(connection: redis.Redis, keys: Keys, scope: Scope) -> list[str]:
    """Whose activity `scope` sees: its tenant's; an admin's, every tenant's that has any."""
    if not scope.admin:
        return [scope.tenant]
    return sorted(name for name in texts(connection.smembers(keys.activity_tenants)) if valid_name(name))


def empty_hours() -> list[Hour]:
    """The last HOURS hours, the current one last, with nothing counted yet."""
    now = hour_of(now_ms())
    return [Hour(now - timedelta(hours=n)) for n in reversed(range(HOURS))]


def last_hours(connection: redis.Redis, keys: Keys, scope: Scope) -> list[Hour]:
    """The last HOURS hours, the current one last, summed over the tenants `scope` sees: one round trip
    of HOURS hashes per tenant (and one for the tenants, for an admin)."""
    hours = empty_hours()
    tenants = tenants_of(connection, keys, scope)
    pipe = connection.pipeline(transaction=False)
    for hour in hours:
        for tenant in tenants:
            pipe.hgetall(_key(keys, tenant, hour.start))
    replies = iter(pipe.execute())
    for hour in hours:
        for _ in tenants:
            hour.add(next(replies))
    return hours
