"""Every sink takes turns (notify/turns.py): a task's own `callback_url`, the operator's webhooks and
Slack, as a tenant's endpoints do. End to end: the service, real `python -m workers` processes, the
simulator and receivers on loopback whose answers each test scripts."""

from __future__ import annotations

from typing import Any

import pytest

from tests import test_notify
from tests.support import wait_for
from tests.test_endpoints import KEY_A, SUBMITTED, TENANTS, bearer, register, task_deliveries
from tests.test_notify import Answer, Receiver, Stack, webhooks

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
