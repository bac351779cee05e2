"""A task's events in the order they happened, which its deliveries to one sink keep (notify/turns.py).

That order is the task's list of event-log entries (notify/event_log.py): each is appended in the commit
of the change it reports, and a task's changes commit one at a time (each watches the task). It holds
however close together two events came and whatever the clocks of the processes that raised them said,
where `raised_at` (milliseconds, by the raising process's clock) can tie or disagree.

Turns hold a delivery while an earlier event's delivery to its sink is pending, which needs the earlier
delivery to exist first. Each event's fan-out is its own job, though, and one of a task's may run before
an earlier one's: two workers take two events raised milliseconds apart, or the earlier one crashed and
waits for its RQ retry. So a fan-out first sees every earlier event of its task fanned out: one whose job
is queued or scheduled it fans out itself, at once (a fan-out is idempotent: that job, when it runs,
finds the deliveries made). So does one whose job another worker is running: that worker may be
alive and about to finish, or dead in it, its job left "started" until RQ finds it abandoned minutes
later. Waiting could not tell the two apart, and two fan-outs of one event at once are harmless (its
payload is stored once, each delivery is created once, in a transaction), so it never waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from webhook_service.domain.tasks import Task
from webhook_service.jobs import still_to_run
from webhook_service.notify.event_log import EventLog
from webhook_service.notify.records import Delivery

log = logging.getLogger(__name__)

# Fans out one earlier event of the task: its id, type and when it was raised.
FanOut = Callable[[str, str, datetime], object]


def earlier_fan_outs_first(
    connection: redis.Redis, events: EventLog, task: Task, event_id: str, fan_out: FanOut
) -> datetime | None:
    """Return once every event of `task` recorded before `event_id` is fanned out, oldest first, or its
    fan-out failed here (its own job retries it).

    Returns when `event_id` was recorded, by the log (None when the log no longer holds it): the time
    its payload says it was raised, whenever its fan-out runs. The job's own `enqueued_at` would say
    when RQ last queued it, which for a retried fan-out is the retry's time."""
    logged = events.of_task(task.tenant, task.external_task_id)
    ids = [event["id"] for event in logged]
    if event_id not in ids:
        return None  # not in the log (any more): nothing to order it by
    place = ids.index(event_id)
    for earlier in logged[:place]:
        _fanned_out(connection, earlier, event_id, fan_out)
    return datetime.fromtimestamp(logged[place]["at"] / 1000, UTC) if logged[place]["at"] else None


def _fanned_out(connection: redis.Redis, earlier: dict[str, Any], later_id: str, fan_out: FanOut) -> None:
    the_id = earlier["id"]  # its fan-out job's id too; no job: no sink wanted it, or it has run
    if not still_to_run(connection, the_id):
        return
    try:
        fan_out(the_id, earlier["type"], datetime.fromtimestamp(earlier["at"] / 1000, UTC))
    except Exception:  # its own job is retried by RQ; the later event must not wait for that
        log.warning("event %s: the earlier %s failed to fan out", later_id, the_id, exc_info=True)


def positions(events: EventLog, tenant: str, external_task_id: str) -> dict[str, int]:
    """Each event of the task still in the log, by id: its place in the order they happened."""
    return {event["id"]: place for place, event in enumerate(events.of_task(tenant, external_task_id))}


def came_before(one: Delivery, other: Delivery, places: dict[str, int]) -> bool:
    """Whether `one`'s event happened before `other`'s (both of one task): by their places in the task's
    log, else (an event the log no longer holds) by when they were raised, ties by delivery id."""
    if one.event_id in places and other.event_id in places:
        return places[one.event_id] < places[other.event_id]
    return (one.raised_at, one.id) < (other.raised_at, other.id)
