"""Task types: each at its own path here and upstream, text2video end to end (the drop-in API, the
simulator, a worker's archive), its validation, polls and lookups at its own path, and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.recovery import kling_tasks_since, recover_from_kling
from webhook_service.domain.task_types import TASK_TYPES, task_type
from webhook_service.domain.tasks import DEFAULT_TYPE, Task

T2V = "/v1/videos/text2video"
I2V = "/v1/videos/image2video"
PROMPT = {"prompt": "a lighthouse at dusk, waves rolling in"}
ASYNC = {"Prefer": "respond-async"}
# Kling finishes the task but none of its callbacks arrive: only polling finds it.
SILENT_STEPS = [
    {"status": "processing", "delay": 0.1, "send": False},
    {"status": "succeed", "delay": 0.3, "send": False},
]


def problems(body: object, **options: Any) -> set[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type("text2video").validate(body, **options)
    return {(p.field, p.code) for p in caught.value.problems}


def test_each_type_has_its_own_paths_and_a_record_without_a_type_is_image2video() -> None:
    assert TASK_TYPES["image2video"].path == I2V and TASK_TYPES["text2video"].path == T2V
    assert task_type("text2video").item_path("a/b?c") == f"{T2V}/a%2Fb%3Fc"
    old = Task.from_json(json.dumps({"external_task_id": "before-types", "status": "submitted"}))
    assert old.type == DEFAULT_TYPE == "image2video"
    assert Task.from_json(Task(external_task_id="t", type="text2video").to_json()).type == "text2video"


def test_text2video_body_passes_unchanged() -> None:
    body = {
        **PROMPT,
        "model_name": "kling-v1-6",
        "negative_prompt": "blur",
        "cfg_scale": 0.5,
        "mode": "pro",
        "camera_control": {"type": "simple", "config": {"pan": -3}},
        "aspect_ratio": "9:16",
        "duration": "10",
        "watermark_info": {"enabled": True},
        "callback_url": "https://example.com/hook",
        "external_task_id": "t2v-1",
    }
    assert task_type("text2video").validate(body) == body


def test_text2video_reports_every_problem_with_its_path() -> None:
    body = {
        "promt": "typo",
        "image": "https://example.com/a.jpg",
        "model_name": "kling-v2-1",
        "mode": "fast",
        "duration": 5,
        "aspect_ratio": "4:3",
        "camera_control": {"type": "simple", "config": {"zoom": 11}},
        "watermark_info": {"enabled": "yes"},
    }
    assert problems(body) == {
        ("prompt", "missing"),
        ("promt", "unknown_field"),
        ("image", "unknown_field"),  # an image2video field: not text2video's
        ("model_name", "enum"),  # image2video's model only
        ("mode", "enum"),
        ("duration", "type"),
        ("aspect_ratio", "enum"),
        ("camera_control.config.zoom", "range"),
        ("watermark_info.enabled", "type"),
    }


def test_text2video_prompt_is_required_not_empty_and_at_most_2500_characters() -> None:
    assert problems({}) == {("prompt", "missing")}
    assert problems({"prompt": ""}) == {("prompt", "too_short")}
    assert problems({"prompt": "x" * 2501}) == {("prompt", "too_long")}
    assert task_type("text2video").validate({"prompt": "x" * 2500})


def test_text2video_model_rules_and_misspellings() -> None:
    assert problems({**PROMPT, "model_name": "kling-v2-master", "cfg_scale": 0.5}) == {
        ("cfg_scale", "not_supported_by_model")
    }
    assert problems({**PROMPT, "sound": "on"}) == {("sound", "not_supported_by_model")}
    assert task_type("text2video").validate({**PROMPT, "model_name": "kling-v2-6", "sound": "on"})
    with pytest.raises(RequestInvalid) as caught:
        task_type("text2video").validate({"Prompt": "a cat", "prompt": "a cat"})
    assert caught.value.problems[0].message == "unknown field; did you mean 'prompt'?"
    assert problems({**PROMPT, "camera_control": {"type": "down_back", "config": {"zoom": 1}}}) == {
        ("camera_control.config", "requires")
    }


def test_text2video_extra_fields_let_new_kling_fields_through() -> None:
    body = {**PROMPT, "element_list": [{"element_id": 1}]}
    assert problems(body) == {("element_list", "unknown_field")}
    assert task_type("text2video").validate(body, extra_fields=frozenset({"*"})) == body
    assert problems({**PROMPT, "promtp": "x"}, extra_fields=frozenset({"*"})) == {("promtp", "unknown_field")}


@pytest.fixture
def running(env: dict[str, str]) -> Iterator[tuple[Service, Workers]]:
    service, server, service_env = make_service(
        {**env, "ARCHIVE_RETRY_BASE_S": "0", "RECONCILE_AFTER_S": "0.3", "RECONCILE_INTERVAL_S": "1"}
    )
    workers = Workers(service_env)
    yield service, workers
    workers.stop()
    server.stop()


def archived(service: Service, external_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        view = service.http.get(f"/v1/tasks/{external_id}").json()["data"]
        return view if view["archive_state"] in ("archived", "archive_failed") else None

    return wait_for(done, timeout=60, what=f"{external_id} to be archived")


def test_text2video_round_trips_through_kling_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(
        {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.2}]}
    )
    response = service.http.post(f"/kling{T2V}", json={**PROMPT, "external_task_id": "t2v-e2e"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["task_info"] == {"external_task_id": "t2v-e2e"}

    (upstream,) = simulator.state.tasks()
    assert upstream["type"] == "text2video" and upstream["request"]["prompt"] == PROMPT["prompt"]
    view = archived(service, "t2v-e2e")
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["type"] == "text2video"
    path = Path(env["ARCHIVE_URL"]) / view["archived_videos"][0]["key"]
    assert path.suffix == ".mp4" and path.read_bytes()[4:8] == b"ftyp"  # a real MP4
    metadata = json.loads((path.parent / "metadata.json").read_text())
    assert metadata["type"] == "text2video"

    kling = service.http.get(f"{T2V}/t2v-e2e").json()["data"]
    assert kling["type"] == "text2video" and kling["task_result"]["videos"][0]["archive_url"]
    assert service.http.get(f"{T2V}/{upstream['task_id']}").status_code == 200
    assert service.http.get(f"{I2V}/t2v-e2e").status_code == 404  # Kling finds it at its own path only
    listed = service.http.get(T2V, params={"pageSize": 10}).json()["data"]
    assert [task["task_info"]["external_task_id"] for task in listed] == ["t2v-e2e"]
    assert service.http.get(I2V).json()["data"] == []


def test_text2video_lists_page_through_their_own_type_only(service: Service, simulator) -> None:
    for n in range(3):
        assert (
            service.submit({"image": "https://example.com/a.jpg", "external_task_id": f"i-{n}"}).status_code
            == 200
        )
        created = service.http.post(T2V, json={**PROMPT, "external_task_id": f"t-{n}"})
        assert created.status_code == 200, created.text
    pages = [service.http.get(T2V, params={"pageNum": n, "pageSize": 2}).json()["data"] for n in (1, 2, 3)]
    assert [[t["task_info"]["external_task_id"] for t in page] for page in pages] == [
        ["t-2", "t-1"],
        ["t-0"],
        [],
    ]
    upstream = {task["external_task_id"]: task["type"] for task in simulator.state.tasks()}
    assert upstream == {
        **{f"i-{n}": "image2video" for n in range(3)},
        **{f"t-{n}": "text2video" for n in range(3)},
    }


def test_text2video_invalid_body_is_refused_with_every_problem(service: Service, simulator) -> None:
    response = service.http.post(T2V, json={"image": "https://example.com/a.jpg", "duration": 5})
    assert response.status_code == 400
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert fields == {("prompt", "missing"), ("image", "unknown_field"), ("duration", "type")}
    assert simulator.state.tasks() == []


def test_text2video_with_dropped_callbacks_is_polled_at_its_own_path(running, simulator) -> None:
    service, workers = running
    simulator.state.set_default({"steps": SILENT_STEPS})
    response = service.http.post(T2V, json={**PROMPT, "external_task_id": "t2v-silent"}, headers=ASYNC)
    assert response.status_code == 202
    workers.start()
    assert archived(service, "t2v-silent")["archive_state"] == "archived"
    assert simulator.state.callbacks() == []
    entries = service.services.store.history("t2v-silent")
    assert ("poll", "succeed") in [
        (e["source"], e["status"]) for e in entries if e.get("outcome") == "applied"
    ]


def test_an_uncertain_text2video_create_is_looked_up_at_its_own_path(service: Service, simulator) -> None:
    error = {"http": 500, "code": 5000, "message": "server error", "after_create": True}
    simulator.state.set_scenario("t2v-unsure", {"create_error": error})
    response = service.http.post(T2V, json={**PROMPT, "external_task_id": "t2v-unsure"})
    assert response.status_code == 200, response.text  # found upstream by its id: not refused, not resent
    assert response.json()["data"]["task_id"] == simulator.state.tasks()[0]["task_id"]
    assert len(simulator.state.tasks()) == 1


def test_recovery_reads_each_types_list_and_records_the_type(service: Service, simulator) -> None:
    assert service.http.post(T2V, json={**PROMPT, "external_task_id": "t2v-lost"}).status_code == 200
    svc = service.services
    svc.redis.delete(svc.keys.task("t2v-lost"))
    found = list(kling_tasks_since(svc, 0))
    assert [(name, data["task_info"]["external_task_id"]) for name, data in found] == [
        ("text2video", "t2v-lost")
    ]
    recover_from_kling(svc, found[0][1], found[0][0])
    recovered = svc.store.get("t2v-lost")
    assert recovered is not None and recovered.recovered and recovered.type == "text2video"


def test_a_callback_for_a_lost_text2video_task_records_it_again_with_its_type(
    service: Service, simulator
) -> None:
    """Kling calls back the URL it was given, whose token signs the type: a task that Redis lost comes
    back as text2video, so its polls and lookups go to text2video's path."""
    simulator.state.set_scenario("t2v-gone", {"steps": [{"status": "processing", "delay": 60}]})
    assert service.http.post(T2V, json={**PROMPT, "external_task_id": "t2v-gone"}).status_code == 200
    (upstream,) = simulator.state.tasks()
    token_url = upstream["request"]["callback_url"]
    svc = service.services
    svc.redis.flushdb()
    body = {
        "task_id": upstream["task_id"],
        "task_status": "processing",
        "task_info": {"external_task_id": "t2v-gone"},
    }
    answer = service.http.post(token_url.removeprefix(service.url), content=json.dumps(body))
    assert answer.status_code == 200, answer.text
    recorded = svc.store.get("t2v-gone")
    assert recorded is not None and recorded.recovered and recorded.type == "text2video"
    assert service.http.get(f"{T2V}/t2v-gone").json()["data"]["task_id"] == upstream["task_id"]


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_submits_text2video_and_waits_for_its_archive(running, simulator) -> None:
    service, workers = running
    workers.start()
    args = ("submit", "--type", "text2video", "--prompt", "a fox", "--external-task-id", "cli-t2v")
    result = run(service.app, *args, "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if line.startswith("video ")]
    (upstream,) = simulator.state.tasks()
    assert upstream["type"] == "text2video" and upstream["request"]["prompt"] == "a fox"
    listed = run(service.app, "tasks", "list", "--type", "text2video")
    assert "cli-t2v" in listed.stdout and "text2video" in listed.stdout
    assert "cli-t2v" not in run(service.app, "tasks", "list", "--type", "image2video").stdout
    refused = run(service.app, "submit", "--type", "text2video", "--image", "https://example.com/a.jpg")
    assert refused.exit_code == 2 and "prompt: is required [missing]" in refused.stderr
