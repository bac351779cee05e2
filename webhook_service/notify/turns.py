"""Whose turn it is at a sink: checked before every attempt at one, whatever its kind.

A sink here is a *target*: a tenant's endpoint (notify/endpoints.py), or any other sink's URL (a task's
`callback_url`, an operator's webhook, Slack) or email recipients, for one tenant. Every one takes turns:
a `callback_url` is the client's to choose, so without turns any client could make every worker hang.

- **Order.** For one task and one target, events go in the order they happened: a delivery waits
  while an earlier event of its task is still pending for the same target (being retried, or waiting
  itself), until that one is delivered or dead. A receiver never sees `task.archived` before the
  `task.succeeded` it follows. Which event is earlier is the order the task's log recorded them in
  (notify/event_order.py), not `raised_at`, which ties within a millisecond; and the earlier event's
  delivery exists by then, because a fan-out first fans out its task's earlier events whose fan-out
  has not ended (there too, with its one limit: an earlier fan-out that fails with an error is not
  waited for). The cost: one failing event holds back its task's later
  events at that target for as long as it is retried (up to the whole schedule), and each attempt
  reads the task's deliveries (one SMEMBERS and one MGET), and its log entries (one LRANGE, then its
  entries in one pipeline) when another of its events is pending at the same target.
- **One at a time.** At most one attempt per target is in flight (a lock with a TTL of the longest an
  attempt can take, so a worker that dies holding it holds it no longer). Jobs do not wait for the
  lock: they step aside and come back. So a target that hangs holds one worker at most, for at most
  NOTIFY_TIMEOUT_S, and every other target's deliveries go on with the other workers (as many
  targets hanging at once as there are workers still hold them all).
- **Rate.** At a tenant's endpoint with a `rate_limit_per_s` r, attempts start at r a second over any
  stretch of time, fractions honoured (1.5 is three every two seconds), with at most ceil(r) at once
  after a pause: a token bucket of ceil(r) attempts refilled at r a second, kept in Redis as the one time
  at which it is full again (GCRA: one key, one script, Redis's clock for every worker). The bucket
  holds a whole second's attempts because a waiting delivery's drain comes on a whole second (RQ's
  scheduler): a bucket of one would let one attempt through a second whatever the rate.

A delivery that must wait joins its target's waiting deliveries (a sorted set, in the order their
events were raised) with no job of its own: not an attempt, not a failure, nothing dropped. One drain
job a target starts them (notify/drain.py), when the attempt in flight ends, the rate lets the next go, or
within 2 x FALLBACK_S at the latest; a delivery that comes while others wait joins them, so they go in turn.
A target with a thousand deliveries waiting costs a drain job a second at most, not a thousand jobs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.integrations.redis_locks import release_if_held
from webhook_service.jobs import enqueue_drain
from webhook_service.keys import Keys
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.endpoints import Endpoint
from webhook_service.notify.event_log import EventLog
from webhook_service.notify.event_order import came_before, positions
from webhook_service.notify.records import SINK_TARGET_PREFIX, Delivery, DeliveryStatus
from webhook_service.replies import texts

WAIT_S = 1.0  # RQ's scheduler looks for due jobs every second: a shorter wait comes no sooner
# A drain comes within twice this after a delivery waits, whatever it waits for: the attempt in flight
# and an earlier event's delivery wake it sooner when they end, unless their worker died.
FALLBACK_S = 30.0
HEADS = 100  # waiting deliveries a drain looks through for one that may go (the rest: its next run)
LOCK_MARGIN_S = 5.0  # beyond NOTIFY_TIMEOUT_S: the attempt's own bookkeeping
# The rate (GCRA). KEYS[1]: when the endpoint's bucket is full again (epoch ms); ARGV: the interval
# between attempts (ms, 1/rate) and the bucket's size. Returns 0 when an attempt may start now (and
# takes its place), else when one may (epoch ms). Redis's clock, so workers' clocks need not agree.
_RATE = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local full_at = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local opens = full_at - (burst - 1) * interval
if opens > now then
  return math.ceil(opens)
end
full_at = full_at + interval
redis.call('SET', KEYS[1], string.format('%.3f', full_at), 'PX', math.ceil(full_at - now) + 1000)
return 0
"""


@dataclass(frozen=True)
class Target:
    """Where a delivery takes its turns: `name` says it in logs (an endpoint's id, else `sk_...`, which
    shows no URL), `busy` is the key of its attempt in flight, `waiting` of the deliveries waiting."""

    name: str
    busy: str
    waiting: str
    rate_limit_per_s: float | None = None


class Wait(NamedTuple):
    why: str
    drain_at: float  # when the target's drain should look again (epoch seconds)
    of_rate: bool = False  # the rate limit's: nothing but time opens it


class Turns:
    def __init__(
        self, connection: redis.Redis, keys: Keys, deliveries: DeliveryStore, events: EventLog
    ) -> None:
        self.redis = connection
        self.keys = keys
        self.deliveries = deliveries
        self.events = events

    def target(self, name: str, endpoint: Endpoint | None) -> Target:
        """The target `name` (a delivery's `turn_target`): another sink's, or a tenant's endpoint, with
        the rate limit of `endpoint` (None: deleted since)."""
        if name.startswith(SINK_TARGET_PREFIX):
            return Target(name, self.keys.sink_busy(name), self.keys.turn_waiting(name))
        limit = endpoint.rate_limit_per_s if endpoint is not None else None
        return Target(name, self.keys.endpoint_busy(name), self.keys.turn_waiting(name), limit)

    def wait_for(self, delivery: Delivery, target: Target, job_id: str, attempt_s: float) -> Wait | None:
        """Why `delivery` must wait, or None when it may go now, holding the target's turn (to be
        given back with `release`)."""
        if self._earlier_pending(delivery):
            return Wait("an earlier event of its task is still pending there", fallback_at())
        if self.redis.exists(target.waiting):
            return Wait("other deliveries wait there before it", time.time() + WAIT_S)
        return self.take(target, job_id, attempt_s)

    def take(self, target: Target, job_id: str, attempt_s: float) -> Wait | None:
        """Take the target's turn for `job_id` (None), or say why not and when to look again."""
        if not self.redis.set(target.busy, job_id, nx=True, px=math.ceil((attempt_s + LOCK_MARGIN_S) * 1000)):
            left_s = max(0, int(self.redis.pttl(target.busy))) / 1000  # the same end for every waiter
            ends_at = time.time() + left_s if left_s < FALLBACK_S else fallback_at()
            return Wait("another attempt there is in flight", ends_at)
        limit = target.rate_limit_per_s
        if limit is not None and (opens_at := self._over_rate(target.name, limit)) is not None:
            release_if_held(self.redis, target.busy, job_id)
            return Wait(f"over its rate limit of {limit:g} per second", opens_at, of_rate=True)
        return None

    def park(self, delivery: Delivery, target: Target, job_id: str | None, wait: Wait) -> None:
        """Put `delivery` among the target's waiting deliveries, with its drain scheduled, in one
        transaction with the record (`DeliveryStore.postpone`)."""

        def then(pipe: Pipeline, parked: Delivery) -> None:
            pipe.zadd(target.waiting, {parked.id: parked.raised_at})  # _earlier_pending says who goes first
            enqueue_drain(self.redis, pipe, target.name, wait.drain_at)

        self.deliveries.postpone(delivery.id, job_id, then)
        if not self.redis.exists(target.busy):  # the turn was given back before it joined: no one woke
            self.wake(target, time.time())

    def release(self, target: Target, job_id: str, *, wake: bool = True) -> None:
        """Give the turn back; with `wake`, the target's waiting deliveries get it next."""
        release_if_held(self.redis, target.busy, job_id)
        if wake and self.redis.exists(target.waiting):
            self.wake(target, time.time())

    def wake(self, target: Target, at: float) -> None:
        """Schedule the target's drain at `at` (epoch seconds)."""
        with self.redis.pipeline(transaction=True) as pipe:
            enqueue_drain(self.redis, pipe, target.name, at)
            pipe.execute()

    def next_waiting(self, target: Target) -> Delivery | None:
        """The first delivery waiting at `target` that may go, in the order their events were raised;
        those no longer waiting (settled, or with a job of their own again) leave the set."""
        for delivery_id in texts(self.redis.zrange(target.waiting, 0, HEADS - 1)):
            delivery = self.deliveries.get(delivery_id)
            if (
                delivery is None
                or delivery.status is not DeliveryStatus.PENDING
                or (delivery.next_attempt_at or 0) > now_ms()
            ):
                self.redis.zrem(target.waiting, delivery_id)
            elif not self._earlier_pending(delivery):
                return delivery
        return None

    def _earlier_pending(self, delivery: Delivery) -> bool:
        if not delivery.external_task_id:
            return False
        sink = delivery.as_sink.key  # a task is one tenant's: within it, the sink's key names the target
        pending = [
            other
            for other in self.deliveries.of_task(delivery.external_task_id)
            if other.as_sink.key == sink
            and other.status is DeliveryStatus.PENDING
            and other.event_id != delivery.event_id
        ]
        if not pending:
            return False
        places = positions(self.events, delivery.tenant, delivery.external_task_id)
        return any(came_before(other, delivery, places) for other in pending)

    def _over_rate(self, endpoint_id: str, per_s: float) -> float | None:
        """None when an attempt may start now at `per_s` (it is counted), else when one may (epoch s)."""
        burst = max(1, math.ceil(per_s))
        opens_ms = self.redis.register_script(_RATE)(
            keys=[self.keys.endpoint_rate(endpoint_id)], args=[1000 / per_s, burst]
        )
        return int(opens_ms) / 1000 if int(opens_ms) else None


def fallback_at() -> float:
    """The next FALLBACK_S boundary at least FALLBACK_S away (epoch seconds): every delivery that waits
    meanwhile shares that one drain, rather than each asking for its own second."""
    return (math.floor(time.time() / FALLBACK_S) + 2) * FALLBACK_S
