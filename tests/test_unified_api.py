"""Kling's unified API, drop-in: `POST /text-to-video/kling-3.0` and `/image-to-video/kling-3.0` through
the simulator to an archived MP4 (the service's own callback_url and id in `options`, the unified API
key as Bearer), `GET /tasks` by either kind of id (the caller's tasks only), reconciliation through
Kling's `/tasks` when no callback comes, and a bad body refused over HTTP with every problem."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_simulator import SimulatorServer
from tests import test_task_types
from tests.conftest import SIM_TOKEN, Service
from tests.test_inputs import b64, noise_png, sent_upstream, stored_request
from tests.test_task_types import archived, run
from webhook_service.domain.omni_rules import OMNI_VIDEO_PATH as OMNI
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type
from webhook_service.domain.tasks import update_from_callback
from webhook_service.domain.unified_rules import IMAGE_TO_VIDEO_PATH, TEXT_TO_VIDEO_PATH

running = test_task_types.running  # the service and real workers, archiving and reconciling at once

API_KEY = "unified-api-key-for-tests"
PROMPT = "a lighthouse at dusk, waves rolling in"
FRAME = "https://example.com/first-frame.png"
T2V, I2V = "kling-3.0-text-to-video", "kling-3.0-image-to-video"


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """Kling with a unified API key beside the /v1 token: each path takes its own credentials."""
    with SimulatorServer(token=SIM_TOKEN, api_key=API_KEY) as sim:
        yield sim


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "KLING_API_KEY": API_KEY}


def problems(type_name: str, body: object) -> Counter[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(body)
    return Counter((p.field, p.code) for p in caught.value.problems)


def archived_mp4(service: Service, env: dict[str, str], external_id: str) -> dict[str, Any]:
    view = archived(service, external_id)
    assert view["archive_state"] == "archived", view["archive_error"]
    path = Path(env["ARCHIVE_URL"]) / view["archived_videos"][0]["key"]
    assert path.suffix == ".mp4" and path.read_bytes()[4:8] == b"ftyp"  # a real MP4
    return view


def round_trip(
    service: Service,
    simulator: Any,
    env: dict[str, str],
    path: str,
    body: dict[str, Any],
    prefix: str = "/kling",
) -> Any:
    """The body created at `path` (under `prefix`: /kling, as the gateways have it, or none), sent to
    Kling as given with the service's own callback, finished there and archived: the task's view, once
    archived."""
    simulator.state.set_default(
        {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.2}]}
    )
    external_id = body["options"]["external_task_id"]
    created = service.http.post(f"{prefix}{path}", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["data"]["external_id"] == external_id
    sent = sent_upstream(simulator, external_id)
    assert {key: sent[key] for key in body if key != "options"} == {
        key: value for key, value in body.items() if key != "options"
    }  # a Base64 frame too reaches Kling unchanged
    assert sent["options"]["callback_url"].startswith(f"{service.url}/callbacks/kling?token=")
    view = archived_mp4(service, env, external_id)
    (task,) = service.http.get("/tasks", params={"external_task_ids": external_id}).json()["data"]
    assert task["status"] == "succeeded" and task["outputs"][0]["type"] == "video"
    assert task["outputs"][0]["archive_url"]
    listed = service.http.get("/v1/tasks", params={"type": view["type"]}).json()["data"]
    assert [t["external_task_id"] for t in listed] == [external_id]
    return view


def test_text_to_video_round_trips_through_kling_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(
        {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.2}]}
    )
    body = {
        "prompt": PROMPT,
        "settings": {"duration": 5, "aspect_ratio": "9:16", "audio": "off", "multi_shot": False},
        "options": {"external_task_id": "u-t2v", "watermark_info": {"enabled": False}},
    }
    response = service.http.post(TEXT_TO_VIDEO_PATH, json=body)
    assert response.status_code == 200, response.text
    created = response.json()["data"]
    assert created["external_id"] == "u-t2v" and created["id"]
    assert created["status"] in ("submitted", "processing")  # the first callback may come before

    (upstream,) = simulator.state.tasks()
    assert upstream["headers"]["Authorization"] == f"Bearer {API_KEY}"
    sent = upstream["request"]
    assert sent["prompt"] == PROMPT and sent["settings"] == body["settings"]
    assert sent["options"]["external_task_id"] == "u-t2v"
    assert sent["options"]["callback_url"].startswith(f"{service.url}/callbacks/kling?token=")
    assert sent["options"]["watermark_info"] == {"enabled": False}
    assert not {"callback_url", "external_task_id", "watermark_info"} & sent.keys()

    view = archived_mp4(service, env, "u-t2v")
    assert view["type"] == T2V and view["task_id"] == created["id"]
    for prefix in ("", "/kling"):
        for by, ref in (("external_task_ids", "u-t2v"), ("task_ids", created["id"])):
            (task,) = service.http.get(f"{prefix}/tasks", params={by: f"{ref},unknown-id"}).json()["data"]
            assert task["id"] == created["id"] and task["external_id"] == "u-t2v"
            assert task["status"] == "succeeded"
            (video,) = task["outputs"]
            assert video["type"] == "video" and video["url"].endswith(".mp4")
            assert service.http.get(video["archive_url"].removeprefix(service.url)).content[4:8] == b"ftyp"
    # Kling's billing[] (its unit charges) is what usage counts, as a /v1 task's final_unit_deduction.
    assert service.services.store.get("u-t2v").final_unit_deduction == "1"
    (day,) = service.http.get("/v1/usage").json()["data"]["tenants"][0]["days"]
    (model,) = day["models"]
    assert (model["model"], model["tasks"]["succeed"], model["units"]) == ("kling-3.0", 1, 1.0)
    # A task is found by its own kind of id only, and at its own API only.
    assert service.http.get("/tasks", params={"task_ids": "u-t2v"}).json()["data"] == []
    assert service.http.get(f"/v1/videos/text2video/{created['id']}").status_code == 404


def test_image_to_video_is_polled_through_kling_tasks_when_no_callback_comes(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    silent = [
        {"status": "processing", "delay": 0, "send": False},
        {"status": "succeed", "delay": 0.2, "send": False},
    ]
    simulator.state.set_default({"steps": silent})
    body = {
        "contents": [{"type": "prompt", "text": PROMPT}, {"type": "first_frame", "url": FRAME}],
        "settings": {"duration": 5, "resolution": "1080p"},
        "options": {"external_task_id": "u-i2v"},
    }
    response = service.http.post(f"/kling{IMAGE_TO_VIDEO_PATH}", json=body)
    assert response.status_code == 200, response.text
    (upstream,) = simulator.state.tasks()
    assert upstream["request"]["contents"] == body["contents"]

    view = archived_mp4(service, env, "u-i2v")  # no callback was sent: reconciliation asked /tasks
    assert view["type"] == I2V and simulator.state.callbacks() == []
    (task,) = service.http.get("/tasks", params={"external_task_ids": "u-i2v"}).json()["data"]
    assert task["status"] == "succeeded" and task["outputs"][0]["archive_url"]


def test_a_bad_body_is_refused_over_http_with_every_problem(service: Service, simulator) -> None:
    body = {
        "promt": PROMPT,
        "settings": {"duration": "5", "aspect_ratio": "4:3"},
        "options": {"callback_url": "http://127.0.0.1/hook", "external_taskid": "x"},
    }
    response = service.http.post(TEXT_TO_VIDEO_PATH, json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
    assert errors[("promt", "unknown_field")] == "unknown field; did you mean 'prompt'?"
    assert ("prompt", "missing") in errors
    assert "not a string" in errors[("settings.duration", "type")]
    assert ("settings.aspect_ratio", "enum") in errors
    assert ("options.callback_url", "blocked_address") in errors
    assert "did you mean 'external_task_id'" in errors[("options.external_taskid", "unknown_field")]
    assert simulator.state.tasks() == []

    frames = {"contents": [{"type": "last_frame", "url": FRAME}], "settings": {"aspect_ratio": "16:9"}}
    response = service.http.post(IMAGE_TO_VIDEO_PATH, json=frames)
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert fields == {("contents", "missing"), ("settings.aspect_ratio", "not_supported")}

    refused = service.http.get("/tasks", params={"task_ids": "a", "external_task_ids": "b"})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == "task_ids"


def test_unified_bodies_are_checked_against_every_documented_rule() -> None:
    assert task_type(T2V).validate({"prompt": PROMPT, "options": {"external_task_id": "a"}}) == {
        "prompt": PROMPT,
        "external_task_id": "a",
    }
    assert problems(T2V, {"prompt": "x" * 3073}) == Counter([("prompt", "too_long")])
    assert problems(T2V, {"prompt": PROMPT, "settings": {"duration": 16, "resolution": "8k"}}) == Counter(
        [
            ("settings.duration", "range"),
            ("settings.resolution", "enum"),
        ]
    )
    shots = "shot 1, 2, a cat wakes; shot 2, 2, it stretches;"
    assert problems(T2V, {"prompt": shots}) == Counter([("prompt", "mismatch")])  # 4 s of shots, 5 s of video
    assert task_type(T2V).validate({"prompt": shots, "settings": {"duration": 4}})
    assert task_type(T2V).validate({"prompt": shots, "settings": {"multi_shot": False}})
    assert problems(T2V, {"prompt": "shot 1, 5, " + "w" * 513 + ";"}) == Counter([("prompt", "too_long")])

    element = {"type": "element", "element_id": "163", "id": "e1"}
    assert task_type(I2V).validate({"contents": [{"type": "first_frame", "url": FRAME}, element]})
    assert problems(
        I2V,
        {
            "contents": [
                {"type": "first_frame", "url": FRAME, "text": "x"},
                {"type": "first_frame", "url": "data:image/png;base64,AAAA"},
                {"type": "prompt"},
                *[element] * 2,
                {"type": "element", "element_id": "1", "id": "e2"},
                {"type": "element", "element_id": "2", "id": "e3"},
                {"type": "audio", "url": FRAME},  # no item of the unified API
            ]
        },
    ) == Counter(
        [
            ("contents[0].text", "requires"),
            ("contents[1].url", "format"),
            ("contents[1]", "too_many"),
            ("contents[2].text", "missing"),
            ("contents[4].id", "duplicate"),
            ("contents[6]", "too_many"),
            ("contents[7].type", "enum"),
        ]
    )


def test_a_base64_frame_lives_in_the_archive_and_reaches_kling_unchanged(service: Service, simulator) -> None:
    frame = b64(noise_png(300))
    body = {"contents": [{"type": "first_frame", "url": frame}], "options": {"external_task_id": "u-b64"}}
    assert service.http.post(IMAGE_TO_VIDEO_PATH, json=body).status_code == 200
    stored, _ = stored_request(service, "u-b64")
    reference = stored["contents"][0]["url"]
    assert reference["archived_input"].endswith(".png") and reference["size"] == len(noise_png(300))
    assert sent_upstream(simulator, "u-b64")["contents"] == body["contents"]


def test_tasks_answers_each_tenant_its_own_tasks_only(services_with, simulator) -> None:
    service = services_with(
        SERVICE_API_KEYS="team-a:key-a-0123456789abcdef-0123,team-b:key-b-0123456789abcdef-0123"
    )
    as_a = {"Authorization": "Bearer key-a-0123456789abcdef-0123"}
    as_b = {"Authorization": "Bearer key-b-0123456789abcdef-0123"}
    body = {"prompt": PROMPT, "options": {"external_task_id": "same-id"}}
    ids = {}
    for team, headers in (("a", as_a), ("b", as_b)):  # an external_task_id is unique within its tenant
        response = service.http.post(TEXT_TO_VIDEO_PATH, json=body, headers=headers)
        assert response.status_code == 200, response.text
        ids[team] = response.json()["data"]["id"]
    assert ids["a"] != ids["b"]
    for team, headers in (("a", as_a), ("b", as_b)):
        (task,) = service.http.get("/tasks", params={"external_task_ids": "same-id"}, headers=headers).json()[
            "data"
        ]
        assert task["id"] == ids[team] and task["external_id"] == "same-id"
    other = service.http.get("/tasks", params={"task_ids": ids["a"]}, headers=as_b)
    assert other.status_code == 200 and other.json()["data"] == []
    assert service.http.get("/tasks", params={"task_ids": ids["a"]}).status_code == 401


def test_cli_submits_unified_tasks_in_kling_s_shape(service: Service, simulator) -> None:
    args = ("submit", "--type", I2V, "--prompt", PROMPT, "--image", FRAME, "--duration", "10")
    result = run(service.app, *args, "--external-task-id", "cli-i2v")
    assert result.exit_code == 0, result.output
    (upstream,) = simulator.state.tasks()
    sent = upstream["request"]
    assert sent["contents"] == [{"type": "prompt", "text": PROMPT}, {"type": "first_frame", "url": FRAME}]
    assert sent["settings"] == {"duration": 10} and sent["options"]["external_task_id"] == "cli-i2v"
    refused = run(service.app, "submit", "--type", T2V, "--prompt", PROMPT, "--mode", "pro")
    assert refused.exit_code == 2 and "mode: unknown field" in refused.stderr


def test_omni_video_round_trips_through_kling_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    body = {
        "contents": [
            {"type": "prompt", "text": "make @video_1 rain"},
            {"type": "base_video", "url": "https://example.com/street.mp4", "id": "video_1"},
        ],
        "settings": {"multi_shot": False, "audio": "original", "aspect_ratio": "16:9"},
        "options": {"external_task_id": "u-omni"},
    }
    response = service.http.post(f"/kling{OMNI}", json=body)
    assert response.status_code == 200, response.text
    (upstream,) = simulator.state.tasks()
    assert upstream["request"]["contents"] == body["contents"]
    assert upstream["request"]["options"]["external_task_id"] == "u-omni"
    view = archived_mp4(service, env, "u-omni")
    assert view["type"] == "kling-3.0-omni-video"
    (task,) = service.http.get("/tasks", params={"external_task_ids": "u-omni"}).json()["data"]
    assert task["status"] == "succeeded" and task["outputs"][0]["archive_url"]


@pytest.mark.parametrize("type_name", [T2V, "kling-3.0-turbo-text-to-video", "kling-3.0-omni-video"])
def test_shots_are_added_up_against_the_duration_as_sent(type_name: str) -> None:
    """A settings object failing its type (an unknown key) changes nothing in the shot rules; a duration
    that is no duration of the path is its own problem, with no sum to match."""

    def body(prompt: str, settings: dict[str, Any]) -> dict[str, Any]:
        if "contents" in task_type(type_name).rules.field_types:
            return {"contents": [{"type": "prompt", "text": prompt}], "settings": settings}
        return {"prompt": prompt, "settings": settings}

    shots = "shot 1, 10, a;"
    unknown = ("settings.foo", "unknown_field")
    assert problems(type_name, body(shots, {"duration": 10, "foo": 1})) == Counter([unknown])
    assert problems(type_name, body(shots, {"duration": 16})) == Counter([("settings.duration", "range")])
    assert problems(type_name, body(shots, {"duration": "10"})) == Counter([("settings.duration", "type")])
    if type_name != "kling-3.0-turbo-text-to-video":  # which takes no multi_shot
        assert problems(type_name, body(shots, {"multi_shot": False, "foo": 1})) == Counter([unknown])


def test_omni_video_bodies_are_checked_against_every_documented_rule() -> None:
    omni = "kling-3.0-omni-video"
    video = {"type": "feature_video", "url": "https://example.com/dance.mp4"}
    assert task_type(omni).validate({"contents": [{"type": "prompt", "text": PROMPT}, video]})
    elements = [{"type": "element", "element_id": str(n), "id": f"e{n}"} for n in range(4)]
    assert problems(
        omni,
        {
            "contents": [
                {"type": "last_frame", "url": FRAME, "id": "x"},
                {"type": "base_video", "url": b64(b"not a video by url")},
                {**video, "id": "x"},
                {"type": "refer_image", "url": FRAME},
                *elements,
            ],
            "settings": {"multi_shot": True, "audio": "native"},
        },
    ) == Counter(
        [
            ("contents[1].url", "format"),  # a video is a URL only
            ("contents[2].id", "duplicate"),
            ("contents[2]", "too_many"),  # one reference video
            ("contents", "requires"),  # a last frame alone
            ("contents", "too_many"),  # 5 reference images and elements with a video
            ("contents[0]", "not_supported"),  # frames with a base_video
            ("settings.multi_shot", "not_supported"),
            ("settings.audio", "not_supported"),
        ]
    )
    assert problems(T2V, {"prompt": PROMPT, "settings": {"audio": "original"}}) == Counter(
        [("settings.audio", "not_supported")]
    )
    assert problems(I2V, {"contents": [{"type": "first_frame", "url": FRAME}, video]}) == Counter(
        [("contents[1].type", "not_supported")]
    )


def test_an_uncertain_create_is_looked_up_at_kling_tasks_not_sent_again(service: Service, simulator) -> None:
    error = {"http": 500, "code": 5000, "message": "server error", "after_create": True}
    simulator.state.set_scenario("u-unsure", {"create_error": error})
    body = {"prompt": PROMPT, "options": {"external_task_id": "u-unsure"}}
    response = service.http.post(TEXT_TO_VIDEO_PATH, json=body)
    assert response.status_code == 200, response.text  # found by its id at /tasks: not refused, not resent
    (upstream,) = simulator.state.tasks()
    assert response.json()["data"]["id"] == upstream["task_id"]


def test_post_tasks_lists_the_callers_tasks_by_cursor(service: Service, simulator) -> None:
    for n in range(3):
        body = {"prompt": PROMPT, "options": {"external_task_id": f"l-{n}"}}
        assert service.http.post(TEXT_TO_VIDEO_PATH, json=body).status_code == 200
    first = service.http.post("/tasks", json={"limit": 2}).json()["data"]
    assert [task["external_id"] for task in first["result"]] == ["l-2", "l-1"]
    assert first["count"] == 2 and first["has_more"] and first["next_cursor"]
    rest = service.http.post("/kling/tasks", json={"cursor": first["next_cursor"], "limit": 2}).json()["data"]
    assert [task["external_id"] for task in rest["result"]] == ["l-0"]
    assert rest["has_more"] is False and rest["next_cursor"] == ""
    assert service.http.post("/tasks").json()["data"]["count"] == 3  # no body: every field has a default
    by_kind = {"filters": [{"key": "product_type", "values": ["image", "try_on"]}]}
    assert service.http.post("/tasks", json=by_kind).json()["data"]["result"] == []
    window = {"start_time": "0", "end_time": "1000"}
    assert service.http.post("/tasks", json=window).json()["data"]["result"] == []

    bad = {"limit": 0, "start_time": 5, "filters": [{"key": "state", "values": ["done"]}], "cursr": "x"}
    refused = service.http.post("/tasks", json=bad)
    assert refused.status_code == 400
    assert {(e["field"], e["code"]) for e in refused.json()["errors"]} == {
        ("limit", "range"),
        ("start_time", "type"),
        ("filters[0].key", "enum"),
        ("cursr", "unknown_field"),
    }
    later = service.http.post("/tasks", json={"start_time": "2000", "end_time": "1000"}).json()["errors"]
    assert later == [{"field": "start_time", "code": "range", "message": "must be before end_time"}]
    statuses = {"filters": [{"key": "status", "values": ["done"]}], "cursor": "not-ours"}
    fields = {(e["field"], e["code"]) for e in service.http.post("/tasks", json=statuses).json()["errors"]}
    assert fields == {("filters[0].values[0]", "enum"), ("cursor", "format")}


def test_billing_unit_charges_are_the_tasks_units_and_cash_is_not() -> None:
    def units(billing: object) -> str | None:
        body = {"id": "t", "status": "succeeded", "external_id": "e", "billing": billing}
        return update_from_callback(body).final_unit_deduction

    unit = {"charge_type": "unit", "amount": "1.5", "package_type": "video"}
    cash = {"charge_type": "cash", "amount": "0.84", "currency": "USD"}
    assert units([unit]) == "1.5" and units([unit, {**unit, "amount": "0.5"}]) == "2"
    assert units([cash]) is None and units([unit, cash]) == "1.5" and units(None) is None
    assert units([{**unit, "amount": bad} for bad in ("NaN", "-1", "abc", None)]) is None
