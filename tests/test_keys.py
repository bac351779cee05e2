"""Every key the service writes is under its prefix, so two key sets in one Redis never meet.

The whole path of a task is run twice against one Redis, under two prefixes: accepted and sent
upstream, a callback, a refusal's pause, a reconciliation pass, an event fanned out into a delivery,
a metrics scrape. Neither key set sees the other's tasks, and no key but RQ's own escapes a prefix
(RQ's are why two deployments still need a Redis each: keys.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from webhook_service.config import Settings
from webhook_service.domain.callbacks import receive_callback
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.gauges import exposition
from webhook_service.domain.reconcile import reconcile
from webhook_service.domain.submission import submit_and_wait
from webhook_service.domain.tasks import Status
from webhook_service.keys import Keys
from webhook_service.notify.send import fan_out
from webhook_service.services import Services

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a lighthouse at dusk"}
WEBHOOK_SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXByZWZpeGVzLTAxMjM="


def run_a_task(svc: Services, name: str) -> None:
    task = submit_and_wait(svc, {**IMAGE, "external_task_id": name}, wait_s=10)
    assert task.status is Status.SUBMITTED, task
    receive_callback(svc, name, {"task_id": task.task_id, "task_status": "processing"})
    svc.admission.pause()
    svc.admission.resume()
    svc.admission.pause()
    assert reconcile(svc).ran
    fan_out(svc, event_id(name, EventType.PROCESSING), name, EventType.PROCESSING.value, datetime.now(UTC))
    assert svc.deliveries.list(task=name)
    exposition(svc.redis, svc.keys)


def test_two_key_sets_share_a_redis_under_their_own_prefixes(env: dict[str, str]) -> None:
    settings = Settings.from_env(
        {
            **env,
            "NOTIFY_WEBHOOK_URLS": "http://127.0.0.1:9/hook",
            "NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "NOTIFY_WEBHOOK_EVENTS": "task.processing",
        }
    )
    first = Services.build(settings, keys=Keys("first:"))
    second = Services.build(settings, keys=Keys("second:"))
    run_a_task(first, "first-task")
    run_a_task(second, "second-task")

    assert [t.external_task_id for t in first.store.newest(0, 10)] == ["first-task"]
    assert [t.external_task_id for t in second.store.newest(0, 10)] == ["second-task"]
    assert first.store.get("second-task") is None and second.deliveries.list(task="first-task") == []
    keys = {key.decode() for key in redis.Redis.from_url(env["REDIS_URL"]).scan_iter(count=1000)}
    prefixes = {key.split(":", 1)[0] for key in keys}
    assert prefixes == {"first", "second", "rq"}, sorted(keys)
    first_keys = {key.removeprefix("first:") for key in keys if key.startswith("first:")}
    second_keys = {key.removeprefix("second:") for key in keys if key.startswith("second:")}
    assert {"task:first-task", "submit-pause-level", "reconcile-passes", "deliveries"} <= first_keys
    # the same kinds of keys on both sides
    assert {k.split(":")[0] for k in first_keys} == {k.split(":")[0] for k in second_keys}
