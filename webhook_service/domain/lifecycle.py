"""What happens to a task once it exists: news about it is recorded, or it expires.

The web app and the workers share these operations. Every piece of upstream news (create
answer, callback, poll) goes through `record_news`, so it takes the same state machine, leaves the
same kind of history entry and triggers the same follow-up work, whatever brought it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import FOR_STATUS, EventType
from webhook_service.domain.retention import schedule_removal
from webhook_service.domain.store import Repeat
from webhook_service.domain.task_types import task_type
from webhook_service.domain.tasks import Outcome, Status, StatusUpdate, Task, apply_update
from webhook_service.domain.usage import Transition
from webhook_service.jobs import enqueue_archive, wake_dispatch
from webhook_service.notify.routing import raise_event
from webhook_service.services import Services

log = logging.getLogger(__name__)


def record_news(
    services: Services,
    external_task_id: str,
    update: StatusUpdate,
    *,
    source: str,
    detail: dict[str, Any] | None = None,
    check: Callable[[Task], None] | None = None,
) -> tuple[Task, Outcome]:
    """Apply one piece of upstream news to the task, atomically with the work it triggers.

    News the task already has (no step forward, no task_id it does not know) is settled by the store
    in one round trip. Anything else goes through `change`: there `check(task)` sees the task as
    stored before the news is applied, and what it raises refuses the news with nothing recorded.
    """
    transition = Transition()

    def change(task: Task) -> Outcome:
        if check is not None:
            check(task)
        transition.capture(task)
        return apply_update(task, update)

    def follow_up(pipe: Pipeline, after: Task) -> None:
        raise_event(services.redis, pipe, services.settings, services.keys, after, FOR_STATUS[after.status])
        _track(services, pipe, after)
        transition.record(pipe, services.keys, after)
        if after.status is Status.SUCCEED:
            retry_base_s = services.settings.archive_retry_base_s
            enqueue_archive(services.redis, after.external_task_id, retry_base_s=retry_base_s, pipeline=pipe)

    history = {"event": "status", "source": source, "reported_status": update.status.value, **(detail or {})}
    if update.outputs_dropped:
        history["outputs_dropped"] = update.outputs_dropped
        log.warning(
            "%s for %s: %d outputs over CALLBACK_MAX_OUTPUTS left out",
            source,
            external_task_id,
            update.outputs_dropped,
        )
    if update.fields_dropped:
        history["fields_dropped"] = update.fields_dropped
        log.warning(
            "%s for %s: %d fields undocumented or over their caps left out: %s",
            source,
            external_task_id,
            update.fields_dropped["count"],
            ", ".join(update.fields_dropped["names"]),
        )
    task, outcome = services.store.update(
        external_task_id,
        change,
        history=history,
        after_commit=follow_up,
        repeat=Repeat(update.status, update.task_id),
    )
    transition.count(task, outcome)
    _wake_for_freed_slot(services, task, outcome)
    # A change is worth a line; a repeat (most callbacks under retries, most polls) is in the history
    # and the metrics, and at INFO would bury the changes.
    log.log(
        logging.INFO if outcome is Outcome.APPLIED else logging.DEBUG,
        "%s for %s reported %s: %s, task now %s",
        source,
        external_task_id,
        update.status,
        outcome,
        task.status,
    )
    return task, outcome


def expire(services: Services, external_task_id: str) -> tuple[Task, Outcome]:
    """Give up waiting: no news for TASK_TIMEOUT_S. Kling's final word, if it comes, still completes it."""
    timeout_s = services.settings.task_timeout_s
    transition = Transition()

    def change(task: Task) -> Outcome:
        transition.capture(task)
        if task.status.terminal:
            return Outcome.STALE
        task.status = Status.EXPIRED
        task.status_msg = f"no final status from Kling within {timeout_s:.0f} s (TASK_TIMEOUT_S)"
        task.updated_at = now_ms()
        return Outcome.APPLIED

    def follow_up(pipe: Pipeline, after: Task) -> None:
        raise_event(services.redis, pipe, services.settings, services.keys, after, EventType.EXPIRED)
        _track(services, pipe, after)
        transition.record(pipe, services.keys, after)

    task, outcome = services.store.update(
        external_task_id, change, history={"event": "expired", "source": "reconcile"}, after_commit=follow_up
    )
    transition.count(task, outcome)
    _wake_for_freed_slot(services, task, outcome)
    return task, outcome


def _track(services: Services, pipe: Pipeline, task: Task) -> None:
    """Keep the slots and the open-task index in step with the status, in the same transaction."""
    if task.status.terminal:
        release(services, pipe, task.external_task_id)
        schedule_removal(services, pipe, task.external_task_id)
    else:
        services.admission.sent(pipe, task.external_task_id)
        services.open_tasks.check_later(pipe, task.external_task_id, services.settings.reconcile_after_s)


def _wake_for_freed_slot(services: Services, task: Task, outcome: Outcome) -> None:
    """A task that has just become final freed its slot: wake a dispatch if a task waits for one (in
    its pack, or in any when its tenant's max_open, which counts every pack, may have held one back).

    Read after the commit that freed the slot, so no waiting task is missed: one queued later was
    queued with a wake-up of its own (or by a request thread that dispatches), which finds the slot free.
    A wake-up while a dispatch is queued and not started queues none (jobs.wake_dispatch). Most tasks
    finish with nothing waiting, and then no job runs for them. Should the process die between the
    commit and this read, the next reconciliation pass dispatches (RECONCILE_INTERVAL_S).
    """
    if (
        outcome is Outcome.APPLIED
        and task.status.terminal
        and services.admission.has_waiting(task_type(task.type).pack, task.tenant)
    ):
        wake_dispatch(services.redis, services.keys.dispatch_wanted, f"freed-{task.external_task_id}")


def release(services: Services, pipe: Pipeline, external_task_id: str) -> None:
    """The task is final (or gone): free its slot and stop checking on it."""
    services.admission.release(pipe, external_task_id)
    services.open_tasks.closed(pipe, external_task_id)
