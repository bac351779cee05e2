"""Every sink takes turns (notify/turns.py): a task's own `callback_url`, the operator's webhooks and
Slack, as a tenant's endpoints do. End to end: the service, real `python -m workers` processes, the
simulator and receivers on loopback whose answers each test scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from rq import Queue
from rq.job import JobStatus
from rq.registry import ScheduledJobRegistry

from tests import test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_endpoints import KEY_A, SUBMITTED, TENANTS, bearer, call, register, submit_as, task_deliveries
from tests.test_notify import Answer, Receiver, Stack, webhooks
from webhook_service.domain.events import Event, EventType, event_id
from webhook_service.domain.tenants import upstream_id
from webhook_service.jobs import NOTIFY_QUEUE
from webhook_service.notify.records import Delivery, delivery_id
from webhook_service.notify.routing import Sink, SinkKind

receiver, stack = test_notify.receiver, test_notify.stack
HANG_S = 600  # the hanging receiver's answer never comes before the attempt is cut
TIMEOUT_S = "30"  # NOTIFY_TIMEOUT_S: far longer than the quick deliveries take, even on a loaded machine


def hanging_sink(kind: str, url: str) -> tuple[dict[str, str], dict[str, Any]]:
    """The settings and the task body's extra fields that send `task.submitted` to `url` as `kind`."""
    if kind == "callback_url":
        return {"NOTIFY_WEBHOOK_EVENTS": "task.submitted"}, {"callback_url": url}
    if kind == "operator webhook":
        return {"NOTIFY_WEBHOOK_URLS": url, "NOTIFY_WEBHOOK_EVENTS": "task.submitted"}, {}
    return {"SLACK_WEBHOOK_URL": url, "SLACK_EVENTS": "task.submitted"}, {}


@pytest.mark.parametrize("kind", ["callback_url", "operator webhook", "slack"])
def test_a_hanging_sink_of_any_kind_holds_one_worker_at_most_and_never_delays_an_endpoint(
    stack: Stack, simulator: Any, receiver: Receiver, kind: str
) -> None:
    """Two workers; three tasks each send `task.submitted` to a sink that hangs (queued first) and to the
    tenant's endpoint that answers at once. Were the hanging sink's deliveries sent without taking
    turns, the second of them would take the second worker, and the endpoint's would wait until the
    first hang is cut, NOTIFY_TIMEOUT_S later."""
    settings, body = hanging_sink(kind, receiver.script("/slow", *[Answer(200, delay=HANG_S)] * 10))
    service = stack.start(
        2, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_TIMEOUT_S=TIMEOUT_S, **settings)
    )
    register(service, receiver.script("/fast"), event_types=SUBMITTED)

    for n in range(3):
        simulator.state.set_scenario(f"team-a~job-{n}", {"steps": [{"status": "succeed", "delay": 0.5}]})
        task = {**test_notify.IMAGE, "external_task_id": f"job-{n}", **body}
        answer = service.http.post("/v1/videos/image2video", json=task, headers=bearer(KEY_A))
        assert answer.status_code == 200, answer.text

    wait_for(lambda: len(receiver.received("/fast")) == 3, timeout=25, what="3 quick deliveries")
    assert len(receiver.received("/slow")) == 1  # one attempt at the hanging sink at a time
    hanging = [d for n in range(3) for d in task_deliveries(service, f"job-{n}", None)]
    assert len(hanging) == 3 and {d["status"] for d in hanging} == {"pending"}
    assert all(d["attempts"] == 0 for d in hanging)  # the first hang is not cut yet: no attempt ended


def test_deliveries_waiting_at_a_hanging_endpoint_cost_one_drain_job_not_a_job_each(
    stack: Stack, receiver: Receiver
) -> None:
    """Forty deliveries wait behind an attempt that hangs: RQ holds a drain job or two for them, not
    forty jobs coming back every second; a deleted endpoint takes its waiting set along."""
    service = stack.start(2, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_TIMEOUT_S="60"))
    slow = register(service, receiver.script("/slow", *[Answer(200, delay=HANG_S)] * 50))
    svc = service.services
    sink = Sink(SinkKind.WEBHOOK, slow["url"], client=True, endpoint=slow["id"])
    for n in range(40):
        body = {"type": "task.submitted", "timestamp": "2026-01-01T00:00:00.000Z", "data": {"n": n}}
        event = svc.deliveries.save_event(
            Event(f"evt_backlog{n:04d}", "task.submitted", "", json.dumps(body), "", "team-a")
        )
        svc.deliveries.create(Delivery.new(event, sink))

    waiting = svc.keys.turn_waiting(slow["id"])
    wait_for(lambda: svc.redis.zcard(waiting) == 39, timeout=30, what="39 deliveries waiting their turn")
    queue = Queue(NOTIFY_QUEUE, connection=svc.redis)

    def jobs() -> list[str]:
        return queue.job_ids + ScheduledJobRegistry(queue=queue).get_job_ids()

    # While they fell into waiting, one drain a second at most was asked for; those run and find the
    # turn taken, and what is left is the drain that comes back when the hanging attempt may end.
    left = wait_for(lambda: len(found := jobs()) <= 2 and found, timeout=20, what="the drains to settle")
    assert all(job.startswith(f"drain-{slow['id']}-") for job in left), left
    assert svc.redis.zcard(waiting) == 39
    assert len(receiver.received("/slow")) == 1

    assert call(service, "DELETE", f"/v1/endpoints/{slow['id']}").status_code in (200, 204)
    assert not svc.redis.exists(waiting)


# --- a task's events in order, whichever fan-out runs first ---------------------------------------------

IN_ORDER = ["task.submitted", "task.succeeded"]


def events_awaiting_fan_out(service: Service, simulator: Any, name: str) -> tuple[str, str]:
    """Run team-a's task `name` to `succeed` with no worker running: its two events' fan-out jobs wait in
    the notify queue, for the test to arrange before a worker takes them. Their ids, oldest first."""
    submit_as(service, simulator, KEY_A, "team-a", name)
    ids = [event_id(upstream_id("team-a", name), kind) for kind in (EventType.SUBMITTED, EventType.SUCCEEDED)]
    queue = Queue(NOTIFY_QUEUE, connection=service.services.redis)
    wait_for(lambda: set(ids) <= set(queue.job_ids), timeout=20, what="both fan-outs queued")
    return ids[0], ids[1]


def arrived(receiver: Receiver, path: str) -> list[str]:
    wait_for(lambda: len(receiver.received(path)) >= len(IN_ORDER), timeout=30, what="both events")
    return [request.json["type"] for request in receiver.received(path)]


def test_an_event_fanned_out_before_an_earlier_one_of_its_task_still_arrives_after_it(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """The fan-out of a task's `task.submitted` crashed and waits for its RQ retry when the fan-out of its
    `task.succeeded` runs: the endpoint still gets `task.submitted` first, without waiting for the retry.
    Were the later fan-out not to see to the earlier one, its delivery would find nothing earlier pending
    and go at once."""
    service = stack.start(0, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))
    register(service, receiver.script("/ordered"), event_types=IN_ORDER)
    submitted, _ = events_awaiting_fan_out(service, simulator, "job-1")
    queue = Queue(NOTIFY_QUEUE, connection=service.services.redis)
    crashed = queue.fetch_job(submitted)
    assert crashed is not None
    queue.remove(crashed)
    queue.schedule_job(crashed, datetime.now(UTC) + timedelta(seconds=5))  # as RQ's retry does

    stack.more_workers()
    assert arrived(receiver, "/ordered") == IN_ORDER


def test_an_earlier_fan_out_a_dead_worker_left_started_does_not_make_a_later_event_overtake_it(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """A worker killed while fanning out `task.submitted` leaves its job `started` until RQ finds it
    abandoned, minutes later: the fan-out of `task.succeeded` does that earlier one itself, so the
    receiver still gets them in order, long before RQ would have retried the abandoned job."""
    service = stack.start(0, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))
    register(service, receiver.script("/ordered"), event_types=IN_ORDER)
    submitted, _ = events_awaiting_fan_out(service, simulator, "job-1")
    queue = Queue(NOTIFY_QUEUE, connection=service.services.redis)
    abandoned = queue.fetch_job(submitted)
    assert abandoned is not None
    queue.remove(abandoned)
    abandoned.set_status(JobStatus.STARTED)

    stack.more_workers()
    assert arrived(receiver, "/ordered") == IN_ORDER


def recorded_in_one_millisecond(service: Service, tenant: str, external_task_id: str) -> None:
    """Make the task's logged events say they were recorded in the same millisecond, as two changes
    committed within one may: each is recorded again (the log is append-only) with the first's time,
    in the same order, and the task's list of them follows."""
    svc = service.services
    logged = svc.events.of_task(tenant, external_task_id)
    stream, listed = svc.keys.events(tenant), svc.keys.task_events(external_task_id)
    entries = [svc.redis.xrange(stream, event["cursor"], event["cursor"])[0][1] for event in logged]
    svc.redis.xdel(stream, *(event["cursor"] for event in logged))
    again = [svc.redis.xadd(stream, {**fields, b"at": str(logged[0]["at"]).encode()}) for fields in entries]
    svc.redis.delete(listed)
    svc.redis.rpush(listed, *again)


def test_two_events_of_a_task_raised_within_a_millisecond_arrive_in_the_order_they_happened(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """Their deliveries' `raised_at` tie, and the task is chosen so that the later event's delivery has
    the smaller id: the order the task's log recorded them in decides, not the ids."""
    service = stack.start(0, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))
    endpoint = register(service, receiver.script("/ordered"), event_types=IN_ORDER)
    sink = Sink(SinkKind.WEBHOOK, endpoint["url"], client=True, endpoint=endpoint["id"])

    def later_sorts_first(name: str) -> bool:
        earlier, later = (event_id(upstream_id("team-a", name), kind) for kind in map(EventType, IN_ORDER))
        return delivery_id(later, sink) < delivery_id(earlier, sink)

    name = next(name for name in (f"job-{n}" for n in count()) if later_sorts_first(name))
    events_awaiting_fan_out(service, simulator, name)
    recorded_in_one_millisecond(service, "team-a", upstream_id("team-a", name))

    stack.more_workers()
    assert arrived(receiver, "/ordered") == IN_ORDER
    raised = {d["event_type"]: d["raised_at"] for d in task_deliveries(service, name, endpoint["id"])}
    assert raised["task.submitted"] == raised["task.succeeded"]


def test_a_fan_out_run_late_says_when_its_event_happened_not_when_it_ran(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """RQ queues a retried job again, and its `enqueued_at` then says when: the payload's `timestamp`
    comes from the event log, the moment the change was committed."""
    service = stack.start(0, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))
    register(service, receiver.script("/late"), event_types=IN_ORDER)
    _, succeeded = events_awaiting_fan_out(service, simulator, "job-3")
    queue = Queue(NOTIFY_QUEUE, connection=service.services.redis)
    late = queue.fetch_job(succeeded)
    assert late is not None
    queue.remove(late)
    queue.schedule_job(late, datetime.now(UTC) + timedelta(seconds=3))  # as RQ's retry does

    stack.more_workers()
    arrived(receiver, "/late")
    (request,) = [r for r in receiver.received("/late") if r.json["type"] == "task.succeeded"]
    logged = service.services.events.of_task("team-a", upstream_id("team-a", "job-3"))
    (entry,) = [event for event in logged if event["id"] == succeeded]
    sent_at = datetime.fromisoformat(request.json["timestamp"].replace("Z", "+00:00"))
    assert sent_at == datetime.fromtimestamp(entry["at"] / 1000, UTC)


def test_a_fractional_rate_limit_is_honoured_not_rounded_down(stack: Stack, receiver: Receiver) -> None:
    """1.5 a second: two attempts at once at most, then one every 2/3 s, so sixteen take about 10.5 s
    (the drains come on whole seconds: two, then one, then two...). Counted per whole second, 1.5 was
    one a second, and sixteen took at least 14 s. None waits long enough to fail, none is dropped."""
    service = stack.start(2, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))
    limited = register(service, receiver.script("/limited"), rate_limit_per_s=1.5)
    svc = service.services
    sink = Sink(SinkKind.WEBHOOK, limited["url"], client=True, endpoint=limited["id"])
    made = []
    for n in range(16):
        body = {"type": "task.submitted", "timestamp": "2026-01-01T00:00:00.000Z", "data": {"n": n}}
        event = svc.deliveries.save_event(
            Event(f"evt_rate{n:04d}", "task.submitted", "", json.dumps(body), "", "team-a")
        )
        made.append(Delivery.new(event, sink))
        svc.deliveries.create(made[-1])

    arrived = wait_for(lambda: len(found := receiver.received("/limited")) == 16 and found, timeout=60)
    times = sorted(request.at for request in arrived)
    interval, jitter = 1 / 1.5, 0.25  # jitter: from taking the turn to the receiver's clock
    assert all(later - earlier >= interval - jitter for earlier, later in zip(times, times[2:], strict=False))
    assert (16 - 2) * interval - jitter <= times[-1] - times[0] < 14

    def recorded() -> set[tuple[str, int]]:
        sent = [svc.deliveries.get(delivery.id) for delivery in made]
        return {(d.status.value, d.attempts) for d in sent if d is not None}

    wait_for(lambda: recorded() == {("delivered", 1)}, timeout=10, what="each delivered at its one attempt")
