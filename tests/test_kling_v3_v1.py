"""kling-v3 on the /v1 paths (`/v1/videos/text2video`, `/v1/videos/image2video`): its durations ("3" to
"15"), sound, and multi-shot videos (`multi_shot`, `shot_type`, `multi_prompt`), each rule checked with
the others' problems; what is valid reaches Kling unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Service
from tests.test_inputs import sent_upstream
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type

V3 = {"model_name": "kling-v3"}
IMAGE = "https://example.com/first.png"
SHOTS = [
    {"index": 1, "prompt": "a kite on the beach", "duration": "4"},
    {"index": 2, "prompt": "the kite among clouds", "duration": "8"},
]


def problems(type_name: str, body: dict[str, Any]) -> set[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(body)
    return {(p.field, p.code) for p in caught.value.problems}


def test_kling_v3_bodies_pass_unchanged() -> None:
    single = {
        **V3,
        "prompt": "a kite",
        "duration": "15",
        "sound": "on",
        "mode": "pro",
        "aspect_ratio": "9:16",
    }
    assert task_type("text2video").validate(single) == single
    shots = {**V3, "duration": "12", "multi_shot": True, "shot_type": "customize", "multi_prompt": SHOTS}
    assert task_type("text2video").validate(shots) == shots  # no prompt: the shots carry theirs
    cut = {**V3, "prompt": "a kite's day", "multi_shot": True, "shot_type": "intelligence", "duration": "9"}
    assert task_type("text2video").validate(cut) == cut
    image = {**V3, "image": IMAGE, "image_tail": IMAGE, "duration": "3", "sound": "off", "multi_shot": False}
    assert task_type("image2video").validate(image) == image
    image_shots = {**V3, "image": IMAGE, "duration": "12", "multi_shot": True, "shot_type": "customize"}
    assert task_type("image2video").validate({**image_shots, "multi_prompt": SHOTS})


@pytest.mark.parametrize("type_name", ["text2video", "image2video"])
def test_durations_and_multi_shot_are_kling_v3_s_only(type_name: str) -> None:
    base = {"prompt": "a kite"} | ({"image": IMAGE} if type_name == "image2video" else {})
    assert problems(type_name, {**base, "model_name": "kling-v2-6", "duration": "7"}) == {
        ("duration", "not_supported_by_model")
    }
    assert problems(type_name, {**base, "duration": "12"}) == {("duration", "not_supported_by_model")}
    assert problems(type_name, {**base, **V3, "duration": "16"}) == {("duration", "enum")}
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate({**base, **V3, "duration": "16"})
    assert caught.value.problems[0].message == 'must be "5" or "10" (kling-v3: "3" to "15")'
    assert problems(type_name, {**base, **V3, "duration": 8}) == {("duration", "type")}
    assert problems(type_name, {**base, "model_name": "kling-v2-6", "multi_shot": False}) == {
        ("multi_shot", "not_supported_by_model")
    }
    assert task_type(type_name).validate({**base, "model_name": "kling-v2-6", "duration": "10"})


def test_the_multi_shot_fields_go_together() -> None:
    assert problems("text2video", {**V3, "multi_shot": True}) == {("shot_type", "missing")}
    assert problems("text2video", {**V3, "multi_shot": True, "shot_type": "customize"}) == {
        ("multi_prompt", "missing")
    }
    assert problems("text2video", {**V3, "multi_shot": True, "shot_type": "intelligence"}) == {
        ("prompt", "missing")
    }
    customize = {**V3, "multi_shot": True, "shot_type": "customize", "multi_prompt": SHOTS, "duration": "12"}
    assert problems("text2video", {**customize, "prompt": "ignored"}) == {("prompt", "requires")}
    assert problems("text2video", {**V3, "prompt": "x", "shot_type": "customize", "multi_prompt": SHOTS}) == {
        ("shot_type", "requires"),
        ("multi_prompt", "requires"),
    }
    intelligence = {**V3, "prompt": "x", "multi_shot": True, "shot_type": "intelligence"}
    assert problems("text2video", {**intelligence, "multi_prompt": SHOTS}) == {("multi_prompt", "requires")}
    assert problems("text2video", {**V3, "prompt": "x", "shot_type": "smart", "multi_shot": True}) == {
        ("shot_type", "enum")
    }
    # A multi-shot video has no last frame.
    image = {**V3, "image": IMAGE, "image_tail": IMAGE, "prompt": "x", "multi_shot": True}
    assert problems("image2video", {**image, "shot_type": "intelligence"}) == {("image_tail", "exclusive")}


def test_the_shots_are_checked_and_add_up_to_the_duration() -> None:
    customize = {**V3, "multi_shot": True, "shot_type": "customize"}
    assert problems("text2video", {**customize, "multi_prompt": SHOTS}) == {
        ("multi_prompt", "mismatch")
    }  # 12 != 5
    bad = [
        {"index": 1, "prompt": "", "duration": "0"},
        {"index": 1, "prompt": "x" * 513, "duration": 4},
        {"index": "3", "prompt": "y", "duration": "2", "camera": "pan"},
    ]
    assert problems("text2video", {**customize, "multi_prompt": bad, "duration": "6"}) == {
        ("multi_prompt[0].prompt", "too_short"),
        ("multi_prompt[0].duration", "range"),
        ("multi_prompt[1].prompt", "too_long"),
        ("multi_prompt[1].duration", "type"),
        ("multi_prompt[2].index", "type"),
        ("multi_prompt[2].camera", "unknown_field"),
    }
    repeated = [{**SHOTS[0], "duration": "2"}, {**SHOTS[0], "duration": "3"}]
    assert problems("text2video", {**customize, "multi_prompt": repeated}) == {
        ("multi_prompt[1].index", "duplicate")
    }
    assert problems("text2video", {**customize, "multi_prompt": SHOTS * 4, "duration": "15"}) >= {
        ("multi_prompt", "too_many")
    }


def test_a_kling_v3_multi_shot_text2video_reaches_kling_unchanged(service: Service, simulator) -> None:
    simulator.state.set_default({"steps": [{"status": "processing", "delay": 0}]})
    body = {**V3, "duration": "12", "multi_shot": True, "shot_type": "customize", "multi_prompt": SHOTS}
    created = service.http.post("/kling/v1/videos/text2video", json={**body, "external_task_id": "v3-shots"})
    assert created.status_code == 200, created.text
    sent = sent_upstream(simulator, "v3-shots")
    assert {key: sent[key] for key in body} == body
    assert service.services.store.get("v3-shots").model_name == "kling-v3"  # usage counts it under kling-v3
    refused = service.http.post("/v1/videos/image2video", json={**body, "image": IMAGE, "image_tail": IMAGE})
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("image_tail", "exclusive")]
