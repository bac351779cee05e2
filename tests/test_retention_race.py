"""A replay that lands between the retention pass's read of a task and its removal keeps the task: the
pass watches every delivery record, which is all a replay writes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests import test_notify
from tests.support import wait_for
from tests.test_notify import SECRET, Answer, Receiver, Stack, submit
from webhook_service.domain import retention
from webhook_service.domain.retention import prune

receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures


def test_a_replay_between_the_read_and_the_removal_keeps_the_task(
    stack: Stack, simulator, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = stack.start(
        TASK_RETENTION_S="0.5",
        DEAD_LETTER_RETENTION_S="0.5",
        PRUNE_INTERVAL_S="3600",  # the test prunes itself
        NOTIFY_WEBHOOK_URLS=receiver.script("/down", *[Answer(500)] * 20),
        NOTIFY_WEBHOOK_EVENTS="task.failed",
        NOTIFY_WEBHOOK_SECRET=SECRET,
        NOTIFY_RETRY_SCHEDULE_S="0.2",
    )
    svc = service.services
    submit(service, simulator, "raced", status="failed")
    (dead,) = wait_for(
        lambda: service.http.get("/v1/deliveries", params={"status": "failed"}).json()["data"],
        timeout=30,
        what="the dead letter",
    )
    wait_for(lambda: time.time() * 1000 > dead["updated_at"] + 1000, what="past both retentions")

    settled_at = retention._settled_at
    replayed = []

    def then_a_replay(*args: Any) -> int | None:
        """The pass has read the task and its deliveries and found them settled: a client replays the
        dead letter now, before the pass's transaction."""
        answer = settled_at(*args)
        if not replayed:
            replayed.append(svc.deliveries.replay(dead["id"]))
        return answer

    monkeypatch.setattr(retention, "_settled_at", then_a_replay)
    report = prune(svc)

    assert replayed and replayed[0] is not None
    assert report.removed == [] and svc.store.get("raced") is not None
    kept = svc.deliveries.get(dead["id"])
    assert kept is not None and kept.replays == 1  # the replay is not lost with a removed task
    monkeypatch.undo()
    wait_for(
        lambda: len(receiver.received("/down")) >= dead["attempts"] + 1, timeout=30, what="the replay sent"
    )
