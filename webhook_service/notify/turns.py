"""Whose turn it is at a tenant's endpoint (notify/endpoints.py): checked before every attempt at one.

- **Order.** For one task and one endpoint, events go in the order they were raised: a delivery waits
  while an earlier event of its task is still pending for the same endpoint (being retried, or waiting
  itself), until that one is delivered or dead. A receiver never sees `task.archived` before the
  `task.succeeded` it follows. The cost: one failing event holds back its task's later events at that
  endpoint for as long as it is retried (up to the whole schedule), and each attempt reads the task's
  deliveries (one SMEMBERS and one MGET).
- **One at a time.** At most one attempt per endpoint is in flight (a lock with a TTL of the longest an
  attempt can take, so a worker that dies holding it holds it no longer). Jobs do not wait for the
  lock: they step aside and come back. So an endpoint that hangs holds one worker at most, for at most
  NOTIFY_TIMEOUT_S, and every other endpoint's deliveries go on with the other workers.
- **Rate.** At most `rate_limit_per_s` attempts start in each window (a second, or 1/rate seconds
  below one per second).

A delivery that must wait is put back (`DeliveryStore.postpone`), to come back after WAIT_S: not an
attempt, not a failure, nothing dropped. A wait costs a job run (RQ forks a work horse for it), so an
endpoint with many deliveries waiting costs that many small jobs a second.
"""

from __future__ import annotations

import math
import time

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


class Turns:
    def __init__(self, connection: redis.Redis, keys: Keys, deliveries: DeliveryStore) -> None:
        self.redis = connection
        self.keys = keys
        self.deliveries = deliveries
        self._release = connection.register_script(_RELEASE)

    def wait_for(self, delivery: Delivery, endpoint: Endpoint, job_id: str, attempt_s: float) -> str | None:
        """Why `delivery` must wait, or None when it may go now, holding the endpoint's lock (to be
        given back with `release`)."""
        if self._earlier_pending(delivery):
            return "an earlier event of its task is still pending at this endpoint"
        busy = self.keys.endpoint_busy(endpoint.id)
        if not self.redis.set(busy, job_id, nx=True, px=math.ceil((attempt_s + LOCK_MARGIN_S) * 1000)):
            return "another attempt at this endpoint is in flight"
        limit = endpoint.rate_limit_per_s
        if limit is not None and not self._within_rate(endpoint.id, limit):
            self.release(endpoint.id, job_id)
            return f"over its rate limit of {limit:g} per second"
        return None

    def release(self, endpoint_id: str, job_id: str) -> None:
        self._release(keys=[self.keys.endpoint_busy(endpoint_id)], args=[job_id])

    def _earlier_pending(self, delivery: Delivery) -> bool:
        if not delivery.external_task_id:
            return False
        return any(
            other.endpoint == delivery.endpoint
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
