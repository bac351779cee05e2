"""`/metrics`: who may read it, what the code counts, the gauges read from Redis, and the files the
worker processes share in multiprocess mode."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Service, Workers, make_service
from tests.support import free_port, wait_for
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.gauges import exposition
from webhook_service.domain.tenants import EVERYONE
from webhook_service.integrations import metrics
from webhook_service.keys import Keys
from webhook_service.notify.delivery_index import scoped_index
from webhook_service.notify.records import DeliveryStatus
from webhook_service.web.app import create_app

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels); parsing it also proves the format is valid."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_need_client_credentials_unless_public(env: dict[str, str]) -> None:
    protected = create_app({**env, "SERVICE_API_KEYS": "client-key-0123456789abcdef"}).test_client()
    assert protected.get("/metrics").status_code == 401
    answer = protected.get("/metrics", headers={"Authorization": "Bearer client-key-0123456789abcdef"})
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    public = create_app({**env, "SERVICE_API_KEYS": "client-key-0123456789abcdef", "METRICS_PUBLIC": "true"})
    assert public.test_client().get("/metrics").status_code == 200


def test_callbacks_are_counted_by_shape_and_outcome(service: Service, simulator) -> None:
    simulator.state.set_scenario("m-1", {"steps": [{"status": "succeed", "delay": 0, "send": False}]})
    assert service.submit({**IMAGE, "external_task_id": "m-1"}).status_code == 200
    url = callback_url_for(service.services.settings, "m-1")
    task_id = service.task("m-1")["task_id"]
    # Counted with the task's tenant (the default tenant's, here); a refused callback has none.
    counts = [
        ("legacy", "applied", "default"),
        ("legacy", "duplicate", "default"),
        ("newer", "stale", "default"),
        ("unknown", "bad_token", ""),
        ("unknown", "malformed", ""),
        ("legacy", "conflict", ""),
    ]
    before = {
        outcome: counted("kws_callbacks_total", shape=shape, outcome=outcome, tenant=tenant)
        for shape, outcome, tenant in counts
    }
    legacy = {"task_id": task_id, "task_status": "processing"}
    assert httpx.post(url, json=legacy).status_code == 200
    assert httpx.post(url, json=legacy).status_code == 200
    assert httpx.post(url, json={"id": task_id, "status": "submitted"}).status_code == 200
    assert httpx.post(f"{service.url}/callbacks/kling?token=forged", json=legacy).status_code == 403
    assert httpx.post(url, content=b"{not json").status_code == 400
    other = {"task_id": "x", "task_status": "succeed", "task_info": {"external_task_id": "m-2"}}
    assert httpx.post(url, json=other).status_code == 409

    scrape = samples(service.http.get("/metrics").text)
    for shape, outcome, tenant in counts:
        key = ("kws_callbacks_total", (("outcome", outcome), ("shape", shape), ("tenant", tenant)))
        assert scrape[key] == before[outcome] + 1, (shape, outcome)


def test_submissions_are_counted_by_upstream_code_and_timed(service: Service, simulator) -> None:
    accepted = counted("kws_submissions_total", code="0")
    refused = counted("kws_submissions_total", code="1201")
    timed = counted("kws_upstream_request_seconds_count", operation="create")
    simulator.state.set_scenario("m-bad", {"create_error": {"http": 400, "code": 1201, "message": "no"}})
    assert service.submit(IMAGE).status_code == 200
    assert service.submit({**IMAGE, "external_task_id": "m-bad"}).status_code == 400
    assert counted("kws_submissions_total", code="0") == accepted + 1
    assert counted("kws_submissions_total", code="1201") == refused + 1
    assert counted("kws_upstream_request_seconds_count", operation="create") == timed + 2


def test_gauges_come_from_redis_at_scrape_time(env: dict[str, str]) -> None:
    app = create_app({**env, "METRICS_PUBLIC": "true"})
    client = app.test_client()
    connection = app.extensions["webhook_service"].redis
    # Prefer: respond-async with no worker running: the tasks stay in the submission queue.
    for _ in range(3):
        answer = client.post("/v1/videos/image2video", json=IMAGE, headers={"Prefer": "respond-async"})
        assert answer.status_code == 202
    connection.zadd(Keys().dead_letters, {"dlv_a": 1, "dlv_b": 2})
    scrape = samples(client.get("/metrics").get_data(as_text=True))
    assert scrape[("kws_redis_up", ())] == 1
    assert scrape[("kws_tasks_queued", ())] == connection.zcard(Keys().submit_queue) == 3
    assert scrape[("kws_tasks_open", ())] == 0
    assert scrape[("kws_dead_letters", ())] == 2
    # One dispatch between the three: queued and not started, it will find every task queued before it.
    assert scrape[("kws_rq_jobs", (("queue", "submit"), ("state", "queued")))] == 1


def test_dead_letter_gauge_reads_the_index_the_deliveries_write(redis_url: str) -> None:
    index = scoped_index(redis.Redis.from_url(redis_url), Keys(), EVERYONE, DeliveryStatus.FAILED)
    assert index == Keys().dead_letters


def test_scrape_without_redis_still_answers(env: dict[str, str]) -> None:
    app = create_app({**env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "METRICS_PUBLIC": "true"})
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    scrape = samples(answer.get_data(as_text=True))
    assert scrape[("kws_redis_up", ())] == 0
    assert ("kws_tasks_open", ()) not in scrape


@pytest.fixture
def multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scrape reads this directory, as under gunicorn; the workers write into it."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    monkeypatch.setattr(metrics, "MULTIPROCESS_DIR", str(directory))
    return directory


def test_worker_processes_share_their_files_and_the_scrape_adds_them_up(
    env: dict[str, str], simulator, multiprocess_dir: Path
) -> None:
    service, server, service_env = make_service({**env, "ARCHIVE_RETRY_BASE_S": "0"})
    # Downloads in forked work horses (not the default), which take turns with one set of files.
    forking = {"PROMETHEUS_MULTIPROC_DIR": str(multiprocess_dir), "WORKER_FORK_QUEUES": "archive"}
    workers = Workers({**service_env, **forking})
    worker = workers.start()
    try:
        for n in range(3):
            assert service.submit({**IMAGE, "external_task_id": f"mp-{n}"}).status_code == 200
        for n in range(3):
            task = f"/v1/tasks/mp-{n}"
            wait_for(
                lambda task=task: service.http.get(task).json()["data"]["archive_state"] == "archived",
                timeout=60,
                what=f"archive of {task}",
            )
        scrape = samples(exposition(service.services.redis, service.services.keys).decode())
    finally:
        workers.stop()
        server.stop()
    assert scrape[("kws_download_seconds_count", (("outcome", "ok"),))] == 3
    assert scrape[("kws_download_bytes_total", ())] > 0
    # Every archive job ran in a work horse of its own, and they all wrote the one set of files of their
    # worker (the other jobs run in the worker's process, under its pid).
    files = {p.name for p in multiprocess_dir.glob("*.db")}
    pid = worker.pid
    assert f"counter_{pid}job.db" in files
    assert files <= {f"{kind}_{pid}{job}.db" for kind in ("counter", "histogram") for job in ("", "job")}
    # At the next start, the files of processes that are gone are removed.
    metrics.remove_files_of_dead_processes()
    assert not list(multiprocess_dir.glob("*.db"))
