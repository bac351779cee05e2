"""Webhook notifications end to end: the service, real RQ workers in subprocesses, the simulator, and a
receiver on loopback whose answers each test scripts (500 then 200, 429 with Retry-After, 410, a hang)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import Service, Workers, make_service
from tests.support import LiveServer, loopback_name, wait_for
from webhook_service.notify.records import endpoint_id

SECRET = "whsec_" + base64.b64encode(b"notify-test-secret-0123456789").decode()
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a red fox running through snow"}


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0  # seconds to wait before answering (cut short when the test ends)
    held: threading.Event | None = None  # answered once the test sets it (or ends), however long that takes


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on loopback: each request to a path takes that path's next scripted answer
    (200 once the script is used up), and every request is kept with its arrival time."""

    def __init__(self) -> None:
        self._server = LiveServer()
        self.url = self._server.url
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Answer]] = {}
        self._received: list[Received] = []
        self._ending = threading.Event()
        self._holds: list[threading.Event] = []
        self._server.start(self._app)

    def script(self, path: str, *answers: Answer) -> str:
        with self._lock:
            self._scripts[path] = list(answers)
            self._holds += [answer.held for answer in answers if answer.held is not None]
        return f"{self.url}{path}"

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ["PATH_INFO"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        with self._lock:
            self._received.append(Received(time.time(), path, headers, body))
            script = self._scripts.get(path) or []
            answer = script.pop(0) if script else Answer()
        if answer.delay:
            self._ending.wait(answer.delay)
        if answer.held is not None:
            answer.held.wait()
        start_response(f"{answer.status} Scripted", [("Content-Type", "text/plain"), *answer.headers.items()])
        return [answer.body]

    def stop(self) -> None:
        self._ending.set()
        with self._lock:
            for hold in self._holds:
                hold.set()
        self._server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


class Stack:
    """The service and `python -m workers` processes, started with extra settings, stopped together."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self._started: list[tuple[LiveServer, Workers]] = []

    def start(self, workers: int = 1, **overrides: str) -> Service:
        service, server, service_env = make_service(self.env, **overrides)
        pool = Workers(service_env)
        for _ in range(workers):
            pool.start()
        self._started.append((server, pool))
        return service

    def more_workers(self, count: int = 1) -> None:
        """Start workers for the service started last: for a test that arranges their jobs first."""
        _, pool = self._started[-1]
        for _ in range(count):
            pool.start()

    def stop(self) -> None:
        for server, pool in self._started:
            pool.stop()
            server.stop()


@pytest.fixture
def stack(env: dict[str, str]) -> Iterator[Stack]:
    stacks = Stack(env)
    yield stacks
    stacks.stop()


def submit(service: Service, simulator: Any, external_id: str, status: str = "succeed", **body: Any) -> None:
    """Submit a task that ends in `status` shortly after: after the create answer, so that it is
    `submitted` first (a callback that beats the answer skips that status, and its event). Half a
    second: on a loaded machine the create answer took longer than 0.2 s to be recorded."""
    step = {"status": status, "delay": 0.5, "message": "the model could not animate this image"}
    simulator.state.set_scenario(external_id, {"steps": [step]})
    response = service.submit({**IMAGE, "external_task_id": external_id, **body})
    assert response.status_code == 200, response.text


def deliveries(service: Service, **params: str) -> list[dict[str, Any]]:
    response = service.http.get("/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def delivery(service: Service, delivery_id: str) -> dict[str, Any]:
    response = service.http.get(f"/v1/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def settled(service: Service, task: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
    """The task's deliveries once there are `count` of them and none is pending."""
    try:
        return wait_for(
            lambda: (
                len(found := deliveries(service, task=task)) == count
                and all(d["status"] != "pending" for d in found)
                and found
            ),
            timeout=timeout,
            what=f"{count} settled deliveries for {task}",
        )
    except AssertionError as error:
        states = [(d["status"], d["attempts"], d["last_error"]) for d in deliveries(service, task=task)]
        view = service.http.get(f"/v1/tasks/{task}").json()["data"]
        history = [(h.get("event"), h.get("status")) for h in view["history"]]
        raise AssertionError(f"{error}; deliveries: {states}; task history: {history}") from None


def webhooks(**overrides: str) -> dict[str, str]:
    return {"NOTIFY_WEBHOOK_SECRET": SECRET, "NOTIFY_RETRY_SCHEDULE_S": "0.2,0.2,0.2,0.2", **overrides}


def test_failures_are_retried_until_delivered_once_signed_with_a_stable_id(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    url = receiver.script("/hook", Answer(500), Answer(502, body=b"bad gateway"), Answer(200))
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=url))
    submit(service, simulator, "fox-1")

    (found,) = settled(service, "fox-1")
    assert found["status"] == "delivered" and found["event_type"] == "task.archived"
    requests = receiver.received("/hook")
    assert len(requests) == 3 and len([r for r in requests if r is requests[-1]]) == 1
    assert {r.headers["webhook-id"] for r in requests} == {found["webhook_id"]}
    assert len({r.body for r in requests}) == 1  # the same bytes on every attempt
    for request in requests:
        Webhook(SECRET).verify(request.body, request.headers)

    payload = requests[-1].json
    assert set(payload) == {"type", "timestamp", "data"} and payload["type"] == "task.archived"
    datetime.fromisoformat(payload["timestamp"])
    task = service.http.get("/v1/tasks/fox-1").json()["data"]
    data = payload["data"]
    assert data["external_task_id"] == "fox-1" and data["archive_state"] == "archived"
    assert data["archived_videos"] == task["archived_videos"]
    assert data["archived_videos"][0]["url"].endswith("/v1/tasks/fox-1/videos/0")

    log = delivery(service, found["id"])["attempt_log"]
    assert [a["status_code"] for a in log] == [500, 502, 200]
    assert log[1]["response"] == "bad gateway" and all(a["latency_ms"] >= 0 for a in log)


def test_retry_after_is_honoured(stack: Stack, simulator, receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(429, headers={"Retry-After": "2"}), Answer(200))
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=url, NOTIFY_WEBHOOK_EVENTS="task.submitted"))
    submit(service, simulator, "patient")

    (found,) = settled(service, "patient")
    first, second = receiver.received("/hook")
    assert found["status"] == "delivered" and second.at - first.at >= 2.0
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


def test_exhausted_delivery_is_a_dead_letter_until_replayed(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    url = receiver.script("/hook", *[Answer(500)] * 3)
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=url, NOTIFY_RETRY_SCHEDULE_S="0.2,0.2"))
    submit(service, simulator, "dead")

    (found,) = settled(service, "dead")
    assert found["status"] == "failed" and found["reason"] == "exhausted" and found["attempts"] == 3
    assert [d["id"] for d in deliveries(service, status="failed")] == [found["id"]]
    assert found["last_error"] == "HTTP 500" and found["failed_at"]

    replay = service.http.post(f"/v1/deliveries/{found['id']}/replay")
    assert replay.status_code == 200, replay.text
    (again,) = settled(service, "dead")
    assert again["status"] == "delivered" and again["attempts"] == 4 and again["replays"] == 1
    assert deliveries(service, status="failed") == []
    assert {r.headers["webhook-id"] for r in receiver.received("/hook")} == {found["webhook_id"]}
    assert service.http.post(f"/v1/deliveries/{found['id']}/replay").status_code == 409
    assert service.http.post("/v1/deliveries/dlv_nope/replay").status_code == 404


def test_replay_of_all_failed_since_a_time_by_api_and_cli(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    url = receiver.script("/hook", *[Answer(503)] * 4)
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=url, NOTIFY_RETRY_SCHEDULE_S="0"))
    submit(service, simulator, "early")
    (early,) = settled(service, "early")
    between = datetime.now(UTC).isoformat()
    submit(service, simulator, "late")
    (late,) = settled(service, "late")
    assert early["status"] == late["status"] == "failed"

    replayed = service.http.post("/v1/deliveries/replay", params={"since": between})
    assert replayed.json()["data"] == {"replayed": [late["id"]], "not_replayed": {}}
    assert settled(service, "late")[0]["status"] == "delivered"
    assert settled(service, "early")[0]["status"] == "failed"

    result = service.app.test_cli_runner().invoke(args=["replay-failed", "--since", "10m"])
    assert result.exit_code == 0 and "replayed 1 failed deliveries" in result.output
    assert settled(service, "early")[0]["status"] == "delivered"
    assert service.http.post("/v1/deliveries/replay").status_code == 400  # since is required


def test_gone_disables_the_endpoint_until_enabled_again(stack: Stack, simulator, receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(410))
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=url, NOTIFY_WEBHOOK_EVENTS="task.submitted"))
    submit(service, simulator, "gone-1")
    (gone,) = settled(service, "gone-1")
    assert gone["status"] == "failed" and gone["reason"] == "gone" and gone["attempts"] == 1
    (disabled,) = service.http.get("/v1/deliveries/disabled-endpoints").json()["data"]
    assert disabled["endpoint"] == endpoint_id(url) and disabled["status_code"] == 410
    assert "/hook" not in disabled["url"]  # a webhook URL's path may be its secret

    submit(service, simulator, "gone-2")
    (skipped,) = settled(service, "gone-2")
    assert skipped["status"] == "skipped" and skipped["reason"] == "endpoint_disabled"
    assert len(receiver.received("/hook")) == 1
    assert service.http.post(f"/v1/deliveries/{skipped['id']}/replay").status_code == 409

    assert service.http.delete(f"/v1/deliveries/disabled-endpoints/{disabled['endpoint']}").status_code == 200
    assert service.http.get("/v1/deliveries/disabled-endpoints").json()["data"] == []
    assert service.http.post(f"/v1/deliveries/{skipped['id']}/replay").status_code == 200
    assert settled(service, "gone-2")[0]["status"] == "delivered"
    assert len(receiver.received("/hook")) == 2


def test_a_receiver_that_hangs_is_timed_out_and_retried(stack: Stack, simulator, receiver: Receiver) -> None:
    url = receiver.script("/hook", Answer(200, delay=30))
    service = stack.start(
        **webhooks(NOTIFY_WEBHOOK_URLS=url, NOTIFY_WEBHOOK_EVENTS="task.submitted", NOTIFY_TIMEOUT_S="0.5")
    )
    submit(service, simulator, "hang")

    (found,) = settled(service, "hang")
    log = delivery(service, found["id"])["attempt_log"]
    assert found["status"] == "delivered" and len(log) == 2
    assert log[0]["error"].startswith("timeout") and log[0]["status_code"] is None
    assert 400 <= log[0]["latency_ms"] < 10_000  # cut at NOTIFY_TIMEOUT_S, not the 30 s hang


def test_a_slow_sink_does_not_delay_another(stack: Stack, simulator, receiver: Receiver) -> None:
    slow = receiver.script("/slow", Answer(200, delay=4))
    fast = receiver.script("/fast")
    overrides = webhooks(NOTIFY_WEBHOOK_URLS=f"{slow},{fast}", NOTIFY_WEBHOOK_EVENTS="task.submitted")
    service = stack.start(workers=2, **overrides)
    submit(service, simulator, "race")  # the slow sink's delivery is queued first

    assert [d["status"] for d in settled(service, "race", count=2)] == ["delivered", "delivered"]
    (slow_request,) = receiver.received("/slow")
    (fast_request,) = receiver.received("/fast")
    assert fast_request.at < slow_request.at + 4  # before the slow one's answer, 4 s after it arrived


def test_a_callback_url_gets_its_own_tasks_events_only(stack: Stack, simulator, receiver: Receiver) -> None:
    service = stack.start(
        **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_WEBHOOK_EVENTS="task.submitted,task.archived")
    )
    submit(service, simulator, "mine", callback_url=receiver.script("/a"))
    submit(service, simulator, "theirs", callback_url=receiver.script("/b"))
    submit(service, simulator, "nobodys")

    settled(service, "mine", count=2)
    settled(service, "theirs", count=2)
    assert deliveries(service, task="nobodys") == []
    for path, task in (("/a", "mine"), ("/b", "theirs")):
        received = receiver.received(path)
        assert sorted(r.json["type"] for r in received) == ["task.archived", "task.submitted"]
        assert {r.json["data"]["external_task_id"] for r in received} == {task}
        for request in received:
            Webhook(SECRET).verify(request.body, request.headers)


def test_a_clients_callback_url_at_a_name_that_resolves_inside_is_refused_at_delivery(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    operator = receiver.script("/operator")  # the operator's own URLs are trusted, loopback or not
    service = stack.start(**webhooks(NOTIFY_WEBHOOK_URLS=operator, NOTIFY_WEBHOOK_EVENTS="task.submitted"))
    internal = receiver.script("/internal").replace("127.0.0.1", loopback_name())
    submit(service, simulator, "ssrf", callback_url=internal)

    by_client = {d["client"]: d for d in settled(service, "ssrf", count=2)}
    assert by_client[False]["status"] == "delivered"
    refused = by_client[True]
    assert refused["status"] == "failed" and refused["reason"] == "refused" and refused["attempts"] == 1
    assert refused["last_error"].startswith("blocked_address") and "loopback" in refused["last_error"]
    assert receiver.received("/internal") == []


def test_a_clients_callback_url_at_an_internal_address_is_refused_at_submission(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    service = stack.start(workers=0, **webhooks())
    body = {**IMAGE, "external_task_id": "ssrf-now", "callback_url": receiver.script("/internal")}
    answer = service.submit(body)

    assert answer.status_code == 400
    (problem,) = answer.json()["errors"]
    assert problem["field"] == "callback_url" and problem["code"] == "blocked_address"
    assert "loopback" in problem["message"]
    assert simulator.state.tasks() == []  # nothing sent upstream, nothing paid for
    assert service.http.get("/v1/tasks/ssrf-now").status_code == 404

    allowed = stack.start(**webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))  # an internal receiver
    assert allowed.submit(body).status_code == 200
