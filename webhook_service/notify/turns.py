"""Whose turn it is at a sink: checked before every attempt at one, whatever its kind.

A sink here is a *target*: a tenant's endpoint (notify/endpoints.py), or any other sink's URL (a task's
`callback_url`, an operator's webhook, Slack) or email recipients, for one tenant. Every one takes turns:
a `callback_url` is the client's to choose, so without turns any client could make every worker hang.

- **Order.** For one task and one target, events go in the order they were raised: a delivery waits
  while an earlier event of its task is still pending for the same target (being retried, or waiting
  itself), until that one is delivered or dead. A receiver never sees `task.archived` before the
  `task.succeeded` it follows. The cost: one failing event holds back its task's later events at that
  target for as long as it is retried (up to the whole schedule), and each attempt reads the task's
  deliveries (one SMEMBERS and one MGET).
- **One at a time.** At most one attempt per target is in flight (a lock with a TTL of the longest an
  attempt can take, so a worker that dies holding it holds it no longer). Jobs do not wait for the
  lock: they step aside and come back. So a target that hangs holds one worker at most, for at most
  NOTIFY_TIMEOUT_S, and every other target's deliveries go on with the other workers (as many
  targets hanging at once as there are workers still hold them all).
- **Rate.** At a tenant's endpoint with a `rate_limit_per_s`, at most that many attempts start in each
  window (a second, or 1/rate seconds below one per second).

A delivery that must wait is put back (`DeliveryStore.postpone`), to come back after WAIT_S: not an
attempt, not a failure, nothing dropped. A wait costs a job run (a short one, in the worker's own
process), so a target with many deliveries waiting costs that many small jobs a second.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import redis

from webhook_service.domain.clock import now_ms
from webhook_service.keys import Keys
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.endpoints import Endpoint
from webhook_service.notify.records import Delivery, DeliveryStatus

WAIT_S = 1.0  # RQ's scheduler looks for due jobs every second: a shorter wait comes no sooner
LOCK_MARGIN_S = 5.0  # beyond NOTIFY_TIMEOUT_S: the attempt's own bookkeeping
# Deletes the lock only if it is still the caller's: one that outlived its TTL may be another's now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Target:
    """Where a delivery takes its turns: `name` says it in logs (an endpoint's id, else `sk_...`, which
    shows no URL), `busy` is the key of its attempt in flight."""

    name: str
    busy: str
    rate_limit_per_s: float | None = None


class Turns:
    def __init__(self, connection: redis.Redis, keys: Keys, deliveries: DeliveryStore) -> None:
        self.redis = connection
        self.keys = keys
        self.deliveries = deliveries
        self._release = connection.register_script(_RELEASE)

    def target_of(self, delivery: Delivery, endpoint: Endpoint | None) -> Target:
        """A tenant's endpoint is its own target; any other sink is one per tenant and URL (or recipients),
        so one tenant's backlog at a shared URL never takes another tenant's turns."""
        if endpoint is not None:
            return Target(endpoint.id, self.keys.endpoint_busy(endpoint.id), endpoint.rate_limit_per_s)
        digest = hashlib.sha256(f"{delivery.tenant}\n{delivery.as_sink.key}".encode()).hexdigest()
        name = f"sk_{digest[:16]}"
        return Target(name, self.keys.sink_busy(name))

    def wait_for(self, delivery: Delivery, target: Target, job_id: str, attempt_s: float) -> str | None:
        """Why `delivery` must wait, or None when it may go now, holding the target's lock (to be
        given back with `release`)."""
        if self._earlier_pending(delivery):
            return "an earlier event of its task is still pending there"
        lock_ms = math.ceil((attempt_s + LOCK_MARGIN_S) * 1000)
        if not self.redis.set(target.busy, job_id, nx=True, px=lock_ms):
            return "another attempt there is in flight"
        limit = target.rate_limit_per_s
        if limit is not None and not self._within_rate(target.name, limit):
            self.release(target, job_id)
            return f"over its rate limit of {limit:g} per second"
        return None

    def release(self, target: Target, job_id: str) -> None:
        self._release(keys=[target.busy], args=[job_id])

    def _earlier_pending(self, delivery: Delivery) -> bool:
        if not delivery.external_task_id:
            return False
        sink = delivery.as_sink.key  # a task is one tenant's: within it, the sink's key names the target
        return any(
            other.as_sink.key == sink
            and other.status is DeliveryStatus.PENDING
            and (other.raised_at, other.id) < (delivery.raised_at, delivery.id)
            for other in self.deliveries.of_task(delivery.external_task_id)
        )

    def _within_rate(self, endpoint_id: str, per_s: float) -> bool:
        window_ms = 1000 if per_s >= 1 else math.ceil(1000 / per_s)
        allowed = max(1, math.floor(per_s * window_ms / 1000))
        key = self.keys.endpoint_rate(endpoint_id, now_ms() // window_ms)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, 2 * window_ms)
            started, _ = pipe.execute()
        return int(started) <= allowed


def next_turn_at() -> float:
    """When a delivery that waits comes back (epoch seconds)."""
    return time.time() + WAIT_S
