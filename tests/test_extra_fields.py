"""KLING_EXTRA_FIELDS inside a body: `a.b` and `a.*` let a new key of a nested object through (a unified
body's `settings`, `options` and `contents` items, lip-sync's `input`), a close misspelling is still
refused, `*` stays at the top; what is let through reaches Kling as written, and the OpenAPI document
shows it."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.test_inputs import sent_upstream
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type
from webhook_service.web.app import create_app

T2V = "kling-3.0-text-to-video"
I2V = "kling-3.0-image-to-video"
FRAME = "https://example.com/first-frame.png"
SPEECH = {"video_url": "https://example.com/talk.mp4", "mode": "text2video", "text": "Hi", "voice_id": "v"}


def outcome(type_name: str, body: dict[str, Any], extras: str) -> set[tuple[str, str]] | dict[str, Any]:
    """The body as recorded, or its problems, with KLING_EXTRA_FIELDS set to `extras`."""
    try:
        return task_type(type_name).validate(body, extra_fields=frozenset(extras.split(",")))
    except RequestInvalid as invalid:
        return {(p.field, p.code) for p in invalid.problems}


def test_a_named_nested_key_passes_and_its_neighbours_are_still_checked() -> None:
    body = {
        "prompt": "shot 1, 2, a kite; shot 2, 3, the clouds;",
        "settings": {"duration": 5, "seed": 7},
        "options": {"external_task_id": "e-1", "priority": "high"},
    }
    recorded = outcome(T2V, body, "settings.seed,options.priority")
    # Recorded as every unified body is (its known options at the top), the new option kept in options.
    assert recorded == {**{k: body[k] for k in ("prompt", "settings")}, "options": {"priority": "high"}} | {
        "external_task_id": "e-1"
    }
    # Let through, the object is checked as before: its shots still add up to its duration.
    wrong = {**body, "settings": {"duration": 10, "seed": 7}}
    assert outcome(T2V, wrong, "settings.seed,options.priority") == {("prompt", "mismatch")}
    assert outcome(T2V, body, "") == {
        ("settings.seed", "unknown_field"),
        ("options.priority", "unknown_field"),
    }


def test_a_wildcard_takes_new_keys_of_one_object_but_no_misspelling() -> None:
    assert isinstance(
        outcome(T2V, {"prompt": "x", "settings": {"seed": 1, "style": "noir"}}, "settings.*"), dict
    )
    assert outcome(T2V, {"prompt": "x", "settings": {"durations": 5}}, "settings.*") == {
        ("settings.durations", "unknown_field")  # too close to duration: a typo, even under the wildcard
    }
    # `*` lets new top-level fields through, never a key inside an object.
    assert outcome(T2V, {"prompt": "x", "top": 1, "settings": {"seed": 1}}, "*") == {
        ("settings.seed", "unknown_field")
    }


def test_items_of_an_array_are_named_without_their_index() -> None:
    item = {"type": "first_frame", "url": FRAME, "weight": 0.5}
    assert isinstance(outcome(I2V, {"contents": [item]}, "contents.weight"), dict)
    assert outcome(I2V, {"contents": [item]}, "") == {("contents[0].weight", "unknown_field")}
    camera = {"prompt": "x", "camera_control": {"type": "simple", "config": {"zoom": 1, "dolly": 2}}}
    assert isinstance(outcome("text2video", camera, "camera_control.config.dolly"), dict)


def test_a_new_key_of_lip_sync_input_passes_when_named() -> None:
    body = {"input": {**SPEECH, "task_id": "123"}}
    assert outcome("lip-sync", body, "input.task_id") == body
    assert outcome("lip-sync", body, "task_id") == {("input.task_id", "unknown_field")}
    # Named, the key passes; the input's own rules still hold.
    assert outcome(
        "lip-sync", {"input": {**SPEECH, "task_id": "1", "audio_type": "url"}}, "input.task_id"
    ) == {("input.audio_type", "requires")}


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "KLING_EXTRA_FIELDS": "settings.seed,options.priority,input.task_id,contents.*"}


def test_let_through_keys_reach_kling_as_written(service, simulator) -> None:
    simulator.state.set_default({"steps": [{"status": "processing", "delay": 0}]})
    body = {
        "prompt": "a kite",
        "settings": {"seed": 7},
        "options": {"external_task_id": "u-x", "priority": "high"},
    }
    created = service.http.post("/text-to-video/kling-3.0", json=body)
    assert created.status_code == 200, created.text
    sent = sent_upstream(simulator, "u-x")
    assert sent["settings"] == {"seed": 7}
    assert sent["options"]["priority"] == "high" and sent["options"]["external_task_id"] == "u-x"
    assert "priority" not in sent and "options" not in sent["options"]

    lip_sync = {"input": {**SPEECH, "task_id": "123"}, "external_task_id": "ls-x"}
    assert service.http.post("/v1/videos/lip-sync", json=lip_sync).status_code == 200
    assert sent_upstream(simulator, "ls-x")["input"]["task_id"] == "123"
    refused = service.http.post("/v1/videos/lip-sync", json={"input": {**SPEECH, "taskid": "1"}})
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("input.taskid", "unknown_field")]


def test_the_openapi_document_shows_what_is_let_through(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    shapes = doc["components"]["schemas"]

    def body_of(path: str) -> dict[str, Any]:
        return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    settings = body_of("/text-to-video/kling-3.0")["properties"]["settings"]
    settings = shapes[settings["$ref"].rsplit("/", 1)[-1]] if "$ref" in settings else settings
    assert settings["properties"]["seed"] == {} and settings["additionalProperties"] is False
    lip_sync_input = body_of("/v1/videos/lip-sync")["properties"]["input"]
    lip_sync_input = (
        shapes[lip_sync_input["$ref"].rsplit("/", 1)[-1]] if "$ref" in lip_sync_input else lip_sync_input
    )
    assert "task_id" in lip_sync_input["properties"]
    contents = body_of("/image-to-video/kling-3.0")["properties"]["contents"]["items"]
    contents = shapes[contents["$ref"].rsplit("/", 1)[-1]] if "$ref" in contents else contents
    assert contents["additionalProperties"] is True


def test_the_document_is_built_from_each_app_s_own_setting(env: dict[str, str]) -> None:
    plain = create_app({**env, "KLING_EXTRA_FIELDS": ""})
    doc = plain.test_client().get("/openapi.json").get_json()
    ref = doc["paths"]["/text-to-video/kling-3.0"]["post"]["requestBody"]["content"]["application/json"]
    settings = ref["schema"]["properties"]["settings"]
    shape = (
        doc["components"]["schemas"][settings["$ref"].rsplit("/", 1)[-1]] if "$ref" in settings else settings
    )
    assert "seed" not in shape["properties"]
