"""Under load and faults: many callbacks, Redis going away, workers killed. Nothing lost, nothing doubled.

Small in CI; `RELIABILITY_SCALE=full` runs the sizes of the reliability plan (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from rq.registry import StartedJobRegistry

from tests.conftest import SIM_TOKEN, Service, Workers, make_service
from tests.reliability.scale import scaled
from tests.support import PrivateRedis, Receiver, wait_for
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.jobs import ALL_QUEUES, JOB_MONITORING_INTERVAL_S

WHSEC = "whsec_" + "bm90aWZ5LXNlY3JldC1ub3RpZnktc2VjcmV0LTEyMzQ="
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "load"}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(WHSEC)
    yield receiver
    receiver.server.stop()


def stack_env(env: dict[str, str], receiver: Receiver, tasks: int) -> dict[str, str]:
    return {
        **env,
        "NOTIFY_WEBHOOK_URLS": receiver.url,
        "NOTIFY_WEBHOOK_SECRET": WHSEC,
        "KLING_MAX_CONCURRENCY": str(tasks + 10),
        "ARCHIVE_RETRY_BASE_S": "0",
        "NOTIFY_RETRY_SCHEDULE_S": "0.5,1,2,4,8",
        "RECONCILE_AFTER_S": "600",
        "RECONCILE_INTERVAL_S": "1",
        "KLING_TIMEOUT_S": "5",
    }


def upstream_body(simulator, task_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{simulator.url}/v1/videos/image2video/{task_id}", headers={"Authorization": f"Bearer {SIM_TOKEN}"}
    )
    return answer.json()["data"]


def create_silent_tasks(service: Service, simulator, count: int, fail_every: int = 5) -> dict[str, str]:
    """Tasks whose upstream finishes without a callback; every fifth fails. Returns id -> final status."""
    finals = {}
    for n in range(count):
        external_id = f"load-{n:05d}"
        final = "failed" if n % fail_every == 0 else "succeed"
        finals[external_id] = final
        step = {"status": final, "delay": 0, "send": False, "message": "content policy"}
        simulator.state.set_scenario(external_id, {"steps": [step]})
        response = service.http.post(
            "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id}
        )
        assert response.status_code == 200, response.text
    return finals


def callback_plan(
    service: Service, simulator, finals: dict[str, str], per_task: int
) -> list[tuple[str, bytes]]:
    """`per_task` callbacks per task: processing and the final status, duplicated (30 % and more) and,
    for one task in five, the final one first (out of order)."""
    plan = []
    for external_id in finals:
        task_id = service.services.store.get(external_id).task_id
        final_body = upstream_body(simulator, task_id)
        processing = {"task_id": task_id, "task_status": "processing", "task_info": final_body["task_info"]}
        bodies = [processing, final_body] + [
            random.choice([processing, final_body]) for _ in range(per_task - 2)
        ]
        if random.random() < 0.2:
            bodies[0], bodies[1] = bodies[1], bodies[0]
        url = callback_url_for(service.services.settings, external_id).removeprefix(service.url)
        plan.extend((url, json.dumps(body).encode()) for body in bodies)
    return plan


def send_all(base_url: str, plan: list[tuple[str, bytes]], threads: int = 8) -> list[int]:
    local = threading.local()

    def send(item: tuple[str, bytes]) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=30)
        path, body = item
        return local.client.post(path, content=body, headers={"Content-Type": "application/json"}).status_code

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, plan))


def expected_events(finals: dict[str, str]) -> set[tuple[str, str]]:
    return {(e, "task.archived" if f == "succeed" else "task.failed") for e, f in finals.items()}


@pytest.mark.timeout(1800)
def test_many_callbacks_with_duplicates_and_disorder(env, simulator, receiver: Receiver) -> None:
    tasks = scaled(100, 1000)
    service, server, service_env = make_service(stack_env(env, receiver, tasks))
    workers = Workers(service_env)
    try:
        finals = create_silent_tasks(service, simulator, tasks)
        plan = callback_plan(service, simulator, finals, per_task=10)
        random.shuffle(plan)  # tasks interleaved, and more disorder within each task
        workers.start()
        workers.start()
        assert Counter(send_all(service.url, plan)) == Counter({200: len(plan)})

        store = service.services.store
        for external_id, final in finals.items():
            assert store.get(external_id).status == final
        wait_for(
            lambda: set(receiver.by_event) >= expected_events(finals),
            timeout=scaled(120, 900),
            what="every task's event at the receiver",
        )
        archived = [e for e in finals if "archived" in [h["event"] for h in store.history(e)]]
        assert sorted(archived) == sorted(e for e, f in finals.items() if f == "succeed")
        assert all([h["event"] for h in store.history(e)].count("archived") == 1 for e in archived)
        assert set(receiver.ids.values()) == {1}  # each (event, sink) delivered exactly once
        assert all(len(ids) == 1 for ids in receiver.by_event.values())
    finally:
        workers.stop()
        server.stop()


@pytest.mark.timeout(900)
def test_redis_stopped_under_load_loses_no_answered_callback(env, simulator) -> None:
    private = PrivateRedis().start()
    service, server, _ = make_service(env, REDIS_URL=private.url, KLING_MAX_CONCURRENCY="500")
    try:
        finals = create_silent_tasks(service, simulator, scaled(30, 200))
        plan = callback_plan(service, simulator, finals, per_task=4)
        plan = [(path, _with_nonce(body, n)) for n, (path, body) in enumerate(plan)]
        answered: dict[int, int] = {}
        stop_at = len(plan) // 3

        def sender(indexes: list[int]) -> None:
            with httpx.Client(base_url=service.url, timeout=30) as client:
                for n in indexes:
                    path, body = plan[n]
                    while True:  # a sender that retries on anything but 200, as Kling's should
                        status = client.post(path, content=body).status_code
                        answered.setdefault(n, status)
                        if status == 200:
                            break
                        assert status == 503, status
                        time.sleep(0.05)

        outage = threading.Thread(
            target=_outage, args=(private, lambda: len(answered) >= stop_at, scaled(2, 10))
        )
        outage.start()
        chunks = [list(range(len(plan)))[i::4] for i in range(4)]
        threads = [threading.Thread(target=sender, args=(chunk,)) for chunk in chunks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        outage.join()

        assert set(answered.values()) <= {200, 503} and 503 in answered.values()
        # A change keeps its callback's body; a repeat keeps the body's sha256 (domain/bounds.py).
        nonce_of_digest = {_digest(body): n for n, (_, body) in enumerate(plan)}
        recorded = set()
        for external_id in finals:
            for entry in service.services.store.history(external_id):
                if entry.get("source") == "callback":
                    recorded.add(
                        entry["body"]["nonce"] if "body" in entry else nonce_of_digest[entry["body_sha256"]]
                    )
        assert recorded == set(range(len(plan)))  # every callback, answered 200 at once or after retries
        assert all(service.services.store.get(e).status == f for e, f in finals.items())
    finally:
        server.stop()
        private.stop()


def _digest(body: bytes) -> str:
    """The sha256 a repeat's history entry keeps: of the body as compact JSON."""
    compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(compact).hexdigest()


def _with_nonce(body: bytes, nonce: int) -> bytes:
    return json.dumps({**json.loads(body), "nonce": nonce}).encode()


def _outage(private: PrivateRedis, when: Callable[[], bool], seconds: float) -> None:
    wait_for(when, timeout=120, what="load to build up before the outage")
    private.stop()
    time.sleep(seconds)  # the outage itself: what the test is about, not a wait for something
    private.start()


@pytest.mark.timeout(900)
def test_workers_killed_at_random_lose_and_double_nothing(env, simulator, receiver: Receiver) -> None:
    tasks = scaled(20, 200)
    service, server, service_env = make_service(stack_env(env, receiver, tasks))
    workers = Workers(service_env)
    root = Path(service_env["ARCHIVE_URL"])
    simulator.state.add_file("clip.mp4", size=3 * 1024 * 1024, faults=["slow"] * tasks)
    simulator.state.set_default(
        {
            "video_files": ["clip.mp4"],
            "steps": [{"status": "processing", "delay": 0.1}, {"status": "succeed", "delay": 0.3}],
        }
    )
    stop = threading.Event()
    kills = []

    def killer() -> None:
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.3, 1.0)):
            alive = [p for p in workers.processes if p.poll() is None]
            if alive:
                victim = rng.choice(alive)
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(timeout=10)
                kills.append(victim.pid)
            workers.start()

    try:
        workers.start()
        workers.start()
        chaos = threading.Thread(target=killer)
        chaos.start()
        ids = [f"chaos-{n:04d}" for n in range(tasks)]
        for external_id in ids:
            response = service.http.post(
                "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id}, headers=ASYNC
            )
            assert response.status_code == 202
        wait_for(lambda: len(kills) >= scaled(5, 30), timeout=120, what="some workers to be killed")
        stop.set()
        chaos.join()
        _recover_abandoned_jobs(service)
        # Workers die with the thread that started them (see Workers): the chaos thread's went with it.
        workers.start()
        workers.start()

        store = service.services.store
        wait_for(
            lambda: all(store.get(e).archive_state == "archived" for e in ids),
            timeout=scaled(120, 600),
            what="every video archived despite the kills",
        )
        expected = simulator.state.expected_sha256("clip.mp4")
        videos = [p for p in root.rglob("*.mp4") if not p.name.startswith(".")]
        assert len(videos) == tasks and all(
            store.get(e).archived_videos[0]["sha256"] == expected for e in ids
        )
        assert not list(root.rglob("*.part"))
        assert all([h["event"] for h in store.history(e)].count("archived") == 1 for e in ids)
        wait_for(lambda: {(e, "task.archived") for e in ids} <= set(receiver.by_event), timeout=120)
        assert all(len(webhook_ids) == 1 for webhook_ids in receiver.by_event.values())  # never two ids
    finally:
        stop.set()
        workers.stop()
        server.stop()


def _recover_abandoned_jobs(service: Service) -> None:
    """What a live worker's maintenance pass does once killed workers' heartbeats lapse (see README)."""
    for name in ALL_QUEUES:
        registry = StartedJobRegistry(name, connection=service.services.redis)
        registry.cleanup(timestamp=time.time() + JOB_MONITORING_INTERVAL_S + 61)
