"""`endpoint.disabled` in the event log: a pipeline that reads its events learns that one of its endpoints
was disabled, even with no sink to tell it, through every reader (page, long-poll, stream, CLI); only
its own tenant sees it, and it leaves the log TASK_RETENTION_S after it was recorded."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import schemathesis

from tests import test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_endpoints import KEY_A, KEY_B, SUBMITTED, register, start, submit_as
from tests.test_events_stream import LONG_POLL_S, read, sse_events, waiting_in_redis
from tests.test_notify import Answer, Receiver, Stack
from webhook_service.domain.clock import now_ms
from webhook_service.domain.retention import prune
from webhook_service.keys import Keys

receiver, stack = test_notify.receiver, test_notify.stack  # a scripted receiver on loopback; the service
DISABLED = "endpoint.disabled"


def gone_endpoint(service: Service, receiver: Receiver) -> dict[str, Any]:
    """Team A's endpoint that answers 410 Gone, so its first delivery disables it."""
    return register(service, receiver.script("/gone", Answer(410)), event_types=SUBMITTED)


def test_a_disabled_endpoint_is_in_its_tenants_event_log_for_every_reader(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, EVENTS_STREAM_S="1")
    gone = gone_endpoint(service, receiver)
    with ThreadPoolExecutor(max_workers=1) as pool:
        polled = pool.submit(read, service, KEY_A, timeout=LONG_POLL_S + 10, types=DISABLED, wait=LONG_POLL_S)
        wait_for(lambda: waiting_in_redis(service), what="a long-poll for endpoint.disabled to wait")
        submit_as(service, simulator, KEY_A, "team-a", "job-1")
        page = polled.result(timeout=LONG_POLL_S)
    (event,) = page["events"]
    assert event["type"] == DISABLED and event["endpoint_id"] == gone["id"] and event["tenant"] == "team-a"
    assert event["id"].startswith("evt_") and event["at"] > 0
    task_fields = ("external_task_id", "task_id", "status", "archive_state")
    assert [event[field] for field in task_fields] == [None] * 4  # no task

    whole = read(service, KEY_A, after="0-0")["events"]
    types = [e["type"] for e in whole]
    assert types.count(DISABLED) == 1 and types.index("task.submitted") < types.index(DISABLED)
    assert all(e["endpoint_id"] is None for e in whole if e["type"] != DISABLED)
    assert read(service, KEY_B, types=DISABLED)["events"] == []  # another tenant's endpoint: not there

    answer = service.http.get(
        "/v1/events", params={"types": DISABLED}, headers={"Authorization": f"Bearer {KEY_A}"}
    )
    document = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    document["/v1/events"]["GET"].validate_response(answer)
    with service.http.stream(
        "GET",
        "/v1/events/stream",
        params={"after": "0-0", "types": DISABLED},
        headers={"Authorization": f"Bearer {KEY_A}"},
    ) as stream:
        _, streamed = sse_events(stream.iter_lines())
    assert [(e["event"], e["data"]) for e in streamed] == [(DISABLED, event)]

    cli = service.app.test_cli_runner()
    tailed = cli.invoke(
        args=["events", "tail", "--tenant", "team-a", "--types", DISABLED, "--after", "0-0", "--count", "1"]
    )
    assert tailed.exit_code == 0, tailed.output
    assert [json.loads(line) for line in tailed.stdout.splitlines()] == [event]


def test_an_endpoint_disabled_entry_leaves_the_log_after_task_retention(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """Retention takes only the entries that are due from their time index: one recorded a retention
    period ago goes, the one just recorded stays."""
    service = start(stack, TASK_RETENTION_S="60", PRUNE_INTERVAL_S="3600")  # the test prunes itself
    gone = gone_endpoint(service, receiver)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (recent,) = wait_for(
        lambda: read(service, KEY_A, types=DISABLED)["events"], timeout=30, what="endpoint.disabled"
    )
    events = service.services.events
    old_cursor = events.record_taskless("team-a", "evt_old", DISABLED, now_ms() - 61_000, gone["id"])
    assert [e["cursor"] for e in read(service, KEY_A, types=DISABLED)["events"]] == [
        recent["cursor"],
        old_cursor,
    ]

    prune(service.services)
    assert read(service, KEY_A, types=DISABLED)["events"] == [recent]
    connection = service.services.redis
    assert connection.zrange(Keys().events_taskless, 0, -1) == [f"team-a {recent['cursor']}".encode()]
