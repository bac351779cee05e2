"""A target's waiting deliveries started in turn (notify/turns.py): one drain job a target, not a job a
waiting delivery, so a thousand deliveries waiting at an endpoint that hangs cost no more than one.

The drain takes the target's turn for the first waiting delivery that may go (its task's earlier events
settled there), makes its attempt in the same job, and goes on with the next while it may. It stops when
the turn is not to be had (another attempt in flight, the rate limit reached: it comes back when the
one ends or the other allows), or after BUDGET_S, so that a drain never keeps its worker from the other
queues for long. A rate limit that opens again within the second, sooner than RQ's scheduler could run
a drain (it schedules in whole seconds, and looks once a second), is waited for in the job: scheduled,
each such wait ran to the next whole second and then to the scheduler's look, and at a phase of that
look that came after the limit's next opening, 1.5 a second went out as two every two seconds.
Two drains of one target can run at once (one woken early, one at its fallback time); only the one that
takes the turn sends, so a delivery is attempted by one of them. A drain that dies mid-attempt leaves
the delivery waiting, its turn freed by the lock's TTL: the next drain sends it again, as a job that
died mid-attempt is run again.
"""

from __future__ import annotations

import time

from webhook_service.notify import send
from webhook_service.notify.records import SINK_TARGET_PREFIX
from webhook_service.notify.turns import Turns, fallback_at
from webhook_service.services import Services

BUDGET_S = 5.0
SCHEDULER_STEP_S = 1.0  # RQ's scheduler: whole seconds, looked at once a second


def drain(svc: Services, target_name: str) -> None:
    turns = Turns(svc.redis, svc.keys, svc.deliveries, svc.events)
    endpoint = None if target_name.startswith(SINK_TARGET_PREFIX) else svc.endpoints.get(target_name)
    target = turns.target(target_name, endpoint)
    started = time.monotonic()
    while (delivery := turns.next_waiting(target)) is not None:
        assert delivery.job is not None  # a pending delivery always names its next job
        if wait := turns.take(target, delivery.job, svc.settings.notify_timeout_s):
            opens_in = wait.drain_at - time.time()
            if (
                wait.of_rate
                and opens_in < SCHEDULER_STEP_S
                and time.monotonic() - started + opens_in < BUDGET_S
            ):
                time.sleep(max(0.01, opens_in))  # at least a little: Redis's clock may lag ours
                continue
            turns.wake(target, wait.drain_at)
            return
        try:
            send.deliver(svc, delivery.id, delivery.job, turn_taken=True)
        finally:
            turns.release(target, delivery.job, wake=False)
            svc.redis.zrem(target.waiting, delivery.id)
        if time.monotonic() - started > BUDGET_S:
            turns.wake(target, time.time())
            return
    if svc.redis.exists(target.waiting):  # each one left waits for an earlier event of its task
        turns.wake(target, fallback_at())
