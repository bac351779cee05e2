"""Kling 2.5 Turbo's unified text and image to video (`POST /text-to-video/kling-2.5-turbo` and
`/image-to-video/kling-2.5-turbo`, types kling-2.5-turbo-text-to-video and -image-to-video): Kling 2.6's
limits without audio (a 2500-character prompt, 5 or 10 s, 720p or 1080p, silent video, one shot), and for
image to video a first frame, a last frame at 1080p only, no element, no aspect ratio; every problem at
once, over HTTP too, an attacker's body included; and through the simulator to archived MP4s, found at
`/tasks` in the unified shape and counted under the model."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests import test_task_types
from tests.conftest import Service
from tests.test_inputs import b64, noise_png, sent_upstream
from tests.test_task_types import run
from tests.test_unified_api import round_trip
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

T2V, I2V = "kling-2.5-turbo-text-to-video", "kling-2.5-turbo-image-to-video"
T2V_PATH, I2V_PATH = "/text-to-video/kling-2.5-turbo", "/image-to-video/kling-2.5-turbo"
FRAME = "https://example.com/first-frame.png"
LAST = "https://example.com/last-frame.png"


def problems(name: str, body: object, **extra: Any) -> Counter[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(name).validate(body, **extra)
    return Counter((p.field, p.code) for p in caught.value.problems)


def test_kling_2_5_turbo_lives_at_its_unified_paths_and_takes_its_own_settings() -> None:
    for name, path in ((T2V, T2V_PATH), (I2V, I2V_PATH)):
        kind = task_type(name)
        assert kind.unified and kind.path == path and kind.output == "video" and kind.pack == "video"
        assert kind.model_of({}) == "kling-2.5-turbo"
    text = {
        "prompt": "a heron takes off",
        "settings": {"resolution": "1080p", "aspect_ratio": "1:1", "duration": 10},
        "options": {"external_task_id": "h-1", "watermark_info": {"enabled": True}},
    }
    assert task_type(T2V).validate(text) == {
        "prompt": text["prompt"],
        "settings": text["settings"],
        "external_task_id": "h-1",
        "watermark_info": {"enabled": True},
    }
    frames = [
        {"type": "prompt", "text": "y" * 2500},
        {"type": "first_frame", "url": b64(noise_png(8))},  # raw Base64, as kling-3.0's
        {"type": "last_frame", "url": LAST},
    ]
    body = {"contents": frames, "settings": {"resolution": "1080p", "duration": 5}}
    assert task_type(I2V).validate(body) == body
    assert task_type(I2V).validate({"contents": [{"type": "first_frame", "url": FRAME}]})  # 720p, 5 s


def test_every_limit_of_2_5_turbo_text_to_video_is_reported_at_once() -> None:
    body = {
        "prompt": "x" * 2501,
        "negative_prompt": "blur",  # not in the unified API
        "settings": {"multi_shot": False, "resolution": "4k", "duration": 15, "audio": "off"},
        "options": {"external_task_id": ""},
    }
    assert problems(T2V, body) == Counter(
        [
            ("prompt", "too_long"),
            ("negative_prompt", "unknown_field"),
            ("settings.multi_shot", "not_supported"),
            ("settings.resolution", "not_supported"),
            ("settings.duration", "not_supported"),
            ("settings.audio", "not_supported"),
            ("options.external_task_id", "too_short"),
        ]
    )
    with pytest.raises(RequestInvalid) as caught:
        task_type(T2V).validate({"prompt": "x", "settings": {"audio": "native", "resolution": "1080p"}})
    (audio,) = caught.value.problems
    assert audio.field == "settings.audio" and "silent video" in audio.message
    assert problems(T2V, {"prompt": "x", "settings": {"duration": "5"}}) == Counter(
        [("settings.duration", "type")]
    )
    assert problems(T2V, {}) == Counter([("prompt", "missing")])


def test_every_limit_of_2_5_turbo_image_to_video_is_reported_at_once() -> None:
    body = {
        "contents": [
            {"type": "element", "element_id": "e", "id": "e1"},  # kling-3.0's
            {"type": "prompt", "text": "y" * 2501},
            {"type": "prompt", "text": "again"},
            {"type": "first_frame", "url": FRAME, "text": "x"},
            {"type": "first_frame", "url": "data:image/png;base64,AAAA"},
            {"type": "last_frame", "url": LAST},
            {"type": "last_frame"},
            {"type": "refer_image", "url": FRAME},  # omni-video's
        ],
        "settings": {"aspect_ratio": "16:9", "audio": "off", "multi_shot": True, "duration": 3},
    }
    assert problems(I2V, body) == Counter(
        [
            ("contents[0].type", "not_supported"),
            ("contents[1].text", "too_long"),
            ("contents[2]", "too_many"),
            ("contents[3].text", "requires"),
            ("contents[4].url", "format"),
            ("contents[4]", "too_many"),
            ("contents[5]", "requires"),  # a last frame at 720p, the default
            ("contents[6].url", "missing"),
            ("contents[6]", "too_many"),
            ("contents[6]", "requires"),  # each last frame, as Kling 2.6's
            ("contents[7].type", "not_supported"),
            ("settings.aspect_ratio", "not_supported"),
            ("settings.audio", "not_supported"),
            ("settings.multi_shot", "not_supported"),
            ("settings.duration", "not_supported"),
        ]
    )
    last_frame = [{"type": "first_frame", "url": FRAME}, {"type": "last_frame", "url": LAST}]
    assert problems(I2V, {"contents": last_frame, "settings": {"resolution": "720p"}}) == Counter(
        [("contents[1]", "requires")]
    )
    # A settings object that fails its types says nothing of the resolution: no guess is reported.
    wrong = {"contents": last_frame, "settings": {"resolution": "1080p", "duration": "5"}}
    assert problems(I2V, wrong) == Counter([("settings.duration", "type")])
    assert problems(I2V, {"contents": [{"type": "prompt", "text": "x"}]}) == Counter(
        [("contents", "missing")]
    )
    assert problems(I2V, {"contents": []}) == Counter([("contents", "too_few")])
    assert problems(I2V, {"prompt": "x"}) == Counter([("prompt", "unknown_field"), ("contents", "missing")])
    with pytest.raises(RequestInvalid) as caught:  # a key of no item 2.5 Turbo takes
        task_type(I2V).validate({"contents": [{"type": "first_frame", "url": FRAME, "element_id": "e"}]})
    message = "is not taken by any item of Kling 2.5 Turbo's image to video"
    assert [(p.field, p.code, p.message) for p in caught.value.problems] == [
        ("contents[0].element_id", "requires", message)
    ]


def test_an_attackers_body_is_refused_whole_over_http(service: Service, simulator) -> None:
    body = {
        "contents": [
            {"type": "first_frame", "url": "javascript:alert(1)"},
            {"type": "prompt", "text": ["x"]},
            7,
            {"type": "first_frame" * 1000, "url": FRAME},
            {"type": "last_frame", "url": "A" * 10_001},  # not Base64: a length no decoding allows
        ],
        "settings": {"duration": 10**30, "resolution": True, "audio": None, "aspect_ratio": {"$gt": ""}},
        "options": {"external_task_id": "x" * 100_000, "callback_url": "http://169.254.169.254/latest"},
        "__proto__": {"admin": True},
    }
    response = service.http.post(I2V_PATH, json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    assert {(e["field"], e["code"]) for e in response.json()["errors"]} == {
        ("contents[0].url", "format"),
        ("contents[1].text", "type"),
        ("contents[2]", "type"),
        ("contents[3].type", "enum"),
        ("contents[4].url", "format"),
        ("settings.duration", "range"),
        ("settings.resolution", "type"),
        ("settings.audio", "type"),
        ("settings.aspect_ratio", "type"),
        ("options.external_task_id", "too_long"),
        ("options.callback_url", "blocked_address"),
        ("__proto__", "unknown_field"),
    }
    huge = service.http.post(T2V_PATH, json={"prompt": "x" * 1_000_000, "settings": {"duration": -5}})
    assert {(e["field"], e["code"]) for e in huge.json()["errors"]} == {
        ("prompt", "too_long"),
        ("settings.duration", "range"),
    }
    assert service.http.post(T2V_PATH, json=["prompt"]).status_code == 400
    assert simulator.state.tasks() == []


def test_kling_2_5_turbo_tasks_round_trip_to_archived_mp4s(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    text = {
        "prompt": "a heron takes off",
        "settings": {"duration": 10, "resolution": "1080p", "aspect_ratio": "9:16"},
        "options": {"external_task_id": "t25-t2v"},
    }
    frames = {
        "contents": [
            {"type": "prompt", "text": "the heron lands"},
            {"type": "first_frame", "url": b64(noise_png(300))},
            {"type": "last_frame", "url": LAST},
        ],
        "settings": {"duration": 5, "resolution": "1080p"},
        "options": {"external_task_id": "t25-i2v"},
    }
    for path, body, prefix, name in ((T2V_PATH, text, "", T2V), (I2V_PATH, frames, "/kling", I2V)):
        view = round_trip(service, simulator, env, path, body, prefix)
        assert view["type"] == name and view["model_name"] == "kling-2.5-turbo"
    (day,) = service.http.get("/v1/usage").json()["data"]["tenants"][0]["days"]
    (model,) = day["models"]
    assert (model["model"], model["tasks"]["succeed"]) == ("kling-2.5-turbo", 2)


def test_cli_submits_2_5_turbo_in_kling_s_shape(service: Service, simulator) -> None:
    args = ("submit", "--type", I2V, "--prompt", "a heron", "--image", FRAME, "--duration", "10")
    result = run(service.app, *args, "--external-task-id", "cli-t25")
    assert result.exit_code == 0, result.output
    sent = sent_upstream(simulator, "cli-t25")
    assert sent["contents"] == [{"type": "prompt", "text": "a heron"}, {"type": "first_frame", "url": FRAME}]
    assert sent["settings"] == {"duration": 10}
    # The CLI has no --resolution: a last frame, 1080p only, is refused with what it needs.
    refused = run(service.app, "submit", "--type", I2V, "--image", FRAME, "--image-tail", LAST)
    assert refused.exit_code == 2 and 'set settings.resolution to "1080p"' in refused.stderr
