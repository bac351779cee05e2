"""The event log names each event's task type (`task_type`) and filters by it (`task_types=` on
`GET /v1/events` and `/v1/events/stream`); an entry recorded before entries carried the type still reads,
with `task_type` null, and matches no `task_types` filter."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from kling_simulator import SimulatorServer
from tests.conftest import Service
from tests.test_events_stream import logged, read, sse_events
from webhook_service.keys import Keys

STUCK = {"steps": [{"status": "processing", "delay": 0, "send": False}]}  # Kling keeps it, says nothing


def submit(service: Service, path: str, body: dict[str, object]) -> None:
    answer = service.http.post(path, json=body)
    assert answer.status_code == 200, answer.text


def test_each_event_names_its_task_type_and_task_types_filters_by_it(
    service: Service, simulator: SimulatorServer
) -> None:
    simulator.state.set_default(STUCK)
    submit(
        service, "/v1/videos/image2video", {"image": "https://example.com/a.jpg", "external_task_id": "i2v"}
    )
    submit(service, "/v1/videos/text2video", {"prompt": "a heron", "external_task_id": "t2v"})
    submit(service, "/text-to-video/kling-3.0", {"prompt": "a heron", "options": {"external_task_id": "u3"}})
    events = logged(service, 3)  # each task's task.submitted
    assert {(e["external_task_id"], e["task_type"]) for e in events} == {
        ("i2v", "image2video"),
        ("t2v", "text2video"),
        ("u3", "kling-3.0-text-to-video"),
    }

    def tasks_in(**params: str) -> list[str]:
        return sorted({e["external_task_id"] for e in read(service, **params)["events"]})

    assert tasks_in(task_types="text2video") == ["t2v"]
    assert tasks_in(task_types="text2video, kling-3.0-text-to-video") == ["t2v", "u3"]
    only = read(service, task_types="image2video", types="task.submitted")["events"]
    assert [(e["external_task_id"], e["type"]) for e in only] == [("i2v", "task.submitted")]
    assert read(service, task_types="image2video", types="task.failed")["events"] == []
    assert tasks_in(task_types="") == ["i2v", "t2v", "u3"]  # empty: every event

    for path in ("/v1/events", "/v1/events/stream"):
        refused = service.http.get(path, params={"task_types": "text2video,txt2video"})
        assert refused.status_code == 400, refused.text
        (error,) = refused.json()["errors"]
        assert error["field"] == "task_types" and "txt2video" in error["message"]


def test_the_stream_filters_by_task_type_too(
    services_with: Callable[..., Service], simulator: SimulatorServer
) -> None:
    service = services_with(EVENTS_STREAM_S="1")
    simulator.state.set_default(STUCK)
    submit(
        service, "/v1/videos/image2video", {"image": "https://example.com/a.jpg", "external_task_id": "i2v"}
    )
    submit(service, "/v1/videos/text2video", {"prompt": "a heron", "external_task_id": "t2v"})
    logged(service, 2)
    streamed = service.http.get(
        "/v1/events/stream", params={"after": "0-0", "task_types": "text2video"}, timeout=10
    )
    assert streamed.status_code == 200
    _, events = sse_events(iter(streamed.text.splitlines()))
    assert [(e["data"]["external_task_id"], e["data"]["task_type"]) for e in events] == [
        ("t2v", "text2video")
    ]


def test_an_entry_recorded_before_entries_carried_the_task_type_still_reads(
    service: Service, simulator: SimulatorServer
) -> None:
    simulator.state.set_default(STUCK)
    older = {
        "id": "evt_0123",
        "type": "task.submitted",
        "at": 1795257600123,
        "external_task_id": "old-1",
        "task_id": "860413412418613311",
        "status": "submitted",
        "archive_state": "",
    }
    service.services.redis.xadd(Keys().events("default"), older)  # as record() wrote it before
    submit(service, "/v1/videos/text2video", {"prompt": "a heron", "external_task_id": "t2v"})
    old, *new = logged(service, 2)
    assert old["external_task_id"] == "old-1" and old["task_type"] is None and old["status"] == "submitted"
    assert {e["task_type"] for e in new} == {"text2video"}
    assert "old-1" not in {e["external_task_id"] for e in read(service, task_types="text2video")["events"]}
    document = httpx.get(f"{service.url}/openapi.json").json()
    event = document["components"]["schemas"]["Event"]["properties"]["task_type"]
    assert {"text2video", "kling-3.0-omni-video"} <= set(event["anyOf"][0]["enum"])
    assert event["anyOf"][1] == {"type": "null"}
