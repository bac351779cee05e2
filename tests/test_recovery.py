"""A callback for a task the service lost (Redis flushed) is accepted: the task is recorded again, marked
recovered, and its video archived once, never fetched into a second copy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from rq import Queue

from tests.conftest import SIM_TOKEN, Service, Workers, make_service
from tests.support import Receiver, wait_for
from tests.test_reconcile import race
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.clock import now_ms
from webhook_service.jobs import ARCHIVE_QUEUE, job_id

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a lighthouse at dusk"}
WHSEC = "whsec_" + "cmVjb3Zlcnktc2VjcmV0LXJlY292ZXJ5LXNlY3JldC0x"
SAMPLE = Path(__file__).resolve().parent.parent / "kling_simulator" / "static" / "sample.mp4"
SILENT = {"steps": [{"status": "succeed", "delay": 0, "send": False}]}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(WHSEC)
    yield receiver
    receiver.server.stop()


@pytest.fixture
def stack(env: dict[str, str], receiver: Receiver) -> Iterator[tuple[Service, dict[str, str]]]:
    service, server, service_env = make_service(
        {**env, "NOTIFY_WEBHOOK_URLS": receiver.url, "NOTIFY_WEBHOOK_SECRET": WHSEC}
    )
    yield service, service_env
    server.stop()


def kling_task(simulator: Any, task_id: str) -> dict[str, Any]:
    """The task as Kling reports it: the legacy callback body has the same keys."""
    answer = httpx.get(
        f"{simulator.url}/v1/videos/image2video/{task_id}", headers={"Authorization": f"Bearer {SIM_TOKEN}"}
    )
    data: dict[str, Any] = answer.json()["data"]
    return data


def call_back(service: Service, external_id: str, body: dict[str, Any]) -> httpx.Response:
    url = callback_url_for(service.services.settings, external_id)
    return httpx.post(url, content=json.dumps(body).encode(), timeout=10)


def events(service: Service, external_id: str) -> list[str]:
    return [entry["event"] for entry in service.services.store.history(external_id)]


def archived(service: Service, external_id: str) -> bool:
    task = service.services.store.get(external_id)
    return task is not None and task.archive_state == "archived"


def test_a_callback_for_a_lost_task_records_it_again_and_archives_its_video(
    stack: tuple[Service, dict[str, str]], simulator, receiver: Receiver
) -> None:
    service, service_env = stack
    simulator.state.set_scenario("lost-1", SILENT)
    assert service.submit({**IMAGE, "external_task_id": "lost-1"}).status_code == 200
    task_id = service.services.store.get("lost-1").task_id
    service.services.redis.flushdb()
    assert service.http.get("/v1/videos/image2video/lost-1").status_code == 404

    workers = Workers(service_env)
    workers.start()
    try:
        answer = call_back(service, "lost-1", kling_task(simulator, task_id))
        assert answer.status_code == 200 and answer.json()["data"]["outcome"] == "applied"
        wait_for(lambda: archived(service, "lost-1"), timeout=60, what="the recovered task's archive")
        wait_for(lambda: ("lost-1", "task.archived") in receiver.by_event, timeout=60, what="its event")
    finally:
        workers.stop()

    view = service.http.get("/v1/tasks/lost-1").json()["data"]
    assert view["recovered"] is True and view["status"] == "succeed" and view["task_id"] == task_id
    after_the_loss = ["recovered", "status", "archive_started", "video_archived", "archived"]
    assert events(service, "lost-1") == after_the_loss
    assert service.task(task_id)["task_status"] == "succeed"  # found again by Kling's id too
    video = view["archived_videos"][0]
    stored = Path(service.services.settings.archive_url) / video["key"]
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()


def test_callbacks_racing_for_one_lost_task_record_it_once(service: Service, simulator) -> None:
    ids = [f"racing-{n}" for n in range(5)]  # KLING_MAX_CONCURRENCY: each goes straight up
    bodies = {}
    for external_id in ids:
        simulator.state.set_scenario(external_id, SILENT)
        assert service.submit({**IMAGE, "external_task_id": external_id}).status_code == 200
        bodies[external_id] = kling_task(simulator, service.services.store.get(external_id).task_id)
    service.services.redis.flushdb()

    for external_id in ids:
        succeed = bodies[external_id]
        processing = {**succeed, "task_status": "processing", "task_result": None}
        answers = race(*(partial(call_back, service, external_id, body) for body in (processing, succeed)))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert events(service, external_id).count("recovered") == 1
        assert service.services.store.get(external_id).status == "succeed"
    queue = Queue(ARCHIVE_QUEUE, connection=service.services.redis)
    assert sorted(queue.job_ids) == sorted(job_id("archive", e) for e in ids)  # one archive job each


def test_a_lost_task_already_archived_comes_back_from_its_metadata_and_is_not_fetched_again(
    stack: tuple[Service, dict[str, str]], simulator, receiver: Receiver
) -> None:
    service, service_env = stack
    simulator.state.add_file("clip.mp4", size=256 * 1024)
    simulator.state.set_scenario("kept-1", {"video_files": ["clip.mp4"], **SILENT})
    assert service.submit({**IMAGE, "external_task_id": "kept-1"}).status_code == 200
    original = service.services.store.get("kept-1")
    workers = Workers(service_env)
    workers.start()
    try:
        succeed = kling_task(simulator, original.task_id)
        assert call_back(service, "kept-1", succeed).status_code == 200
        wait_for(lambda: archived(service, "kept-1"), timeout=60, what="the first archive")
        wait_for(lambda: ("kept-1", "task.archived") in receiver.by_event, timeout=60, what="its event")
        service.services.redis.flushdb()

        assert call_back(service, "kept-1", succeed).status_code == 200  # a late copy of the callback
        wait_for(lambda: archived(service, "kept-1"), timeout=60, what="the recovered task's archive")
        wait_for(lambda: sum(receiver.ids.values()) == 2, timeout=60, what="the event again")
    finally:
        workers.stop()

    task = service.services.store.get("kept-1")
    assert task.recovered and task.created_at == original.created_at  # the same archive folder
    assert [r["name"] for r in simulator.state.file_requests()] == ["clip.mp4"]  # fetched once only
    root = Path(service.services.settings.archive_url)
    assert len([p for p in root.rglob("*.mp4")]) == 1
    metadata = json.loads((root / task.archived_videos[0]["key"]).with_name("metadata.json").read_text())
    assert metadata["request"]["prompt"] == IMAGE["prompt"]  # what Kling never knew is kept
    assert [e["event"] for e in metadata["history"]][:2] == ["created", "status"]
    assert "recovered" in [e["event"] for e in metadata["history"]]
    (webhook_id,) = receiver.by_event[("kept-1", "task.archived")]
    assert receiver.ids == {webhook_id: 2}  # announced again after the loss, under the same webhook-id


def test_a_task_removed_by_retention_is_not_recorded_again(service: Service, simulator) -> None:
    simulator.state.set_scenario("gone-1", SILENT)
    assert service.submit({**IMAGE, "external_task_id": "gone-1"}).status_code == 200
    store = service.services.store
    task = store.get("gone-1")
    pipe = service.services.redis.pipeline(transaction=True)
    store.remove(pipe, task, json.dumps({"removed_at": now_ms()}), 3600)
    pipe.execute()

    answer = call_back(service, "gone-1", kling_task(simulator, task.task_id))
    assert answer.status_code == 404
    assert store.get("gone-1") is None


def test_a_forged_token_records_nothing(service: Service, simulator) -> None:
    """Only the service's own token brings a task back: anyone else's callback is still refused."""
    url = callback_url_for(service.services.settings, "forged-1").replace("token=", "token=x")
    answer = httpx.post(url, json={"task_id": "1", "task_status": "succeed"}, timeout=10)
    assert answer.status_code == 403 and service.services.store.get("forged-1") is None


def test_a_lost_task_never_archived_still_tells_its_callback_url(
    env: dict[str, str], simulator, receiver: Receiver
) -> None:
    """Redis lost before the archive: no metadata.json, but the request.json written when the task was
    recorded gives back its client's callback_url (and tenant, type, creation time), so the client still
    hears that its video is archived."""
    own = Receiver(WHSEC)  # the default tenant's callback secret is NOTIFY_WEBHOOK_SECRET
    service, server, service_env = make_service(
        env,
        NOTIFY_WEBHOOK_URLS=receiver.url,
        NOTIFY_WEBHOOK_SECRET=WHSEC,
        NOTIFY_ALLOWED_HOSTS="127.0.0.1",  # the callback_url is the loopback receiver
    )
    workers = Workers(service_env)
    try:
        simulator.state.set_scenario("lost-cb", SILENT)
        body = {**IMAGE, "external_task_id": "lost-cb", "callback_url": own.url}
        assert service.submit(body).status_code == 200
        original = service.services.store.get("lost-cb")
        folder = Path(service.services.settings.archive_url) / task_folder(original)
        assert json.loads((folder / "inputs" / "request.json").read_text())["callback_url"] == own.url
        service.services.redis.flushdb()

        workers.start()
        assert call_back(service, "lost-cb", kling_task(simulator, original.task_id)).status_code == 200
        wait_for(lambda: ("lost-cb", "task.archived") in own.by_event, timeout=60, what="the client told")
        wait_for(lambda: ("lost-cb", "task.archived") in receiver.by_event, timeout=60, what="the operator")
    finally:
        workers.stop()
        server.stop()
        own.server.stop()
    task = service.services.store.get("lost-cb")
    assert task.recovered and task.client_callback_url == own.url
    assert task.created_at == original.created_at  # the same folder as its request.json
    recovered = next(h for h in service.services.store.history("lost-cb") if h["event"] == "recovered")
    assert recovered["from_archive"] is True and "type_known" not in recovered
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["callback_url"] == own.url  # kept for a later loss too


def test_a_video_committed_before_redis_lost_its_record_is_not_fetched_again(
    stack: tuple[Service, dict[str, str]], simulator, receiver: Receiver
) -> None:
    """Redis lost between the video's commit and metadata.json: the task comes back knowing nothing of
    the file, and its archive takes the file in place (its sha256 recorded at the commit) rather than
    fetch it over itself."""
    service, service_env = stack
    simulator.state.add_file("once.mp4", size=64 * 1024)
    simulator.state.set_scenario("half-1", {"video_files": ["once.mp4"], **SILENT})
    assert service.submit({**IMAGE, "external_task_id": "half-1"}).status_code == 200
    original = service.services.store.get("half-1")
    succeed = kling_task(simulator, original.task_id)
    workers = Workers(service_env)
    workers.start()
    try:
        assert call_back(service, "half-1", succeed).status_code == 200
        wait_for(lambda: archived(service, "half-1"), timeout=60, what="the first archive")
        folder = Path(service.services.settings.archive_url) / task_folder(original)
        (folder / "metadata.json").unlink()  # as if Redis was lost before it was written
        service.services.redis.flushdb()

        assert call_back(service, "half-1", succeed).status_code == 200
        wait_for(lambda: archived(service, "half-1"), timeout=60, what="the recovered task's archive")
    finally:
        workers.stop()
    assert [r["name"] for r in simulator.state.file_requests()] == ["once.mp4"]  # fetched once only
    (video,) = service.services.store.get("half-1").archived_videos
    assert video["found_in_archive"] is True and video["sha256"] == simulator.state.expected_sha256(
        "once.mp4"
    )
    assert json.loads((folder / "metadata.json").read_text())["videos"][0]["key"] == video["key"]
