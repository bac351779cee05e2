"""The event log for pipelines: every event of a task, in order, read over real HTTP on loopback as a page
(`GET /v1/events`), a long-poll (`wait`), Server-Sent Events (`/v1/events/stream`) and from the CLI
(`flask events tail`); kept apart per tenant, bounded by the waiting budget, removed with its task."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import schemathesis
from rq import Queue

from kling_simulator import SimulatorServer
from tests.conftest import Service
from tests.support import wait_for
from tests.test_tenants import KEY_A, KEY_ADMIN, KEY_B, TENANTS, bearer
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.retention import prune
from webhook_service.domain.tenants import DEFAULT_TENANT, upstream_id
from webhook_service.jobs import NOTIFY_QUEUE
from webhook_service.keys import Keys

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a heron lifting off a lake"}
# One delay for both steps: the simulator sends steps due together in order, each once the previous one is
# answered. With two delays its two callback threads may race on a loaded machine, `succeed` is recorded
# first and the late `processing` is (rightly) dropped, leaving two events where the tests wait for three.
PROCESSING_THEN_SUCCEED = {
    "steps": [{"status": "processing", "delay": 0.1}, {"status": "succeed", "delay": 0.1}]
}
SILENT = {"steps": [{"status": "processing", "delay": 0, "send": False}]}  # Kling keeps it, says nothing
LONG_POLL_S = 30


def create(
    service: Service,
    simulator: SimulatorServer,
    external_id: str,
    scenario: dict[str, Any],
    key: str = "",
    tenant: str = DEFAULT_TENANT,
) -> str:
    """Submit a task (as `tenant`, with its `key`) that Kling plays `scenario` for; its task_id."""
    simulator.state.set_scenario(upstream_id(tenant, external_id), scenario)
    headers = bearer(key) if key else {}
    answer = service.http.post(
        "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["data"]["task_id"]
    return task_id


def read(service: Service, key: str = "", timeout: float = 10, **params: Any) -> dict[str, Any]:
    answer = service.http.get(
        "/v1/events", params=params, headers=bearer(key) if key else {}, timeout=timeout
    )
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()["data"]
    return page


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def logged(service: Service, count: int, key: str = "", **params: Any) -> list[dict[str, Any]]:
    """The log from its start, once it holds `count` events."""
    return wait_for(
        lambda: len(found := read(service, key, **params)["events"]) == count and found,
        timeout=15,
        what=f"{count} events in the log",
    )


def waiting_in_redis(service: Service) -> bool:
    """Whether a reader waits in Redis for events (XREAD BLOCK): it is really waiting. Every test ends
    its waits (streams are read to their end), so the one found is the test's own."""
    clients = service.services.redis.client_list()
    return any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in clients)


def call_back(service: Service, external_id: str, task_id: str, status: str) -> None:
    """Kling's callback for the task, as Kling sends it, to the service's own URL for it."""
    url = callback_url_for(service.services.settings, external_id)
    answer = httpx.post(url, json={"task_id": task_id, "task_status": status}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_every_event_of_a_task_is_logged_in_order_and_paged_by_next_cursor(
    service: Service, simulator: SimulatorServer
) -> None:
    """No sink is configured: the events are logged all the same, and no fan-out job is queued."""
    task_id = create(service, simulator, "heron-1", PROCESSING_THEN_SUCCEED)
    events = logged(service, 3)
    assert types_of(events) == ["task.submitted", "task.processing", "task.succeeded"]
    for event in events:
        assert event["id"] == event_id(
            "heron-1", EventType(event["type"])
        )  # the webhook-id its webhooks would carry
        assert event["external_task_id"] == "heron-1" and event["task_id"] == task_id
        assert event["tenant"] == "default" and event["archive_state"] is None
    assert [e["status"] for e in events] == ["submitted", "processing", "succeed"]
    assert [e["cursor"] for e in events] == sorted({e["cursor"] for e in events}, key=_order)
    assert all(a["at"] <= b["at"] for a, b in itertools.pairwise(events))
    assert Queue(NOTIFY_QUEUE, connection=service.services.redis).count == 0
    kept = service.services.redis.lrange(Keys().task_events("heron-1"), 0, -1)
    assert [entry.decode() for entry in kept] == [e["cursor"] for e in events]  # beside its task

    pages, after = [], None
    for _ in range(5):
        page = read(service, limit=1, **({"after": after} if after else {}))
        pages.append(page)
        after = page["next_cursor"]
        if not page["events"]:
            break
    assert [p["events"] for p in pages] == [[e] for e in events] + [[]]
    assert [p["has_more"] for p in pages] == [True, True, False, False]
    assert pages[-1]["next_cursor"] == events[-1]["cursor"] and not pages[-1]["waited"]


def _order(cursor: str) -> tuple[int, int]:
    milliseconds, _, sequence = cursor.partition("-")
    return int(milliseconds), int(sequence)


def test_types_filter_the_log_and_bad_input_is_a_400_naming_its_field(
    service: Service, simulator: SimulatorServer
) -> None:
    create(service, simulator, "heron-2", PROCESSING_THEN_SUCCEED)
    events = logged(service, 3)
    page = read(service, types="task.succeeded,task.failed")
    assert types_of(page["events"]) == ["task.succeeded"]
    later = read(service, types="task.processing", after=events[1]["cursor"])
    assert later["events"] == [] and later["next_cursor"] == events[2]["cursor"]  # past what it skipped

    past_the_end = f"{_order(events[-1]['cursor'])[0] + 10**6}-0"
    for params, field in [
        ({"types": "task.done"}, "types"),
        ({"after": "yesterday"}, "after"),
        ({"after": past_the_end}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"wait": "31"}, "wait"),
        ({"wait": "-1"}, "wait"),
        ({"tenant": "Team A"}, "tenant"),
    ]:
        answer = service.http.get("/v1/events", params=params)
        assert answer.status_code == 400, (params, answer.text)
        body = answer.json()
        assert body["code"] == 1201 and [e["field"] for e in body["errors"]] == [field], body
    streamed = service.http.get("/v1/events/stream", headers={"Last-Event-ID": "nope"})
    assert streamed.status_code == 400 and streamed.json()["errors"][0]["field"] == "Last-Event-ID"


def test_a_long_poll_returns_with_the_event_a_callback_brings(
    service: Service, simulator: SimulatorServer
) -> None:
    task_id = create(service, simulator, "heron-3", SILENT)
    (submitted,) = logged(service, 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        polled = pool.submit(
            read, service, timeout=LONG_POLL_S + 10, after=submitted["cursor"], wait=LONG_POLL_S
        )
        wait_for(lambda: waiting_in_redis(service), what="the long-poll to wait in Redis")
        call_back(service, "heron-3", task_id, "processing")
        page = polled.result(timeout=LONG_POLL_S)
    assert page["waited"] is True
    assert types_of(page["events"]) == ["task.processing"] and page["events"][0]["task_id"] == task_id
    assert page["next_cursor"] == page["events"][0]["cursor"]


def test_with_the_budget_taken_a_long_poll_and_a_stream_answer_at_once(
    service: Service, simulator: SimulatorServer
) -> None:
    """EVENTS_WAITING_MAX is 1: one long-poll waits; the next is answered at once, never refused."""
    task_id = create(service, simulator, "heron-4", SILENT)
    (submitted,) = logged(service, 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(
            read, service, timeout=LONG_POLL_S + 10, after=submitted["cursor"], wait=LONG_POLL_S
        )
        wait_for(lambda: waiting_in_redis(service), what="the first long-poll to take the budget")
        # A timeout well under the wait: a second long-poll that waited would fail here.
        answer = service.http.get(
            "/v1/events", params={"after": submitted["cursor"], "wait": LONG_POLL_S}, timeout=5
        )
        assert answer.json()["data"] == {
            "events": [],
            "next_cursor": submitted["cursor"],
            "has_more": False,
            "waited": False,
            "retry_after_ms": 5000,  # come back then: polling again at once would spin
        }
        assert answer.headers["Retry-After"] == "5"
        document = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        document["/v1/events"]["GET"].validate_response(answer)
        busy = service.http.get("/v1/events/stream", params={"after": "0-0"}, timeout=5)  # ends at once
        assert busy.status_code == 200 and "EVENTS_WAITING_MAX" in busy.text
        other, events = sse_events(iter(busy.text.splitlines()))
        assert events == [] and other[-1] == "retry: 5000"  # EventSource: reconnect in 5 s
        call_back(service, "heron-4", task_id, "processing")
        held = holder.result(timeout=LONG_POLL_S)
    assert held["waited"] and types_of(held["events"]) == ["task.processing"]
    # The budget is back: a long-poll waits again (and returns at once here, the event being there).
    assert read(service, after=submitted["cursor"], wait=LONG_POLL_S)["events"] == held["events"]


def sse_events(lines: Iterator[str], count: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Read a text/event-stream: its `retry:` and comment lines, and its events (id, event, data), until
    `count` events or the end of the stream."""
    other, events, block = [], [], {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            if name in ("id", "event", "data"):
                block[name] = value.removeprefix(" ")
            else:
                other.append(line)
            continue
        if block:
            events.append({**block, "data": json.loads(block["data"])})
            block = {}
            if len(events) == count:
                break
    return other, events


def test_server_sent_events_end_in_bounded_time_and_resume_from_last_event_id(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    # Long enough that the live part below sees its stream wait in Redis on a loaded machine: with 3 s, a
    # stream slow to start could end before the test looked.
    service = services_with(EVENTS_STREAM_S="6")
    task_id = create(service, simulator, "heron-5", PROCESSING_THEN_SUCCEED)
    logged_events = logged(service, 3)

    whole = service.http.get(
        "/v1/events/stream", params={"after": "0-0"}, timeout=10
    )  # EVENTS_STREAM_S ends it
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/event-stream")
    other, events = sse_events(iter(whole.text.splitlines()))
    document = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    document["/v1/events/stream"]["GET"].validate_response(whole)
    document["/v1/events"]["GET"].validate_response(service.http.get("/v1/events"))
    assert other[0] == "retry: 1000"
    assert [(e["id"], e["event"]) for e in events] == [(e["cursor"], e["type"]) for e in logged_events]
    assert [e["data"] for e in events] == logged_events

    # EventSource reconnects with Last-Event-ID, and the URL it was opened with: the header wins.
    resumed_from = {"Last-Event-ID": events[0]["id"]}
    with service.http.stream(
        "GET", "/v1/events/stream", params={"after": "0-0"}, headers=resumed_from, timeout=10
    ) as stream:
        _, resumed = sse_events(stream.iter_lines())
    assert [e["data"] for e in resumed] == logged_events[1:]

    # Live: an event recorded while the stream waits comes down it.
    with service.http.stream(
        "GET",
        "/v1/events/stream",
        params={"types": "task.failed"},
        headers={"Last-Event-ID": events[-1]["id"]},
    ) as stream:
        wait_for(lambda: waiting_in_redis(service), what="the stream to wait in Redis")
        late = create(service, simulator, "heron-6", {"steps": [{"status": "failed", "delay": 0.1}]})
        _, live = sse_events(stream.iter_lines())
    assert [(e["event"], e["data"]["task_id"]) for e in live] == [("task.failed", late)]
    assert task_id != late


def test_each_tenant_reads_only_its_own_log(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    shared = services_with(**TENANTS, EVENTS_STREAM_S="1")
    a_task = create(shared, simulator, "job-1", SILENT, key=KEY_A, tenant="team-a")
    b_task = create(shared, simulator, "job-1", SILENT, key=KEY_B, tenant="team-b")
    (a_event,) = logged(shared, 1, key=KEY_A)
    (b_event,) = logged(shared, 1, key=KEY_B)
    assert (a_event["task_id"], a_event["tenant"]) == (a_task, "team-a")
    assert (b_event["task_id"], b_event["tenant"]) == (b_task, "team-b")
    assert a_event["external_task_id"] == b_event["external_task_id"] == "job-1"  # each its own id
    assert a_event["id"] != b_event["id"]

    refused = shared.http.get("/v1/events", params={"tenant": "team-a"}, headers=bearer(KEY_B))
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "tenant"
    assert a_task not in refused.text
    with shared.http.stream(
        "GET", "/v1/events/stream", params={"after": "0-0"}, headers=bearer(KEY_B)
    ) as stream:
        _, streamed = sse_events(stream.iter_lines())
    assert [e["data"]["task_id"] for e in streamed] == [b_task]
    assert read(shared, KEY_B, after=b_event["cursor"])["events"] == []  # A's events are not after it

    assert read(shared, KEY_ADMIN, tenant="team-a")["events"] == [a_event]
    assert read(shared, KEY_ADMIN)["events"] == []  # an admin's own tenant (ops) has none
    unauthenticated = shared.http.get("/v1/events")
    assert unauthenticated.status_code == 401


def test_retention_removes_a_tasks_events_with_the_task(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    service = services_with(TASK_RETENTION_S="0.2", PRUNE_INTERVAL_S="3600")  # the test prunes itself
    create(service, simulator, "goes", {"steps": [{"status": "failed", "delay": 0.1}]})
    create(service, simulator, "stays", SILENT)
    before = logged(service, 3)
    assert sorted(types_of(before)) == ["task.failed", "task.submitted", "task.submitted"]

    wait_for(lambda: "goes" in prune(service.services).removed, what="the failed task to be pruned")
    left = read(service)["events"]
    assert [e["external_task_id"] for e in left] == ["stays"]
    connection = service.services.redis
    assert connection.xlen(Keys().events("default")) == 1
    assert not connection.exists(Keys().task_events("goes")) and connection.exists(
        Keys().task_events("stays")
    )
    # A reader whose cursor is a removed event's reads on from where it was.
    assert (
        before[0]["external_task_id"] == "goes" and read(service, after=before[0]["cursor"])["events"] == left
    )


def test_flask_events_tail_prints_a_line_per_event_and_stops_at_its_bound(
    service: Service, simulator: SimulatorServer
) -> None:
    task_id = create(service, simulator, "heron-7", PROCESSING_THEN_SUCCEED)
    events = logged(service, 3)
    cli = service.app.test_cli_runner()

    counted = cli.invoke(args=["events", "tail", "--after", "0-0", "--count", "2"])
    assert counted.exit_code == 0, counted.output
    assert [json.loads(line) for line in counted.stdout.splitlines()] == events[:2]

    idle = cli.invoke(
        args=["events", "tail", "--after", "0-0", "--types", "task.succeeded", "--until-idle", "0.5"]
    )
    assert idle.exit_code == 0, idle.output
    assert [json.loads(line) for line in idle.stdout.splitlines()] == events[2:]
    for both in (["task.submitted,task.succeeded"], ["task.submitted", "--types", "task.succeeded"]):
        picked = cli.invoke(
            args=["events", "tail", "--after", "0-0", "--types", *both, "--until-idle", "0.5"]
        )
        assert picked.exit_code == 0, picked.output
        assert [json.loads(line)["type"] for line in picked.stdout.splitlines()] == [
            "task.submitted",
            "task.succeeded",
        ]

    assert cli.invoke(args=["events", "tail", "--types", "task.done", "--count", "1"]).exit_code == 2
    assert cli.invoke(args=["events", "tail", "--tenant", "Team A", "--count", "1"]).exit_code == 2

    # Without --after, only what is recorded from now on.
    result: Future[Any] = Future()
    tail = threading.Thread(
        target=lambda: result.set_result(
            cli.invoke(args=["events", "tail", "--count", "1", "--until-idle", "20"])
        )
    )
    tail.start()
    wait_for(lambda: waiting_in_redis(service), what="the tail to wait in Redis")
    call_back(service, "heron-7", task_id, "succeed")  # a duplicate: no event
    late = create(service, simulator, "heron-8", SILENT)
    tail.join(timeout=30)
    followed = result.result(timeout=0)
    assert followed.exit_code == 0, followed.output
    (line,) = followed.stdout.splitlines()
    assert json.loads(line)["task_id"] == late and json.loads(line)["type"] == "task.submitted"
