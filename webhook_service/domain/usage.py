"""Usage: which tenant's tasks spent the Kling account's units, per UTC day and model.

A task is counted when it reaches a final status, by the follow-up that commits the change (the store's
`after_commit`), so it is counted exactly when the change is: never for a change that did not commit,
never twice for one that did. It counts on the UTC day it was *created* (recorded by the service), so
a task counts on one day however late its final word comes, and a day's numbers, once its tasks are
final, stay put.

A task counts once, under its latest final status. `expired` (no news for TASK_TIMEOUT_S) is final for
the service but not for Kling, whose `succeed` or `failed` may still come: that change moves the task
(its count and any units) from `expired` to its final status. `Transition` is what makes that possible:
it captures, inside the store's `change`, what the change moved the task from.

Usage is small and bounded: one hash per tenant per day, its fields the statuses and units of the few
models the tenant used, each with a Redis TTL of `TTL_DAYS`; and the set of tenants that have usage.
Retention removes tasks; their usage stays.

The same follow-up counts the task in its hour's activity (domain/activity.py), moved the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import redis
from redis.client import Pipeline

from webhook_service.domain import activity
from webhook_service.domain.clock import now_ms
from webhook_service.domain.tasks import Outcome, Status, Task
from webhook_service.domain.tenants import Scope
from webhook_service.integrations import metrics
from webhook_service.keys import Keys
from webhook_service.replies import text, texts
from webhook_service.tenant_names import NAME_RULE, valid_name

log = logging.getLogger(__name__)

FINAL_STATUSES = (Status.SUCCEED, Status.FAILED, Status.REJECTED, Status.EXPIRED)
TTL_DAYS = 400  # a year of history, with room for a year-on-year look at the same month
DEFAULT_DAYS = 30
MAX_DAYS = 366
UNKNOWN_MODEL = "unknown"  # a task recorded again after Redis lost it may not know its model
UNITS = "units"
# Units are summed as integer thousandths: exact, where a float sum of 0.1s drifts. A deduction past
# MAX_UNITS_PER_TASK is taken as a mistake in the answer, not a bill, and counts nothing.
MILLI = 1000
MAX_UNITS_PER_TASK = Decimal(1_000_000)


def thousandths(units: str | None) -> int:
    """Kling's final_unit_deduction (a string: "1.5") in thousandths of a unit (1500); 0 for none, and
    for anything that is not a plain non-negative number below MAX_UNITS_PER_TASK."""
    if not units:
        return 0
    try:
        value = Decimal(units.strip())
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not 0 <= value <= MAX_UNITS_PER_TASK:
        log.warning("final_unit_deduction %r is not a number of units: counted as 0", units[:40])
        return 0
    return int((value * MILLI).to_integral_value(ROUND_HALF_EVEN))


def day_of(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, UTC).date()


@dataclass
class Transition:
    """What a change moved a task from: its status, units and last change as the store's `change` found
    them.

    The store may run `change` (and the follow-up) more than once when its compare-and-set finds the
    task changed meanwhile; each run captures afresh, so what is committed, and counted after the
    commit, is the last run's.
    """

    status: Status = Status.QUEUED
    units: int = 0
    at: int = 0  # when the task last changed: for an expired task, when it expired

    def capture(self, task: Task) -> None:
        """Call inside `change`, before the task is changed."""
        self.status, self.units = task.status, thousandths(task.final_unit_deduction)
        self.at = task.updated_at

    def finishes(self, after: Task) -> bool:
        return after.status.terminal and after.status is not self.status

    def record(self, pipe: Pipeline, keys: Keys, after: Task) -> None:
        """Queue the usage and activity writes of the change to `after`, in the follow-up: plain
        writes only."""
        if not self.finishes(after):
            return
        key = keys.usage(after.tenant, day_of(after.created_at).isoformat())
        model = after.model_name or UNKNOWN_MODEL
        if self.status.terminal:  # counted already, as expired: moved, never counted twice
            pipe.hincrby(key, f"{self.status}:{model}", -1)
            if self.units:
                pipe.hincrby(key, f"{UNITS}:{model}", -self.units)
            activity.task_moved(pipe, keys, after.tenant, self.status, self.at)
        activity.task_finished(pipe, keys, after.tenant, after.status)
        pipe.hincrby(key, f"{after.status}:{model}", 1)
        if units := thousandths(after.final_unit_deduction):
            pipe.hincrby(key, f"{UNITS}:{model}", units)
        pipe.expire(key, TTL_DAYS * 86400)
        pipe.sadd(keys.usage_tenants, after.tenant)
        pipe.expire(keys.usage_tenants, TTL_DAYS * 86400)

    def count(self, after: Task, outcome: Outcome) -> None:
        """The metrics of the change, once the store has committed it (outcome APPLIED)."""
        if outcome is not Outcome.APPLIED or not self.finishes(after):
            return
        before = self.units if self.status.terminal else 0
        added = max(0, thousandths(after.final_unit_deduction) - before)
        metrics.task_finished(after.tenant, after.status.value, added / MILLI)


# --- reading ---


class BadUsageQuery(ValueError):
    """A usage query that cannot be answered: `field` names the parameter, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Period:
    """UTC days, `first` to `last` inclusive."""

    first: date
    last: date

    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]


def parse_day(name: str, raw: str) -> date:
    """The query parameter `name`'s day, written YYYY-MM-DD."""
    if len(raw) != 10 or not raw.isascii() or raw[4] != "-" or raw[7] != "-":
        raise BadUsageQuery(name, f"a day as YYYY-MM-DD; got {raw[:40]!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError as error:
        raise BadUsageQuery(name, f"{raw!r} is not a day: {error}") from None


def period(first: str | None, last: str | None, today: date) -> Period:
    """`from` and `to` as the caller wrote them (None or "": the default), checked. `to` is `today` by
    default, `from` DEFAULT_DAYS - 1 days before `to`; at most MAX_DAYS days in all."""
    end = parse_day("to", last) if last else today
    start = (
        parse_day("from", first)
        if first
        else end - timedelta(days=min(DEFAULT_DAYS - 1, (end - date.min).days))
    )
    if start > end:
        raise BadUsageQuery("from", f"{start} is after `to` ({end})")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadUsageQuery("from", f"at most {MAX_DAYS} days before `to` ({end}); {start} is further back")
    return Period(start, end)


@dataclass
class Tally(activity.FinishedTasks):
    """Tasks by final status, and the units they spent (thousandths)."""

    tasks: dict[str, int] = field(default_factory=lambda: {status.value: 0 for status in FINAL_STATUSES})
    milliunits: int = 0

    @property
    def units(self) -> float:
        return self.milliunits / MILLI

    def add(self, other: Tally) -> None:
        for status, count in other.tasks.items():
            self.tasks[status] += count
        self.milliunits += other.milliunits

    def view(self) -> dict[str, object]:
        return {"tasks": dict(self.tasks), "units": self.units}


def _sum(tallies: list[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.add(tally)
    return total


@dataclass
class DayUsage:
    day: date
    models: dict[str, Tally]  # by model, sorted by name

    @property
    def total(self) -> Tally:
        return _sum(list(self.models.values()))

    def view(self) -> dict[str, object]:
        models = [{"model": model, **tally.view()} for model, tally in self.models.items()]
        return {"day": self.day.isoformat(), **self.total.view(), "models": models}


@dataclass
class TenantUsage:
    tenant: str
    days: list[DayUsage]  # the days that have usage, oldest first

    @property
    def total(self) -> Tally:
        return _sum([day.total for day in self.days])

    @property
    def models(self) -> dict[str, Tally]:
        """Each model's usage over the whole period, by name."""
        found: dict[str, Tally] = {}
        for day in self.days:
            for model, tally in day.models.items():
                found.setdefault(model, Tally()).add(tally)
        return dict(sorted(found.items()))

    def view(self) -> dict[str, object]:
        return {"tenant": self.tenant, **self.total.view(), "days": [day.view() for day in self.days]}


@dataclass
class Report:
    period: Period
    tenants: list[TenantUsage]

    def view(self) -> dict[str, object]:
        return {
            "from": self.period.first.isoformat(),
            "to": self.period.last.isoformat(),
            "tenants": [tenant.view() for tenant in self.tenants],
        }


def report(
    connection: redis.Redis,
    keys: Keys,
    scope: Scope,
    *,
    first: str | None = None,
    last: str | None = None,
    tenant: str | None = None,
) -> Report:
    """The usage `scope` may see, for the days and tenant its caller asked for (raw, as written: checked
    here, BadUsageQuery otherwise), grouped by tenant."""
    within = period(first, last, day_of(now_ms()))
    return Report(within, read(connection, keys, tenants_to_show(connection, keys, scope, tenant), within))


def tenants_to_show(connection: redis.Redis, keys: Keys, scope: Scope, asked: str | None) -> list[str]:
    """The tenants whose usage `scope` asked for: its own; for an admin, `asked`, or every tenant that
    has usage."""
    if asked:
        if not valid_name(asked):
            raise BadUsageQuery("tenant", f"a tenant name is {NAME_RULE}")
        if not scope.sees(asked):
            raise BadUsageQuery("tenant", "only an admin may ask for another tenant's usage")
        return [asked]
    if not scope.admin:
        return [scope.tenant]
    return sorted(name for name in texts(connection.smembers(keys.usage_tenants)) if valid_name(name))


def read(connection: redis.Redis, keys: Keys, tenants: list[str], within: Period) -> list[TenantUsage]:
    """Each tenant's usage in the period, in one round trip; a tenant without any is listed too."""
    days = within.days()
    pipe = connection.pipeline(transaction=False)
    for tenant in tenants:
        for day in days:
            pipe.hgetall(keys.usage(tenant, day.isoformat()))
    hashes = iter(pipe.execute())
    found = []
    for tenant in tenants:
        used = [DayUsage(day, models) for day in days if (models := _models(next(hashes)))]
        found.append(TenantUsage(tenant, used))
    return found


def _models(stored: dict[bytes, bytes]) -> dict[str, Tally]:
    """A field can be below zero: a task that expired before this version counted usage, and finishes
    now, takes back an `expired` it was never counted in. It reads as zero, not as -1."""
    models: dict[str, Tally] = {}
    for raw_field, raw_value in stored.items():
        kind, _, model = text(raw_field).partition(":")
        tally = models.setdefault(model, Tally())
        if kind == UNITS:
            tally.milliunits += max(0, int(raw_value))
        elif kind in tally.tasks:
            tally.tasks[kind] += max(0, int(raw_value))
    return {model: tally for model, tally in sorted(models.items()) if tally.finished or tally.milliunits}
