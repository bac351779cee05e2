"""A tenant's endpoint changed or deleted while deliveries to it are under way: a new URL reaches their
retries and replays, a deletion settles what was pending, and an endpoint's dead letters are listed and
replayed on their own. End to end: the service, real `python -m workers` processes, the simulator and
receivers on loopback whose answers each test scripts."""

from __future__ import annotations

from typing import Any

from tests import test_notify
from tests.support import wait_for
from tests.test_endpoints import KEY_A, SUBMITTED, call, register, start, submit_as, task_deliveries, verified
from tests.test_notify import Answer, Receiver, Stack

receiver, stack = test_notify.receiver, test_notify.stack
FAILING = [Answer(500)] * 50


def test_a_retry_after_the_url_and_secret_changed_goes_to_the_new_url_signed_with_the_new_secret(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S=",".join(["1"] * 30))
    created = register(service, receiver.script("/old", *FAILING), event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    wait_for(lambda: receiver.received("/old"), timeout=30, what="the first attempt, failed, at the old URL")

    moved = call(service, "PATCH", f"/v1/endpoints/{created['id']}", json={"url": receiver.script("/new")})
    assert moved.status_code == 200, moved.text
    rotated = call(service, "POST", f"/v1/endpoints/{created['id']}/rotate-secret").json()["data"]
    (request,) = wait_for(lambda: receiver.received("/new"), timeout=30, what="a retry at the new URL")
    assert verified(rotated["secret"], request)["data"]["external_task_id"] == "job-1"
    assert all(old.at < request.at for old in receiver.received("/old"))
    (delivery,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "delivered"],
        timeout=10,
        what="the delivery recorded as delivered",
    )
    assert delivery["attempts"] == len(receiver.received("/old")) + 1
    stored = service.services.deliveries.get(delivery["id"])
    assert stored is not None and stored.target == receiver.url + "/new"  # the record says where it went


def test_a_dead_letter_replayed_after_the_url_changed_goes_to_the_new_url(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S="0.2")
    created = register(service, receiver.script("/old", *FAILING), event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (letter,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "failed"],
        timeout=30,
        what="the dead letter",
    )
    assert letter["reason"] == "exhausted" and len(receiver.received("/old")) == 2

    moved = call(service, "PATCH", f"/v1/endpoints/{created['id']}", json={"url": receiver.script("/new")})
    assert moved.status_code == 200, moved.text
    assert call(service, "POST", f"/v1/deliveries/{letter['id']}/replay").status_code == 200
    (request,) = wait_for(lambda: receiver.received("/new"), timeout=30, what="the replay at the new URL")
    assert verified(created["secret"], request)["data"]["external_task_id"] == "job-1"
    assert request.headers["webhook-id"] == letter["webhook_id"]
    wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "delivered"],
        timeout=10,
        what="the replay recorded as delivered",
    )
    assert len(receiver.received("/old")) == 2
