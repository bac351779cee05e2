"""Reconciliation: the safety net for callbacks that never come.

Kling documents no retry for callbacks, so a task can stay open here forever while it finished long
ago upstream. A pass asks Kling about every open task that has had no news for RECONCILE_AFTER_S and
feeds the answer through `record_news`, exactly like a callback (marked `poll` in the history); each
task is asked about at its own type's path (domain/task_types.py). A task
open longer than TASK_TIMEOUT_S becomes `expired`.

Only one pass runs at a time, however many workers there are (a Redis lock, given back even when
Redis went away mid-pass and came back within RELEASE_PATIENCE_S: otherwise the next pass would wait
for the lock's TTL, a minute and a half, after every short Redis outage); a pass costs
O(due tasks), never O(all tasks) (the `open` index); polls are rate-limited overall and spaced out
per task (each poll that brings nothing new doubles the wait before the next one, up to 15 minutes).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field

import redis

from webhook_service.domain.bounds import stored_body
from webhook_service.domain.clock import now_ms
from webhook_service.domain.lifecycle import expire, record_news, release
from webhook_service.domain.submission import dispatch
from webhook_service.domain.task_types import task_type
from webhook_service.domain.tasks import Outcome, Status, Task, update_from_kling_task
from webhook_service.domain.unified import query_upstream
from webhook_service.integrations.kling import KlingError
from webhook_service.integrations.redis_locks import release_if_held
from webhook_service.services import Services

log = logging.getLogger(__name__)

PASS_LOG_LENGTH = 100
RELEASE_PATIENCE_S = 30.0
MAX_POLL_SPACING_S = 15 * 60


@dataclass
class PassReport:
    ran: bool
    polled: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    dispatched: int = 0


def reconcile(services: Services) -> PassReport:
    """One pass, or nothing when another pass holds the lock."""
    settings = services.settings
    budget = max(1, int(settings.reconcile_interval_s * settings.reconcile_polls_per_s))
    lock_ttl_ms = int((budget / settings.reconcile_polls_per_s + settings.kling_timeout_s + 60) * 1000)
    token = uuid.uuid4().hex
    lock_key, pass_log_key = services.keys.reconcile_lock, services.keys.reconcile_passes
    if not services.redis.set(lock_key, token, nx=True, px=lock_ttl_ms):
        return PassReport(ran=False)
    started = time.time()
    try:
        _requeue_abandoned(services)
        report = PassReport(ran=True, dispatched=dispatch(services))
        for external_task_id in services.open_tasks.due(budget):
            _check(services, external_task_id, report)
            time.sleep(1 / settings.reconcile_polls_per_s)  # the overall rate limit on Kling's query API
        return report
    finally:
        _give_back(services, lock_key, token, pass_log_key, f"{started:.6f}-{time.time():.6f}")


def _give_back(services: Services, lock_key: str, token: str, pass_log_key: str, entry: str) -> None:
    """Release the lock and log the pass, waiting out a short Redis outage (the pass may be ending
    because of one); after RELEASE_PATIENCE_S the lock is left to its TTL."""
    deadline = time.monotonic() + RELEASE_PATIENCE_S
    while True:
        try:
            release_if_held(services.redis, lock_key, token)
            services.redis.lpush(pass_log_key, entry)
            services.redis.ltrim(pass_log_key, 0, PASS_LOG_LENGTH - 1)
            return
        except redis.RedisError as error:
            if time.monotonic() >= deadline:
                log.warning("reconciliation lock left to its TTL: Redis is still away (%s)", error)
                return
            time.sleep(0.5)


def _requeue_abandoned(services: Services) -> None:
    """A sender killed mid-send left its task in a slot: put it back, to be looked up before resending."""
    for external_task_id in services.admission.abandoned(services.settings.kling_timeout_s + 30):
        task = services.store.get(external_task_id)
        if task is not None and task.status is Status.QUEUED:
            services.store.update(external_task_id, _mark_uncertain, history={"event": "send_abandoned"})
            services.admission.put_back(external_task_id, task_type(task.type).pack)
        else:
            pipe = services.redis.pipeline(transaction=True)
            services.admission.sent(pipe, external_task_id)
            pipe.execute()


def _mark_uncertain(task: Task) -> Outcome:
    task.submit_uncertain = True  # the create may have left before the sender died
    return Outcome.DUPLICATE


def _check(services: Services, external_task_id: str, report: PassReport) -> None:
    task = services.store.get(external_task_id)
    if task is None or task.status.terminal:
        pipe = services.redis.pipeline(transaction=True)
        release(services, pipe, external_task_id)
        pipe.execute()
        return
    if now_ms() - task.created_at > services.settings.task_timeout_s * 1000:
        expire(services, external_task_id)
        report.expired.append(external_task_id)
        return
    report.polled.append(external_task_id)
    try:
        data = query_upstream(services.kling.get(), task, task.task_id or external_task_id)
    except KlingError as error:
        log.warning("poll of %s failed: %s", external_task_id, error)
        _space_out(services, external_task_id)
        return
    update = update_from_kling_task(data, max_outputs=services.settings.callback_max_outputs)
    _, outcome = record_news(services, external_task_id, update, source="poll", detail=stored_body(data))
    if outcome is Outcome.APPLIED:
        report.changed.append(external_task_id)
        services.open_tasks.news(external_task_id)
    else:
        _space_out(services, external_task_id)


def _space_out(services: Services, external_task_id: str) -> None:
    """Nothing new: ask again later, each time a little later."""
    polls = services.open_tasks.nothing_new(external_task_id)
    wait_s = min(MAX_POLL_SPACING_S, services.settings.reconcile_after_s * 2 ** (polls - 1))
    services.open_tasks.check_later(services.redis, external_task_id, wait_s)
