"""Never lose a task: polling when callbacks never come, expiry, and one pass at a time."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from rq import Queue

from tests.conftest import Service, Workers, make_service
from tests.support import Receiver, wait_for
from tests.test_callbacks import post_callback
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.lifecycle import record_news
from webhook_service.domain.reconcile import reconcile
from webhook_service.domain.tasks import update_from_callback
from webhook_service.jobs import ARCHIVE_QUEUE, job_id
from webhook_service.keys import Keys

WHSEC = "whsec_" + "cmVjb25jaWxlLXNlY3JldC1yZWNvbmNpbGUtMTIzNDU2"
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
ASYNC = {"Prefer": "respond-async"}
FAST = {
    "ARCHIVE_RETRY_BASE_S": "0",
    "RECONCILE_AFTER_S": "0.3",
    "RECONCILE_INTERVAL_S": "1",
    "RECONCILE_POLLS_PER_S": "50",
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(WHSEC)
    yield receiver
    receiver.server.stop()


@pytest.fixture
def env(env: dict[str, str], receiver: Receiver) -> dict[str, str]:
    """Every event goes to a webhook receiver, so a test can count what was delivered."""
    every_event = ",".join(e.value for e in EventType)
    return {
        **env,
        "NOTIFY_WEBHOOK_URLS": receiver.url,
        "NOTIFY_WEBHOOK_SECRET": WHSEC,
        "NOTIFY_EVENTS": every_event,
    }


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[Service, Workers]]:
    service, server, service_env = make_service({**env, **FAST})
    workers = Workers(service_env)
    yield service, workers
    workers.stop()
    server.stop()


def history(service: Service, external_id: str) -> list[dict[str, Any]]:
    return service.services.store.history(external_id)


def notified_once(receiver: Receiver, external_id: str, event_type: EventType) -> bool:
    """The event reached the receiver, under one webhook-id, received once."""
    ids = wait_for(
        lambda: receiver.by_event.get((external_id, event_type.value)), what=f"{event_type} delivered"
    )
    return len(ids) == 1 and all(receiver.ids[i] == 1 for i in ids)


def test_dropped_callbacks_are_caught_by_polling(running, simulator, receiver: Receiver) -> None:
    service, workers = running
    simulator.state.set_default(
        {
            "steps": [
                {"status": "processing", "delay": 0.1, "send": False},
                {"status": "succeed", "delay": 0.3, "send": False},
            ]
        }
    )
    ids = [f"silent-{n}" for n in range(6)]
    for external_id in ids:  # six tasks for five slots: the sixth waits for the first to finish
        response = service.http.post(
            "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id}, headers=ASYNC
        )
        assert response.status_code == 202
    workers.start()
    workers.start()  # two workers, two schedulers: still one pass at a time

    for external_id in ids:
        wait_for(
            lambda e=external_id: service.services.store.get(e).archive_state == "archived",
            timeout=60,
            what=f"{external_id} to be archived through polling",
        )
    assert simulator.state.callbacks() == []
    for external_id in ids:
        entries = history(service, external_id)
        applied = [(e["source"], e["status"]) for e in entries if e.get("outcome") == "applied"]
        assert ("poll", "succeed") in applied
        assert [e["event"] for e in entries].count("archived") == 1
        assert notified_once(receiver, external_id, EventType.SUCCEEDED)
        assert notified_once(receiver, external_id, EventType.ARCHIVED)
    passes = sorted(
        tuple(map(float, p.decode().split("-")))
        for p in service.services.redis.lrange(Keys().reconcile_passes, 0, -1)
    )
    assert passes and all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(passes))


def test_two_passes_at_once_run_one(env: dict[str, str], simulator) -> None:
    service, server, _ = make_service({**env, **FAST, "RECONCILE_POLLS_PER_S": "5"})
    try:
        simulator.state.set_default({"steps": [{"status": "processing", "delay": 0, "send": False}]})
        for n in range(3):
            service.submit({**IMAGE, "external_task_id": f"both-{n}"})
        wait_for(lambda: len(service.services.open_tasks.due(10)) == 3, what="tasks to be due")
        reports = race(lambda: reconcile(service.services), lambda: reconcile(service.services))
        assert sorted(r.ran for r in reports) == [False, True]
        assert sorted(next(r for r in reports if r.ran).polled) == ["both-0", "both-1", "both-2"]
    finally:
        server.stop()


def test_a_task_with_no_final_news_expires_and_can_still_succeed(
    env: dict[str, str], simulator, receiver: Receiver
) -> None:
    service, server, service_env = make_service({**env, **FAST, "TASK_TIMEOUT_S": "1"})
    workers = Workers(service_env)
    simulator.state.set_default(
        {
            "steps": [
                {"status": "processing", "delay": 0, "send": False},
                {"status": "succeed", "delay": 3, "send": False},
            ]
        }
    )
    try:
        assert service.submit({**IMAGE, "external_task_id": "late"}).status_code == 200
        workers.start()
        store = service.services.store
        wait_for(lambda: store.get("late").status == "expired", timeout=30, what="expiry")
        kling_view = service.task("late")
        assert kling_view["task_status"] == "failed" and "TASK_TIMEOUT_S" in kling_view["task_status_msg"]
        assert notified_once(receiver, "late", EventType.EXPIRED)
        assert service.services.admission.in_flight() == 0  # the slot is free again

        # Kling finishes after all: its callback completes the expired task, which is then archived.
        task_id = store.get("late").task_id
        body = wait_for(
            lambda: (d := _upstream(simulator, task_id))["task_status"] == "succeed" and d, timeout=10
        )
        assert post_callback(service, "late", body).json()["data"]["outcome"] == "applied"
        wait_for(
            lambda: store.get("late").archive_state == "archived", timeout=30, what="archive after expiry"
        )
        assert notified_once(receiver, "late", EventType.SUCCEEDED)
    finally:
        workers.stop()
        server.stop()


def test_poll_and_callback_racing_make_one_archive_job_and_one_set_of_events(env, simulator) -> None:
    service, server, _ = make_service({**env, **FAST})
    try:
        simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0, "send": False}]})
        for n in range(5):
            external_id = f"race-{n}"
            service.submit({**IMAGE, "external_task_id": external_id})
            task_id = service.task(external_id)["task_id"]
            body = wait_for(
                lambda t=task_id: (d := _upstream(simulator, t))["task_status"] == "succeed" and d
            )
            update = update_from_callback(body)
            race(
                lambda e=external_id, u=update: record_news(service.services, e, u, source="poll"),
                lambda e=external_id, u=update: record_news(service.services, e, u, source="callback"),
            )
            outcomes = sorted(e["outcome"] for e in history(service, external_id) if e["event"] == "status")
            assert outcomes.count("applied") == 2  # the create answer, then one of the two racers
        queue = Queue(ARCHIVE_QUEUE, connection=service.services.redis)
        assert sorted(queue.job_ids) == sorted(job_id("archive", f"race-{n}") for n in range(5))
        notify = Queue("notify", connection=service.services.redis)
        succeeded = [event_id(f"race-{n}", EventType.SUCCEEDED) for n in range(5)]
        assert sorted(j for j in notify.job_ids if j in succeeded) == sorted(succeeded)
        assert len(notify.job_ids) == len(set(notify.job_ids))
    finally:
        server.stop()


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at the same moment, each in its own thread; their results in call order."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        start.wait()
        results[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _upstream(simulator, task_id: str) -> dict[str, Any]:
    return httpx.get(
        f"{simulator.url}/v1/videos/image2video/{task_id}",
        headers={"Authorization": "Bearer sim-token-for-tests"},
    ).json()["data"]
