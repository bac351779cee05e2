"""Kling's callbacks: both shapes, any order, duplicates, forgeries, signatures, and Redis failing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rq import Queue
from standardwebhooks import Webhook

from tests.conftest import SIM_TOKEN, Service
from tests.support import LiveServer, PrivateRedis, wait_for
from webhook_service.domain.callback_tokens import callback_url_for, external_id_from_token
from webhook_service.jobs import ARCHIVE_QUEUE, job_id
from webhook_service.web.app import create_app

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


def history_events(service: Service, external_id: str, event: str = "status") -> list[dict[str, Any]]:
    return [entry for entry in service.services.store.history(external_id) if entry["event"] == event]


def statuses_applied(service: Service, external_id: str) -> list[str]:
    return [e["status"] for e in history_events(service, external_id) if e["outcome"] == "applied"]


def post_callback(service: Service, external_id: str, body: Any, **kwargs: Any) -> httpx.Response:
    url = callback_url_for(service.services.settings, external_id)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(url, content=content, headers=headers, timeout=10, **kwargs)


def upstream_task(simulator, task_id: str) -> dict[str, Any]:
    """The task as the simulator (Kling) reports it: a legacy callback body has the same keys."""
    response = httpx.get(
        f"{simulator.url}/v1/videos/image2video/{task_id}", headers={"Authorization": f"Bearer {SIM_TOKEN}"}
    )
    return response.json()["data"]


def queued_task(service: Service, simulator, external_id: str) -> None:
    """A submitted task whose upstream sends no callbacks: the test sends its own."""
    simulator.state.set_scenario(external_id, {"steps": [{"status": "succeed", "delay": 0, "send": False}]})
    assert service.submit({**IMAGE, "external_task_id": external_id}).status_code == 200


@pytest.mark.parametrize("shape", ["legacy", "new"])
def test_both_callback_shapes_finish_the_task(service: Service, simulator, shape: str) -> None:
    # Both steps due together: one of the simulator's threads sends them in order. At their default
    # times (0.2 and 0.5 s) two threads sent them, and a loaded machine let `succeed` land first.
    steps = [{"status": "processing", "delay": 1.0}, {"status": "succeed", "delay": 1.0}]
    simulator.state.set_default({"shape": shape, "steps": steps})
    external_id = service.submit(IMAGE).json()["data"]["task_info"]["external_task_id"]

    done = wait_for(
        lambda: (t := service.task(external_id))["task_status"] == "succeed" and t, what="succeed"
    )
    assert done["task_result"]["videos"][0]["url"].startswith(simulator.url)
    assert statuses_applied(service, external_id) == ["submitted", "processing", "succeed"]
    assert all(e["body"] for e in history_events(service, external_id) if e["source"] == "callback")


def test_callback_before_the_create_response_lands_on_its_task(service: Service, simulator) -> None:
    simulator.state.set_default({"before_response": True, "steps": [{"status": "processing", "delay": 0}]})
    data = service.submit({**IMAGE, "external_task_id": "early"}).json()["data"]

    assert data["task_status"] == "processing"  # the callback got there first, and it is not undone
    sources = [(e["source"], e["outcome"]) for e in history_events(service, "early")]
    assert sources == [("callback", "applied"), ("create", "stale")]
    assert service.task("early")["task_id"] == data["task_id"]


def test_duplicates_and_out_of_order_callbacks_change_nothing(service: Service, simulator) -> None:
    simulator.state.set_default(
        {
            "steps": [
                {"status": "processing", "delay": 0.4, "copies": 2},
                {"status": "succeed", "delay": 0.1, "copies": 3},
            ]
        }
    )
    external_id = service.submit(IMAGE).json()["data"]["task_info"]["external_task_id"]

    wait_for(lambda: len(simulator.state.callbacks()) == 5, what="all five callbacks")
    assert all(c["status_code"] == 200 for c in simulator.state.callbacks())
    assert statuses_applied(service, external_id) == ["submitted", "succeed"]
    outcomes = [e["outcome"] for e in history_events(service, external_id) if e["source"] == "callback"]
    assert sorted(outcomes) == ["applied", "duplicate", "duplicate", "stale", "stale"]
    assert service.task(external_id)["task_status"] == "succeed"


def test_terminal_status_never_changes(service: Service, simulator) -> None:
    queued_task(service, simulator, "final")
    assert (
        post_callback(
            service, "final", {"task_id": "x1", "task_status": "failed", "task_status_msg": "nsfw"}
        ).json()["data"]["outcome"]
        == "applied"
    )
    later = post_callback(service, "final", {"task_id": "x1", "task_status": "succeed"})
    assert later.status_code == 200 and later.json()["data"]["outcome"] == "duplicate"
    task = service.task("final")
    assert task["task_status"] == "failed" and task["task_status_msg"] == "nsfw"


def test_forged_or_moved_token_is_refused(service: Service, simulator) -> None:
    queued_task(service, simulator, "victim")
    before = service.task("victim")
    url = callback_url_for(service.services.settings, "victim")

    forged = httpx.post(url[:-3] + "AAA", json={"task_status": "succeed"}, timeout=10)
    missing = httpx.post(f"{service.url}/callbacks/kling", json={"task_status": "succeed"}, timeout=10)
    other_secret = create_app({**_env_of(service), "SECRET_KEY": "another-secret-key-0123456789"})
    foreign = httpx.post(
        callback_url_for(other_secret.extensions["webhook_service"].settings, "victim"),
        json={"task_status": "succeed"},
        timeout=10,
    )

    assert [r.status_code for r in (forged, missing, foreign)] == [403, 403, 403]
    assert service.task("victim") == before


def test_a_remembered_token_is_good_for_its_key_only(service: Service, simulator) -> None:
    """Verified tokens are remembered (every callback of a task carries the same one): that memory must
    never let a token through under another SECRET_KEY, nor let a forged one in on its second try."""
    queued_task(service, simulator, "remembered")
    url = callback_url_for(service.services.settings, "remembered")
    forged = url[:-3] + "AAA"
    other_key = create_app({**_env_of(service), "SECRET_KEY": "another-secret-key-0123456789"})

    answers = [
        httpx.post(url, json={"task_status": "processing"}, timeout=10),
        httpx.post(forged, json={"task_status": "succeed"}, timeout=10),
        httpx.post(forged, json={"task_status": "succeed"}, timeout=10),
        httpx.post(url, json={"task_status": "processing"}, timeout=10),
    ]

    assert [r.status_code for r in answers] == [200, 403, 403, 200]
    assert [r.json()["data"]["outcome"] for r in (answers[0], answers[3])] == ["applied", "duplicate"]
    other_settings = other_key.extensions["webhook_service"].settings
    assert external_id_from_token(service.services.settings, url.partition("token=")[2]) == "remembered"
    assert external_id_from_token(other_settings, url.partition("token=")[2]) is None


def test_body_about_another_task_is_refused(service: Service, simulator) -> None:
    queued_task(service, simulator, "one")
    queued_task(service, simulator, "two")
    two_task_id = service.task("two")["task_id"]

    wrong_ext = post_callback(
        service, "one", {"task_status": "succeed", "task_info": {"external_task_id": "two"}}
    )
    wrong_id = post_callback(service, "one", {"task_id": two_task_id, "task_status": "succeed"})

    assert (wrong_ext.status_code, wrong_id.status_code) == (409, 409)
    assert service.task("one")["task_status"] == "submitted"


def test_malformed_and_oversized_bodies_change_nothing(service: Service, simulator) -> None:
    queued_task(service, simulator, "robust")
    before = service.task("robust")

    assert post_callback(service, "robust", b"{not json").status_code == 400
    assert post_callback(service, "robust", b"[1, 2]").status_code == 400
    assert post_callback(service, "robust", {"hello": "world"}).status_code == 400
    assert post_callback(service, "robust", {"task_status": "exploded"}).status_code == 400
    big = {"task_status": "succeed", "padding": "x" * (1024 * 1024)}
    assert post_callback(service, "robust", big).status_code == 413

    assert service.task("robust") == before
    assert history_events(service, "robust", "status")[-1]["source"] == "create"


def test_a_refused_body_is_named_as_what_it_is_with_the_errors_list(service: Service, simulator) -> None:
    """The callback endpoint answers in front of Flask, by its own code: the same words and `errors` as
    the rest of the API, a form called a form and not "not valid JSON"."""
    queued_task(service, simulator, "said")
    form_type = "application/x-www-form-urlencoded"
    form = post_callback(service, "said", b"task_status=succeed", headers={"Content-Type": form_type})
    assert form.status_code == 400 and form.json()["code"] == 1201
    assert form.json()["errors"] == [{"field": "", "code": "not_json", "message": form.json()["message"]}]
    assert form.json()["message"].startswith(f"the callback body is a form ({form_type})")
    text = post_callback(service, "said", b"{not json", headers={"Content-Type": "text/plain"})
    (problem,) = text.json()["errors"]
    assert problem["code"] == "invalid_json"
    assert problem["message"].startswith("the callback body is not valid JSON (Content-Type: text/plain): ")
    assert post_callback(service, "said", b"[1]").json()["errors"][0]["code"] == "not_object"
    assert "errors" not in post_callback(service, "said", {"hello": "world"}).json()  # one thing to say


@pytest.fixture
def signed_service(env: dict[str, str]):
    server = LiveServer()
    app = create_app({**env, "PUBLIC_BASE_URL": server.url, "KLING_WEBHOOK_SECRET": WHSEC})
    server.start(app)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield Service(server.url, app, http)
    server.stop()


def test_signed_callbacks_are_verified(signed_service: Service, simulator) -> None:
    simulator.state.set_default({"webhook_secret": WHSEC, "shape": "new"})
    external_id = signed_service.submit(IMAGE).json()["data"]["task_info"]["external_task_id"]

    wait_for(lambda: signed_service.task(external_id)["task_status"] == "succeed", what="signed callbacks")
    webhook_ids = [
        e["webhook_id"] for e in history_events(signed_service, external_id) if e["source"] == "callback"
    ]
    assert webhook_ids and all(webhook_ids)


def test_unsigned_or_badly_signed_callbacks_are_refused(signed_service: Service, simulator) -> None:
    queued_task(signed_service, simulator, "signed")
    body = json.dumps({"task_status": "succeed"})
    now = datetime.now(UTC)
    good = Webhook(WHSEC).sign("msg_1", now, body)
    wrong_key = Webhook("whsec_" + "QUJD" * 8).sign("msg_1", now, body)
    old = Webhook(WHSEC).sign("msg_1", datetime.fromtimestamp(now.timestamp() - 600, UTC), body)

    def headers(signature: str, timestamp: float) -> dict[str, str]:
        return {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(int(timestamp)),
            "webhook-signature": signature,
        }

    cases = {
        "unsigned": {},
        "wrong key": headers(wrong_key, now.timestamp()),
        "too old": headers(old, now.timestamp() - 600),
        "body changed": headers(good, now.timestamp()),
        "garbage": headers("nonsense", now.timestamp()),
    }
    for name, case_headers in cases.items():
        content = body.replace("succeed", "failed") if name == "body changed" else body
        response = post_callback(signed_service, "signed", content.encode(), headers=case_headers)
        assert response.status_code == 401, name
    assert signed_service.task("signed")["task_status"] == "submitted"

    ok = post_callback(signed_service, "signed", body.encode(), headers=headers(good, now.timestamp()))
    assert ok.status_code == 200 and signed_service.task("signed")["task_status"] == "succeed"


def test_klings_published_signature_test_vector() -> None:
    body = (
        '{"id":"1234567890","status":"succeeded","message":"",'
        '"create_time":1781080778802,"update_time":1781080794151}'
    )
    signature = Webhook(WHSEC).sign("9876543210", datetime.fromtimestamp(1781080794, UTC), body)
    assert signature == "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def test_succeed_enqueues_one_archive_job_under_concurrent_duplicates(service: Service, simulator) -> None:
    queued_task(service, simulator, "busy")
    body = upstream_task(simulator, service.task("busy")["task_id"])  # Kling's own succeed, with its video
    assert body["task_status"] == "succeed"
    start = threading.Barrier(8)
    answers: list[int] = []

    def send() -> None:
        start.wait()
        answers.append(post_callback(service, "busy", body).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [200] * 8
    connection = service.services.redis
    queue = Queue(ARCHIVE_QUEUE, connection=connection)
    assert queue.job_ids == [job_id("archive", "busy")]
    run_worker_burst(service)
    assert len(history_events(service, "busy", "archived")) == 1
    assert len(history_events(service, "busy", "video_archived")) == 1


def test_redis_down_answers_503_and_the_retried_callback_lands(env: dict[str, str], simulator) -> None:
    private = PrivateRedis().start()
    server = LiveServer()
    try:
        app = create_app({**env, "REDIS_URL": private.url, "PUBLIC_BASE_URL": server.url})
        server.start(app)
        service = Service(server.url, app, httpx.Client(base_url=server.url, timeout=10))
        queued_task(service, simulator, "resilient")
        task_id = service.task("resilient")["task_id"]

        private.stop()
        down = post_callback(service, "resilient", {"task_id": task_id, "task_status": "succeed"})
        assert down.status_code == 503 and down.json()["code"] == 5001
        assert service.http.get("/readyz").status_code == 503

        private.start()
        wait_for(lambda: service.http.get("/readyz").status_code == 200, what="readiness after restart")
        retried = post_callback(service, "resilient", {"task_id": task_id, "task_status": "succeed"})
        assert retried.status_code == 200 and retried.json()["data"]["outcome"] == "applied"
        assert service.task("resilient")["task_status"] == "succeed"
    finally:
        server.stop()
        private.stop()


def run_worker_burst(service: Service) -> None:
    """A real worker process, as the Procfile runs it, until the queues are empty."""
    result = subprocess.run(
        [sys.executable, "-m", "workers", "--burst"],
        env={**os.environ, **_env_of(service)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def _env_of(service: Service) -> dict[str, str]:
    settings = service.services.settings
    return {
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key,
        "KLING_API_BASE": settings.kling_api_base,
        "KLING_API_TOKEN": settings.kling_api_token,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "ARCHIVE_URL": settings.archive_url,
        "DOWNLOAD_ALLOWED_HOSTS": ",".join(settings.download_allowed_hosts),
    }


def test_each_finished_task_gets_its_own_archive_job(service: Service, simulator) -> None:
    for n in range(5):
        queued_task(service, simulator, f"many-{n}")
    for n in range(5):
        for status in ("processing", "succeed"):
            assert post_callback(service, f"many-{n}", {"task_status": status}).status_code == 200

    assert all(service.task(f"many-{n}")["task_status"] == "succeed" for n in range(5))
    queue = Queue(ARCHIVE_QUEUE, connection=service.services.redis)
    assert sorted(queue.job_ids) == sorted(job_id("archive", f"many-{n}") for n in range(5))
