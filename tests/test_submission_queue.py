"""The submission queue: Kling's concurrency limit respected, arrival order kept, nothing created twice."""

from __future__ import annotations

import pytest
from rq import Queue
from rq.job import Job

from tests.conftest import Workers, make_service
from tests.support import wait_for
from tests.test_callbacks import post_callback
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.submission import dispatch
from webhook_service.jobs import DISPATCH_JOB_ID, DISPATCH_WANTED_TTL_S, SUBMIT_QUEUE, job_id

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
ASYNC = {"Prefer": "respond-async"}
QUICK = [{"status": "processing", "delay": 0.05}, {"status": "succeed", "delay": 0.15}]


def events_of(service, external_id: str) -> list[str]:
    return [e["event"] for e in service.services.store.history(external_id)]


@pytest.mark.parametrize(
    "service_limit", [3, 5], ids=["service limit = Kling's", "service limit above Kling's"]
)
def test_fifty_queued_requests_all_finish_within_klings_limit(env, simulator, service_limit: int) -> None:
    simulator.state.set_default({"steps": QUICK, "max_open": 3})
    service, server, service_env = make_service(
        env, KLING_MAX_CONCURRENCY=str(service_limit), ARCHIVE_RETRY_BASE_S="0"
    )
    workers = Workers(service_env)
    try:
        ids = [f"burst-{n:02d}" for n in range(50)]
        for external_id in ids:
            response = service.http.post(
                "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id}, headers=ASYNC
            )
            assert response.status_code == 202 and response.json()["data"]["task_status"] == "queued"
        workers.start()
        workers.start()

        wait_for(
            lambda: all(service.services.store.get(e).status == "succeed" for e in ids),
            timeout=300,  # with 1303s, each refusal pauses sending for a second or more
            what="all fifty tasks to succeed",
        )
        upstream = simulator.state.tasks()
        assert simulator.state.max_open_seen <= 3
        assert sorted(t["external_task_id"] for t in upstream) == ids  # each created exactly once
        # In arrival order: tasks leave the queue first in, first out (test_queue_is_fifo), and one that
        # Kling refuses goes back to its place. Tasks sent at the same time (at most the service's limit)
        # may reach Kling in any order, so creation order lags arrival by less than that. A refused task
        # is also passed by the tasks that took the slots freed while its refusal was on its way back
        # (on a busy machine, as many again): the order is kept within two windows, not one.
        order = [t["external_task_id"] for t in upstream]
        lag = max(abs(order.index(e) - n) for n, e in enumerate(ids))
        deferred = [e for e in ids if "create_deferred" in events_of(service, e)]
        if service_limit == 3:
            assert deferred == []  # the service's own limit kept it from ever hearing 1303
            assert lag < service_limit
        else:
            assert deferred  # Kling said 1303 and the service backed off and tried again
            assert lag < 2 * service_limit
    finally:
        workers.stop()
        server.stop()


def test_respond_async_answers_before_anything_goes_upstream(env, simulator) -> None:
    service, server, service_env = make_service(env)
    workers = Workers(service_env)
    try:
        response = service.http.post("/kling/v1/videos/image2video", json=IMAGE, headers=ASYNC)
        assert response.status_code == 202
        data = response.json()["data"]
        external_id = data["task_info"]["external_task_id"]
        # Until Kling gives it one, its task_id is its external_task_id: Kling clients poll by task_id.
        assert data["task_status"] == "queued" and data["task_id"] == external_id
        assert simulator.state.tasks() == []

        workers.start()
        wait_for(lambda: service.task(external_id)["task_status"] == "succeed", timeout=30, what="the worker")
        assert [t["external_task_id"] for t in simulator.state.tasks()] == [external_id]
    finally:
        workers.stop()
        server.stop()


def create_async(service, external_id: str) -> int:
    body = {**IMAGE, "external_task_id": external_id}
    return service.http.post("/v1/videos/image2video", json=body, headers=ASYNC).status_code


def test_a_burst_of_creates_queues_one_dispatch_and_a_create_after_it_started_another(env, simulator) -> None:
    """Thirty creates answered at once queue one dispatch job between them, not thirty: the one queued,
    not yet started, finds every task queued before it starts. Once it has started, a new create wakes
    another (the first may have finished taking from the queues), and every task reaches Kling once."""
    service, server, service_env = make_service(env)
    workers = Workers(service_env)
    submit_jobs = Queue(SUBMIT_QUEUE, connection=service.services.redis)
    try:
        burst = [f"burst-{n:02d}" for n in range(30)]
        for external_id in burst:
            assert create_async(service, external_id) == 202
        assert submit_jobs.job_ids == [job_id(DISPATCH_JOB_ID, "accepted-burst-00")]

        workers.start()
        wait_for(lambda: len(simulator.state.tasks()) == 30, timeout=60, what="the burst sent upstream")
        assert create_async(service, "later") == 202
        wait_for(lambda: len(simulator.state.tasks()) == 31, timeout=60, what="the later task sent upstream")
        assert sorted(t["external_task_id"] for t in simulator.state.tasks()) == sorted([*burst, "later"])
        assert Job.exists(job_id(DISPATCH_JOB_ID, "accepted-later"), connection=service.services.redis)
    finally:
        workers.stop()
        server.stop()


def test_a_dispatch_lost_before_it_started_holds_back_wake_ups_for_a_bounded_time(env, simulator) -> None:
    """A dispatch job lost with its worker before it started leaves its mark for DISPATCH_WANTED_TTL_S
    at most: wake-ups meanwhile queue no job (the reconciliation pass dispatches), later ones do."""
    service, server, _ = make_service(env)
    services = service.services
    submit_jobs = Queue(SUBMIT_QUEUE, connection=services.redis)
    try:
        assert create_async(service, "lost") == 202
        submit_jobs.empty()  # the job is gone; its mark stays
        assert 0 < services.redis.ttl(services.keys.dispatch_wanted) <= DISPATCH_WANTED_TTL_S
        assert create_async(service, "meanwhile") == 202
        assert submit_jobs.job_ids == []
        services.redis.delete(services.keys.dispatch_wanted)  # as its TTL ends
        assert create_async(service, "after") == 202
        assert submit_jobs.job_ids == [job_id(DISPATCH_JOB_ID, "accepted-after")]
        assert dispatch(services) == 3  # what that job does: nothing was lost, only woken later
        sent = sorted(t["external_task_id"] for t in simulator.state.tasks())
        assert sent == ["after", "lost", "meanwhile"]
    finally:
        server.stop()


def test_at_the_limit_a_request_waits_then_answers_queued(env, simulator) -> None:
    simulator.state.set_default({"steps": [{"status": "processing", "delay": 0, "send": False}]})
    service, server, service_env = make_service(env, KLING_MAX_CONCURRENCY="1", SUBMIT_WAIT_S="0.3")
    workers = Workers(service_env)
    try:
        assert service.submit({**IMAGE, "external_task_id": "first"}).status_code == 200
        second = service.submit({**IMAGE, "external_task_id": "second"})
        assert second.status_code == 202 and second.json()["data"]["task_status"] == "queued"
        assert len(simulator.state.tasks()) == 1

        workers.start()
        first_task_id = service.task("first")["task_id"]
        post_callback(
            service, "first", {"task_id": first_task_id, "task_status": "failed", "task_status_msg": "x"}
        )
        wait_for(lambda: service.task("second")["task_status"] == "submitted", timeout=30, what="the slot")
        assert [t["external_task_id"] for t in simulator.state.tasks()] == ["first", "second"]
    finally:
        workers.stop()
        server.stop()


def test_a_slot_freed_with_nothing_waiting_wakes_no_dispatch(env, simulator) -> None:
    """A finished task wakes a dispatch only when a task waits for its slot: most finish with none
    waiting, and a worker would run a job for nothing (the case with one waiting is the test above)."""
    simulator.state.set_default({"steps": [{"status": "processing", "delay": 0, "send": False}]})
    service, server, _ = make_service(env, KLING_MAX_CONCURRENCY="2", SUBMIT_WAIT_S="0.3")
    try:
        submit_jobs = Queue(SUBMIT_QUEUE, connection=service.services.redis)
        for name in ("alone", "with-one-waiting"):
            assert service.submit({**IMAGE, "external_task_id": name}).status_code == 200
        assert service.submit({**IMAGE, "external_task_id": "waiting"}).status_code == 202

        def finish(name: str) -> None:
            task_id = service.task(name)["task_id"]
            failed = {"task_id": task_id, "task_status": "failed", "task_status_msg": "x"}
            assert post_callback(service, name, failed).status_code == 200

        finish("with-one-waiting")
        woken = job_id(DISPATCH_JOB_ID, "freed-with-one-waiting")
        assert Job.exists(woken, connection=service.services.redis)
        dispatch(service.services)  # what that job does: the waiting task takes the slot
        assert service.task("waiting")["task_status"] == "submitted"
        queued_before = submit_jobs.job_ids
        finish("alone")
        assert service.task("alone")["task_status"] == "failed"
        assert submit_jobs.job_ids == queued_before  # nothing waits: no dispatch job
    finally:
        server.stop()


@pytest.mark.parametrize("code", [5000, 5002])
def test_server_error_after_creation_never_creates_twice(env, simulator, code: int) -> None:
    error = {"http": 500 if code == 5000 else 504, "code": code, "message": "oops", "after_create": True}
    simulator.state.set_default({"create_error": error, "steps": QUICK})
    service, server, service_env = make_service(env)
    workers = Workers(service_env)
    try:
        for n in range(3):
            service.http.post(
                "/v1/videos/image2video", json={**IMAGE, "external_task_id": f"dup-{n}"}, headers=ASYNC
            )
        workers.start()
        wait_for(
            lambda: all(service.services.store.get(f"dup-{n}").status == "succeed" for n in range(3)),
            timeout=30,
            what="the tasks created despite the errors",
        )
        assert sorted(t["external_task_id"] for t in simulator.state.tasks()) == ["dup-0", "dup-1", "dup-2"]
    finally:
        workers.stop()
        server.stop()


def test_permanent_refusal_rejects_frees_the_slot_and_raises_task_failed(env, simulator) -> None:
    simulator.state.set_scenario(
        "bad", {"create_error": {"http": 403, "code": 1103, "message": "no permission"}}
    )
    hooks = {"NOTIFY_WEBHOOK_URLS": "http://127.0.0.1:9/hook", "NOTIFY_WEBHOOK_SECRET": "whsec_" + "QUJD" * 8}
    service, server, _ = make_service(env, KLING_MAX_CONCURRENCY="1", **hooks)
    try:
        refused = service.submit({**IMAGE, "external_task_id": "bad"})
        assert refused.status_code == 403 and refused.json()["code"] == 1103
        assert service.services.store.get("bad").status == "rejected"
        assert service.services.admission.in_flight() == 0
        assert Job.exists(event_id("bad", EventType.FAILED), connection=service.services.redis)
        assert service.submit({**IMAGE, "external_task_id": "good"}).status_code == 200  # the slot was freed
    finally:
        server.stop()


def test_queue_is_fifo_and_never_over_the_limit(env) -> None:
    service, server, _ = make_service(env, KLING_MAX_CONCURRENCY="3")
    try:
        admission = service.services.admission
        pipe = service.services.redis.pipeline()
        for n in range(6):
            admission.enqueue(pipe, f"t{n}")
        pipe.execute()
        assert [admission.take_next() for _ in range(4)] == ["t0", "t1", "t2", None]  # three slots
        admission.put_back("t2")  # refused for now: it keeps its place at the head
        assert admission.take_next() == "t2"
        admission.pause()
        release = service.services.redis.pipeline()
        admission.release(release, "t0")
        release.execute()
        assert admission.take_next() is None and admission.paused_for_s() > 0  # paused after 1302/1303
        admission.resume()
        assert admission.take_next() == "t3"
    finally:
        server.stop()
