"""Deliveries in Redis: one record per (event, sink), every attempt kept, dead letters indexed by time
(keys.py names the keys).

Every change is a WATCH/MULTI transaction that commits together with the job that makes the next
attempt, so a pending delivery always has exactly one job to move it on. The record names that job
(`job`); any other job that finds the record (a duplicate, a stale retry) leaves it alone.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis
from redis.client import Pipeline

from webhook_service.domain import activity
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import NotReplayable
from webhook_service.domain.events import Event
from webhook_service.domain.tenants import EVERYONE, Scope
from webhook_service.jobs import enqueue_delivery
from webhook_service.keys import Keys
from webhook_service.notify import disabled_urls, endpoints
from webhook_service.notify.delivery_index import index_new, index_write, scoped_index, unindex
from webhook_service.notify.records import REPLAYABLE, Delivery, DeliveryStatus, endpoint_id
from webhook_service.notify.sinks import Attempt
from webhook_service.redaction import shown_url
from webhook_service.replies import stored_json, text, texts

ATTEMPTS_KEPT = 100
ANY_JOB = "*"  # not a job id (RQ allows [A-Za-z0-9_-] only)
GIVE_UP_BATCH = 200  # deliveries settled in one transaction when their endpoint is deleted


class DeliveryStore:
    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys
        self._disabled = keys.disabled_endpoints

    def _key(self, delivery_id: str) -> str:
        return self.keys.delivery(delivery_id)

    def _task_index(self, external_task_id: str) -> str:
        return self.keys.task_deliveries(external_task_id)

    # --- events ---

    def save_event(self, event: Event) -> Event:
        """Store the event unless it is already stored; return the stored one (the first build wins)."""
        key = self.keys.event(event.id)
        self.redis.set(key, event.stored(), nx=True)
        return self.event(event.id) or event

    def event(self, event_id: str) -> Event | None:
        raw = self.redis.get(self.keys.event(event_id))
        return Event.from_stored(raw) if raw else None

    # --- reading ---

    def get(self, delivery_id: str, scope: Scope = EVERYONE) -> Delivery | None:
        """The delivery, if `scope` may see it: another tenant's is as absent as a missing one."""
        raw = self.redis.get(self._key(delivery_id))
        delivery = Delivery.from_json(raw) if raw else None
        return delivery if delivery is not None and scope.sees(delivery.tenant) else None

    def attempts(self, delivery_id: str) -> builtins.list[dict[str, Any]]:
        return [
            json.loads(item) for item in self.redis.lrange(self.keys.delivery_attempts(delivery_id), 0, -1)
        ]

    def list(
        self,
        status: DeliveryStatus | None = None,
        since_ms: int | None = None,
        task: str | None = None,
        offset: int = 0,
        limit: int = 50,
        scope: Scope = EVERYONE,
        endpoint: str | None = None,
    ) -> builtins.list[Delivery]:
        """Newest first: by the time they entered `status`, or by creation time without one; only those
        `scope` may see. `task` is an external_task_id as stored (the upstream id); `endpoint` one of
        `scope`'s endpoints (the caller checked)."""
        if task is not None:
            ids = texts(self.redis.smembers(self._task_index(task)))
            found = [d for d in self._load(ids) if status is None or d.status is status]
            found = [d for d in found if endpoint is None or d.endpoint == endpoint]
            found = [d for d in found if scope.sees(d.tenant)]
            found = [d for d in found if since_ms is None or d.updated_at >= since_ms]
            return sorted(found, key=lambda d: d.created_at, reverse=True)[offset : offset + limit]
        low = since_ms if since_ms is not None else "-inf"
        index = scoped_index(self.redis, self.keys, scope, status, endpoint)
        newest = self.redis.zrevrangebyscore(index, "+inf", low, offset, limit)
        return [d for d in self._load(texts(newest)) if scope.sees(d.tenant)]

    def _load(self, ids: builtins.list[str]) -> builtins.list[Delivery]:
        raws = self.redis.mget([self._key(i) for i in ids]) if ids else []
        return [Delivery.from_json(raw) for raw in raws if raw]

    def of_task(self, external_task_id: str) -> builtins.list[Delivery]:
        return self._load(texts(self.redis.smembers(self._task_index(external_task_id))))

    def of_taskless_event(self, event_id: str) -> builtins.list[Delivery]:
        return self._load(texts(self.redis.smembers(self.keys.event_deliveries(event_id))))

    def remove(self, pipe: Pipeline, external_task_id: str, deliveries: builtins.list[Delivery]) -> None:
        """Queue the removal of a task's deliveries, their attempts, their events and index entries."""
        self._remove_each(pipe, deliveries)
        pipe.delete(self._task_index(external_task_id))

    def remove_taskless_event(
        self, pipe: Pipeline, event_id: str, deliveries: builtins.list[Delivery]
    ) -> None:
        """Queue the removal of an event of no task, its deliveries and their attempts."""
        self._remove_each(pipe, deliveries)
        pipe.delete(self.keys.event(event_id), self.keys.event_deliveries(event_id))
        pipe.zrem(self.keys.retention_taskless, event_id)

    def _remove_each(self, pipe: Pipeline, deliveries: builtins.list[Delivery]) -> None:
        for delivery in deliveries:
            pipe.delete(self._key(delivery.id), self.keys.delivery_attempts(delivery.id))
            pipe.delete(self.keys.event(delivery.event_id))
            unindex(pipe, self.keys, delivery)

    # --- changing ---

    def create(self, delivery: Delivery, first_job_at: float | None = None) -> bool:
        """Record a new delivery with its first job (or as skipped, when its endpoint is disabled): run
        now, or at `first_job_at` (epoch seconds) when the caller attempts it itself meanwhile.

        Returns False, changing nothing, when the delivery exists: a second fan-out of one event.
        """
        key = self._key(delivery.id)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key, self._disabled)
                    if pipe.exists(key):
                        return False
                    skipped = self._endpoint_off(pipe, delivery)
                    if skipped:
                        delivery.status, delivery.reason = DeliveryStatus.SKIPPED, "endpoint_disabled"
                    else:
                        delivery.job, delivery.next_attempt_at = delivery.id, delivery.created_at
                    pipe.multi()
                    self._write(pipe, delivery, None)
                    index_new(pipe, self.keys, delivery)
                    if delivery.external_task_id:
                        pipe.sadd(self._task_index(delivery.external_task_id), delivery.id)
                    else:  # an endpoint's own event: retention removes it by itself, not with a task
                        pipe.sadd(self.keys.event_deliveries(delivery.event_id), delivery.id)
                        pipe.zadd(
                            self.keys.retention_taskless, {delivery.event_id: delivery.created_at}, nx=True
                        )
                    if not skipped:
                        enqueue_delivery(self.redis, pipe, delivery.id, delivery.id, first_job_at)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _endpoint_off(self, pipe: Pipeline, delivery: Delivery) -> bool:
        """Whether deliveries to its endpoint are stopped: a tenant's endpoint disabled or deleted, or a
        URL disabled for the delivery's owner after a 410. Read under the caller's WATCH, which takes in
        the endpoint's record."""
        if delivery.endpoint is not None:
            key = self.keys.endpoint(delivery.endpoint)
            pipe.watch(key)
            return pipe.hget(key, "enabled") != b"1"
        if not delivery.as_sink.has_endpoint:
            return False
        return disabled_urls.stops(delivery, pipe.hmget(self._disabled, disabled_urls.fields(delivery)))

    def _write(self, pipe: Pipeline, delivery: Delivery, previous: DeliveryStatus | None) -> None:
        pipe.set(self._key(delivery.id), stored_json(asdict(delivery)))
        index_write(pipe, self.keys, delivery, previous)

    def _update(
        self,
        delivery_id: str,
        change: Callable[[Delivery, Pipeline], bool],
        then: Callable[[Pipeline, Delivery], None] | None = None,
        scope: Scope = EVERYONE,
    ) -> Delivery | None:
        """Apply `change` atomically (it returns False to leave the record alone); `then` adds commands.
        None, changing nothing, for a delivery that is missing or not `scope`'s."""
        changed = self._update_each([delivery_id], change, then, scope)
        return changed[0] if changed else None

    def _update_each(
        self,
        delivery_ids: builtins.list[str],
        change: Callable[[Delivery, Pipeline], bool],
        then: Callable[[Pipeline, Delivery], None] | None = None,
        scope: Scope = EVERYONE,
    ) -> builtins.list[Delivery]:
        """`_update` of several deliveries in one transaction; those changed."""
        keys = [self._key(delivery_id) for delivery_id in delivery_ids]
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*keys, self._disabled)
                    changed = []
                    for raw in pipe.mget(keys):
                        if raw is None:
                            continue
                        delivery = Delivery.from_json(raw)
                        previous = delivery.status
                        if scope.sees(delivery.tenant) and change(delivery, pipe):
                            delivery.updated_at = now_ms()
                            changed.append((delivery, previous))
                    if not changed:
                        return []
                    pipe.multi()
                    for delivery, previous in changed:
                        self._write(pipe, delivery, previous)
                        if then is not None:
                            then(pipe, delivery)
                    pipe.execute()
                    return [delivery for delivery, _ in changed]
                except redis.WatchError:
                    continue

    def record_attempt(
        self,
        delivery_id: str,
        job_id: str | None,
        attempt: Attempt,
        status: DeliveryStatus,
        reason: str | None = None,
        retry_at: float | None = None,
    ) -> Delivery | None:
        """Keep the attempt and move on: delivered, failed (a dead letter), or pending with its next job.
        The attempt counts in its hour's activity (domain/activity.py), delivered or not."""

        traced = False  # whether the attempt is traced on its endpoint (notify/endpoints.py)

        def change(delivery: Delivery, pipe: Pipeline) -> bool:
            nonlocal traced
            if delivery.job != job_id:
                return False  # another job owns this delivery now
            if delivery.endpoint is not None:
                pipe.watch(self.keys.endpoint(delivery.endpoint))
                traced = bool(pipe.exists(self.keys.endpoint(delivery.endpoint)))
            delivery.attempts += 1
            delivery.tries += 1
            delivery.status, delivery.reason = status, reason
            delivery.last_error = attempt.error or (
                None if status is DeliveryStatus.DELIVERED else f"HTTP {attempt.status_code}"
            )
            delivery.job = delivery.next_job_id() if status is DeliveryStatus.PENDING else None
            delivery.next_attempt_at = round(retry_at * 1000) if retry_at is not None else None
            if status is DeliveryStatus.DELIVERED:
                delivery.delivered_at = attempt.at
            elif status is DeliveryStatus.FAILED:
                delivery.failed_at = now_ms()
            return True

        def then(pipe: Pipeline, delivery: Delivery) -> None:
            attempts = self.keys.delivery_attempts(delivery.id)
            pipe.rpush(attempts, stored_json(attempt.record()))
            pipe.ltrim(attempts, -ATTEMPTS_KEPT, -1)
            delivered = status is DeliveryStatus.DELIVERED
            activity.attempt_made(pipe, self.keys, delivery.tenant, delivered)
            if traced and delivery.endpoint is not None:
                endpoints.attempt_made(
                    pipe,
                    self.keys,
                    delivery.endpoint,
                    {**attempt.record(), "delivery_id": delivery.id, "event_type": delivery.event_type},
                    delivered,
                )
            if reason == "gone" and delivery.endpoint is None:  # a tenant's endpoint: notify/send.py
                self._disable(pipe, delivery, attempt)
            if delivery.job is not None:
                enqueue_delivery(self.redis, pipe, delivery.id, delivery.job, retry_at)

        return self._update(delivery_id, change, then)

    def skip(self, delivery_id: str, job_id: str | None, reason: str) -> Delivery | None:
        return self._stop(delivery_id, job_id, DeliveryStatus.SKIPPED, reason)

    def give_up(self, delivery_id: str, job_id: str | None, reason: str) -> Delivery | None:
        """A dead letter with no attempt made: its endpoint was disabled while it waited."""
        return self._stop(delivery_id, job_id, DeliveryStatus.FAILED, reason)

    def give_up_pending(
        self, endpoint_id: str, reason: str, batch: int = GIVE_UP_BATCH
    ) -> builtins.list[str]:
        """Every pending delivery to a tenant's endpoint becomes a dead letter (its jobs then find
        nothing to do); replayable once the endpoint is enabled again. Returns their ids.

        One transaction a `batch`, not one a delivery: an endpoint that failed for days has tens of
        thousands pending, and its DELETE request settles them all (bench/endpoint_delete.py)."""
        pending = sorted(texts(self.redis.smembers(self.keys.endpoint_pending(endpoint_id))))
        change = _stopping(ANY_JOB, DeliveryStatus.FAILED, reason)
        given_up = []
        for start in range(0, len(pending), batch):
            given_up += [d.id for d in self._update_each(pending[start : start + batch], change)]
        return given_up

    def _stop(
        self, delivery_id: str, job_id: str | None, status: DeliveryStatus, reason: str
    ) -> Delivery | None:
        """Stop a pending delivery whose next job is `job_id` (ANY_JOB: whichever it is)."""
        return self._update(delivery_id, _stopping(job_id, status, reason))

    def follow(self, delivery_id: str, job_id: str | None, url: str) -> Delivery | None:
        """Its endpoint's URL changed since it was recorded (`PATCH /v1/endpoints/<id>`): the record now
        says where its next attempt goes. None when another job owns it."""

        def change(delivery: Delivery, _: Pipeline) -> bool:
            if delivery.job != job_id:
                return False
            delivery.target = url
            return True

        return self._update(delivery_id, change)

    def postpone(
        self, delivery_id: str, job_id: str | None, then: Callable[[Pipeline, Delivery], None]
    ) -> Delivery | None:
        """Put a pending delivery back to wait its turn at its sink (notify/turns.py), which is not an
        attempt and no failure. It has no job of its own meanwhile: `then` adds, in the same transaction,
        what starts it when its turn comes, under the job id it is given here."""

        def change(delivery: Delivery, _: Pipeline) -> bool:
            if delivery.status is not DeliveryStatus.PENDING or delivery.job != job_id:
                return False
            delivery.waits += 1
            delivery.job, delivery.next_attempt_at = delivery.next_job_id(), now_ms()
            return True

        return self._update(delivery_id, change, then)

    def replay(self, delivery_id: str, scope: Scope = EVERYONE) -> Delivery | None:
        """Send a dead letter (or a skipped delivery) again now, from the start of the schedule, as the
        same event: same payload, same `webhook-id`. None when there is no such delivery (for `scope`)."""

        def change(delivery: Delivery, pipe: Pipeline) -> bool:
            if delivery.status not in REPLAYABLE:
                raise NotReplayable(
                    f"delivery {delivery.id} is {delivery.status.value}: not failed or skipped"
                )
            if delivery.endpoint is not None and self._endpoint_off(pipe, delivery):
                raise NotReplayable(
                    f"endpoint {delivery.endpoint} is disabled or deleted; enable it first "
                    '(PATCH /v1/endpoints/<id> {"enabled": true})'
                )
            if self._endpoint_off(pipe, delivery):
                raise NotReplayable(
                    f"endpoint {endpoint_id(delivery.target)} ({shown_url(delivery.target)}) is disabled; "
                    "enable it first (DELETE /v1/deliveries/disabled-endpoints/<endpoint>)"
                )
            delivery.replays += 1
            delivery.status, delivery.reason, delivery.tries = DeliveryStatus.PENDING, None, 0
            delivery.job, delivery.next_attempt_at = delivery.next_job_id(), now_ms()
            return True

        def then(pipe: Pipeline, delivery: Delivery) -> None:
            assert delivery.job is not None
            enqueue_delivery(self.redis, pipe, delivery.id, delivery.job)

        return self._update(delivery_id, change, then, scope)

    def replay_since(
        self,
        since_ms: int,
        status: DeliveryStatus = DeliveryStatus.FAILED,
        scope: Scope = EVERYONE,
        endpoint: str | None = None,
    ) -> tuple[builtins.list[str], dict[str, str]]:
        """Replay every delivery (of `scope`; to `endpoint` only, when named) that entered `status` at
        or after `since_ms`: (replayed, not replayed)."""
        replayed: builtins.list[str] = []
        refused: dict[str, str] = {}
        index = scoped_index(self.redis, self.keys, scope, status, endpoint)
        for raw_id in self.redis.zrangebyscore(index, since_ms, "+inf"):
            delivery_id = text(raw_id)
            try:
                if self.replay(delivery_id, scope) is not None:
                    replayed.append(delivery_id)
            except NotReplayable as error:
                refused[delivery_id] = str(error)
        return replayed, refused

    # --- disabled endpoints (notify/disabled_urls.py) ---

    def _disable(self, pipe: Pipeline, delivery: Delivery, attempt: Attempt) -> None:
        pipe.hset(self._disabled, *disabled_urls.entry(delivery, attempt))

    def is_disabled(self, delivery: Delivery) -> bool:
        """Whether the delivery's URL is disabled for its owner (its tenant, or the operator)."""
        return disabled_urls.stops(delivery, self.redis.hmget(self._disabled, disabled_urls.fields(delivery)))

    def disabled_endpoints(self, scope: Scope = EVERYONE) -> builtins.list[dict[str, Any]]:
        entries = disabled_urls.read(self.redis.hgetall(self._disabled))
        return [entry.view() for entry in entries if entry.visible(scope)]

    def enable(self, endpoint: str, scope: Scope = EVERYONE) -> bool:
        """Enable deliveries to an endpoint again, named by its URL or its `ep_...` id: every entry of it
        `scope` sees (an admin's, every tenant's), and no other."""
        entries = disabled_urls.read(self.redis.hgetall(self._disabled))
        names = [entry.field for entry in entries if entry.named(endpoint) and entry.visible(scope)]
        return bool(names) and bool(self.redis.hdel(self._disabled, *names))


def _stopping(
    job_id: str | None, status: DeliveryStatus, reason: str
) -> Callable[[Delivery, Pipeline], bool]:
    """The change that stops a pending delivery whose next job is `job_id` (ANY_JOB: whichever it is)."""

    def change(delivery: Delivery, _: Pipeline) -> bool:
        if delivery.status is not DeliveryStatus.PENDING or job_id not in (ANY_JOB, delivery.job):
            return False
        delivery.status, delivery.reason = status, reason
        delivery.job = delivery.next_attempt_at = None
        if status is DeliveryStatus.FAILED:
            delivery.failed_at = now_ms()
        return True

    return change
