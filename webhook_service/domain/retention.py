"""Retention: a finished task leaves Redis TASK_RETENTION_S after it is settled, with all it owns.

Settled means: final status, archive done or failed (for a task that succeeded), and every delivery
delivered, or failed or skipped for longer than DEAD_LETTER_RETENTION_S (until then a dead letter can
still be replayed). Open tasks never leave. The clock starts at the task's last change of status or
archive state (`updated_at`): it leaves at the later of that + TASK_RETENTION_S and each dead letter's
last change + DEAD_LETTER_RETENTION_S.

A pruning job, not Redis TTLs: a task owns members of shared indexes (the newest-first list, the
deliveries by status) that no TTL can remove, and TTLs would have to be pushed back on every key of a
task whenever anything about it changed. Instead a task enters one time index (`retention`) when it
becomes final, at the moment it may go; each pass takes only the entries that are due (O(log n + due)),
checks that the task is settled, and either removes everything it owns in one transaction or puts it
back at the moment it could be settled. A pass never scans. The archive is the long-term record: its
files and metadata.json stay (ARCHIVE_RETENTION_DAYS, off by default, prunes them on disk).

An event of no task (`endpoint.disabled`) has its own index, by creation time: it leaves with its
deliveries TASK_RETENTION_S after it was raised, once they are settled as a task's would be. Its entry
in the tenant's event log leaves TASK_RETENTION_S after it was recorded, by a time index of its own
(notify/event_log.py): a pass reads only the entries that are due.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.domain.tasks import ArchiveState, Status, Task
from webhook_service.domain.tenant_backfill import backfill_step
from webhook_service.keys import Keys
from webhook_service.notify.records import Delivery, DeliveryStatus
from webhook_service.replies import scored, text_or_none, texts
from webhook_service.services import Services

log = logging.getLogger(__name__)

BATCH = 200
BACKFILL_STEP = 1000
PASS_BUDGET_S = 20.0  # a pass stops taking new batches after this; the next pass goes on
# An unsettled task is looked at again after this (or at its next delivery attempt, if later): its
# removal is then at most this late, and a task that takes hours to settle costs one look a minute.
RECHECK_S = 60.0
NOTICE_MIN_S = 7 * 86400  # a removal notice lasts a retention period, and at least this


@dataclass
class PruneReport:
    removed: list[str] = field(default_factory=list)
    postponed: list[str] = field(default_factory=list)
    archive_days_removed: int = 0


def schedule_removal(services: Services, pipe: Pipeline, external_task_id: str) -> None:
    """The task is final: it may go TASK_RETENTION_S from now (a later final word starts it again)."""
    when = now_ms() + int(services.settings.task_retention_s * 1000)
    pipe.zadd(services.keys.retention, {external_task_id: when})


def prune(services: Services) -> PruneReport:
    """Remove the tasks whose time has come, in batches, for at most PASS_BUDGET_S."""
    report = PruneReport()
    started = time.monotonic()
    _backfill_step(services)
    backfill_step(services)  # tenants' own indexes, once (domain/tenant_backfill.py)
    while time.monotonic() - started < PASS_BUDGET_S:
        due = texts(services.redis.zrangebyscore(services.keys.retention, 0, now_ms(), start=0, num=BATCH))
        for external_task_id in due:
            _prune_one(services, external_task_id, report)
        if len(due) < BATCH:
            break
    _prune_taskless_events(services, report)
    _prune_taskless_log_entries(services, started)
    if services.settings.archive_retention_days > 0:
        report.archive_days_removed = services.storage.remove_days_before(
            time.time() - services.settings.archive_retention_days * 86400
        )
    if report.removed or report.postponed:
        log.info("retention: removed %d tasks, postponed %d", len(report.removed), len(report.postponed))
    return report


def _backfill_step(services: Services) -> None:
    """Tasks that finished before retention existed have no entry in its index: walk the task list
    once, a slice per pass, by creation time, and give each final one its entry. Done once per Redis,
    then a single GET per pass. The cursor is a creation time, not an offset, which pruning would shift."""
    keys = services.keys
    cursor = text_or_none(services.redis.get(keys.retention_backfill))
    if cursor == "done":
        return
    low = cursor or "-inf"
    page = scored(
        services.redis.zrangebyscore(keys.tasks, low, "+inf", start=0, num=BACKFILL_STEP, withscores=True)
    )
    retention_ms = int(services.settings.task_retention_s * 1000)
    pipe = services.redis.pipeline(transaction=True)
    for task in services.store.many([member for member, _ in page]):
        if task.status.terminal:  # nx: an entry made since then is the better one
            pipe.zadd(keys.retention, {task.external_task_id: task.updated_at + retention_ms}, nx=True)
    if len(page) < BACKFILL_STEP:
        following = "done"
    else:
        # The last creation time is read again next pass (nx makes that harmless); a page that is one
        # instant throughout moves past it, so the walk always ends.
        first, last = page[0][1], page[-1][1]
        following = f"({last!r}" if first == last else repr(last)
    pipe.set(keys.retention_backfill, following)
    pipe.execute()


def _prune_one(services: Services, external_task_id: str, report: PruneReport) -> None:
    keys = services.keys
    with services.redis.pipeline(transaction=True) as pipe:
        try:
            # Anything that changes the task or its deliveries meanwhile (a late callback, a new
            # delivery, a replay, an attempt) aborts the removal; the next pass looks again.
            pipe.watch(keys.task(external_task_id), keys.task_deliveries(external_task_id))
            task = services.store.get(external_task_id)
            if task is None:
                pipe.multi()
                pipe.zrem(keys.retention, external_task_id)
                pipe.execute()
                return
            _watch_deliveries(pipe, keys, keys.task_deliveries(external_task_id))
            deliveries = services.deliveries.of_task(external_task_id)
            settled_at = _settled_at(services, task, deliveries)
            pipe.multi()
            if settled_at is None or settled_at > now_ms():
                later = settled_at if settled_at is not None else _next_look(deliveries)
                pipe.zadd(keys.retention, {external_task_id: later})
                pipe.execute()
                report.postponed.append(external_task_id)
                return
            notice = json.dumps(
                {"removed_at": now_ms(), "external_task_id": external_task_id, "tenant": task.tenant}
            )
            notice_ttl_s = max(NOTICE_MIN_S, int(services.settings.task_retention_s))
            services.store.remove(pipe, task, notice, notice_ttl_s)
            services.deliveries.remove(pipe, external_task_id, deliveries)
            _leave_turns(pipe, keys, deliveries)
            services.events.remove(pipe, task)
            pipe.zrem(keys.retention, external_task_id)
            pipe.execute()
            report.removed.append(external_task_id)
        except redis.WatchError:
            return


def _prune_taskless_events(services: Services, report: PruneReport) -> None:
    """Events of no task raised more than TASK_RETENTION_S ago: few (one per disabled endpoint), so one
    batch a pass. The index's score is the creation time; a postponed event gets the score that makes
    it due at the moment it could be settled."""
    keys, retention_ms = services.keys, int(services.settings.task_retention_s * 1000)
    due = services.redis.zrangebyscore(
        keys.retention_taskless, 0, now_ms() - retention_ms, start=0, num=BATCH
    )
    for event_id in texts(due):
        with services.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(keys.event_deliveries(event_id))
                _watch_deliveries(pipe, keys, keys.event_deliveries(event_id))
                deliveries = services.deliveries.of_taskless_event(event_id)
                settled_at = _deliveries_settled_at(services, deliveries, now_ms())
                pipe.multi()
                if settled_at is None or settled_at > now_ms():
                    later = settled_at if settled_at is not None else _next_look(deliveries)
                    pipe.zadd(keys.retention_taskless, {event_id: later - retention_ms})
                    report.postponed.append(event_id)
                else:
                    services.deliveries.remove_taskless_event(pipe, event_id, deliveries)
                    _leave_turns(pipe, keys, deliveries)
                    report.removed.append(event_id)
                pipe.execute()
            except redis.WatchError:
                continue


def _watch_deliveries(pipe: Pipeline, keys: Keys, index: str) -> None:
    """WATCH each delivery record of `index` (itself watched already), before they are read: a replay
    or an attempt writes the record alone, not the index, and a removal that did not watch the record
    would delete a dead letter replayed between the read and the removal, and the replay with it."""
    delivery_ids = texts(pipe.smembers(index))
    if delivery_ids:
        pipe.watch(*(keys.delivery(delivery_id) for delivery_id in delivery_ids))


def _leave_turns(pipe: Pipeline, keys: Keys, deliveries: list[Delivery]) -> None:
    """A delivery settled while it waited its turn (a dead letter when its endpoint was disabled) may
    still be among its target's waiting ones (notify/turns.py) until a drain passes: not after it is gone."""
    for delivery in deliveries:
        pipe.zrem(keys.turn_waiting(delivery.turn_target), delivery.id)


def _prune_taskless_log_entries(services: Services, started: float) -> None:
    """The event log's entries of no task recorded more than TASK_RETENTION_S ago, a batch at a time
    within the pass's budget."""
    before = now_ms() - int(services.settings.task_retention_s * 1000)
    while services.events.remove_taskless_before(before, BATCH) == BATCH:
        if time.monotonic() - started >= PASS_BUDGET_S:
            return


def _next_look(deliveries: list[Delivery]) -> int:
    attempts = [d.next_attempt_at or 0 for d in deliveries if d.status is DeliveryStatus.PENDING]
    return max([now_ms() + int(RECHECK_S * 1000), *attempts])


def _settled_at(services: Services, task: Task, deliveries: list[Delivery]) -> int | None:
    """When the task is (or will be) settled, in epoch ms; None while it waits on something that has
    no set time (still open, an archive or a delivery under way)."""
    if not task.status.terminal:
        return None
    archive_settled = task.archive_state in (ArchiveState.ARCHIVED, ArchiveState.FAILED)
    if task.status is Status.SUCCEED and not archive_settled:
        return None
    return _deliveries_settled_at(
        services, deliveries, task.updated_at + int(services.settings.task_retention_s * 1000)
    )


def _deliveries_settled_at(
    services: Services, deliveries: list[Delivery], at_the_earliest: int
) -> int | None:
    """None while a delivery is pending; else `at_the_earliest`, or later while a dead letter is young."""
    settled = at_the_earliest
    dead_letter_ms = int(services.settings.dead_letter_retention_s * 1000)
    for delivery in deliveries:
        if delivery.status is DeliveryStatus.PENDING:
            return None
        if delivery.status is not DeliveryStatus.DELIVERED:  # a dead letter, replayable for a while
            settled = max(settled, delivery.updated_at + dead_letter_ms)
    return settled
