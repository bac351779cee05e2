"""Kling 3.0 Turbo's unified text and image to video (`POST /text-to-video/kling-3.0-turbo` and
`/image-to-video/kling-3.0-turbo`, types kling-3.0-turbo-text-to-video and -image-to-video): each path as
its own page documents it. Text to video as kling-3.0's (a 3072-character prompt with its shots, 3 to
15 s, an aspect ratio) without 4k; image to video a first frame and a prompt of at most 2500 characters,
no last frame, no element; neither takes `settings.audio` or `settings.multi_shot`, which
KLING_EXTRA_FIELDS does not change. Every problem at once, over HTTP too, an attacker's body included;
and through the simulator to archived MP4s, found at `/tasks` and counted under the model."""

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

T2V, I2V = "kling-3.0-turbo-text-to-video", "kling-3.0-turbo-image-to-video"
T2V_PATH, I2V_PATH = "/text-to-video/kling-3.0-turbo", "/image-to-video/kling-3.0-turbo"
FRAME = "https://example.com/first-frame.png"
SHOTS = "shot 1, 4, a lantern is lit; shot 2, 8, the street fills with light;"  # 12 s


def problems(name: str, body: object, **extra: Any) -> Counter[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(name).validate(body, **extra)
    return Counter((p.field, p.code) for p in caught.value.problems)


def test_kling_3_0_turbo_lives_at_its_unified_paths_and_takes_its_own_settings() -> None:
    for name, path in ((T2V, T2V_PATH), (I2V, I2V_PATH)):
        kind = task_type(name)
        assert kind.unified and kind.path == path and kind.output == "video" and kind.pack == "video"
        assert kind.model_of({}) == "kling-3.0-turbo"
    text = {
        "prompt": SHOTS,
        "settings": {"resolution": "1080p", "aspect_ratio": "9:16", "duration": 12},
        "options": {"external_task_id": "l-1"},
    }
    assert task_type(T2V).validate(text) == {
        "prompt": SHOTS,
        "settings": text["settings"],
        "external_task_id": "l-1",
    }
    assert task_type(T2V).validate({"prompt": "x" * 3072, "settings": {"duration": 3}})
    frames = [{"type": "first_frame", "url": b64(noise_png(8))}, {"type": "prompt", "text": "y" * 2500}]
    body = {"contents": frames, "settings": {"resolution": "720p", "duration": 15}}
    assert task_type(I2V).validate(body) == body
    # Its page gives no shot syntax: a prompt written as shots is sent as the text it is.
    assert task_type(I2V).validate({"contents": [frames[0], {"type": "prompt", "text": "shot 1, 9, x;"}]})


def test_every_limit_of_3_0_turbo_text_to_video_is_reported_at_once() -> None:
    body = {
        "prompt": "shot 1, 2, a; shot 3, 2, b;",  # numbered 1, 3 and 4 s in all, for a 15 s video
        "settings": {"audio": "native", "multi_shot": True, "resolution": "4k", "duration": 15},
        "options": {"callback_url": "ftp://example.com/hook"},
    }
    assert problems(T2V, body) == Counter(
        [
            ("prompt", "format"),
            ("prompt", "mismatch"),
            ("settings.audio", "not_supported"),
            ("settings.multi_shot", "not_supported"),
            ("settings.resolution", "not_supported"),
            ("options.callback_url", "format"),
        ]
    )
    # 12 s of shots, 5 s of video
    assert problems(T2V, {"prompt": SHOTS}) == Counter([("prompt", "mismatch")])
    # multi_shot is refused: its false turns no shot rule off, every problem in the one answer
    body = {"prompt": "shot 1, 2, a; shot 3, 2, b;", "settings": {"duration": 3, "multi_shot": False}}
    assert problems(T2V, body) == Counter(
        [("settings.multi_shot", "not_supported"), ("prompt", "format"), ("prompt", "mismatch")]
    )
    assert problems(T2V, {"prompt": "x" * 3073, "settings": {"duration": 16}}) == Counter(
        [
            ("prompt", "too_long"),
            ("settings.duration", "range"),
        ]
    )
    with pytest.raises(RequestInvalid) as caught:
        task_type(T2V).validate({"prompt": "x", "settings": {"audio": "off", "multi_shot": False}})
    for problem in caught.value.problems:
        assert problem.message == "Kling's kling-3.0-turbo page documents no such setting"
    # audio and multi_shot are kling-3.0's known settings, not new fields: KLING_EXTRA_FIELDS lets
    # only unknown keys through, so naming them changes nothing.
    extra = frozenset({"settings.audio", "settings.multi_shot", "settings.*"})
    body = {"prompt": "x", "settings": {"audio": "off", "multi_shot": False}}
    assert problems(T2V, body, extra_fields=extra) == Counter(
        [
            ("settings.audio", "not_supported"),
            ("settings.multi_shot", "not_supported"),
        ]
    )


def test_every_limit_of_3_0_turbo_image_to_video_is_reported_at_once() -> None:
    body = {
        "contents": [
            {"type": "last_frame", "url": FRAME},  # kling-3.0's, not Turbo's
            {"type": "element", "element_id": "e", "id": "e1"},
            {"type": "prompt", "text": "y" * 2501},  # the text-to-video page's 3072 is not this one's
            {"type": "prompt", "text": "y" * 3073},
            {"type": "first_frame", "url": "not base64!"},
        ],
        "settings": {"aspect_ratio": "1:1", "audio": "off", "multi_shot": False, "resolution": "4k"},
    }
    assert problems(I2V, body) == Counter(
        [
            ("contents[0].type", "not_supported"),
            ("contents[1].type", "not_supported"),
            ("contents[2].text", "too_long"),
            ("contents[3].text", "too_long"),
            ("contents[3]", "too_many"),
            ("contents[4].url", "format"),
            ("settings.aspect_ratio", "not_supported"),
            ("settings.audio", "not_supported"),
            ("settings.multi_shot", "not_supported"),
            ("settings.resolution", "not_supported"),
        ]
    )
    assert problems(I2V, {"contents": [{"type": "prompt", "text": "x"}]}) == Counter(
        [("contents", "missing")]
    )
    assert problems(
        I2V, {"contents": [{"type": "first_frame", "url": FRAME}], "settings": {"duration": 2}}
    ) == Counter([("settings.duration", "range")])


def test_an_attackers_body_is_refused_whole_over_http(service: Service, simulator) -> None:
    body = {
        "prompt": {"text": "x"},
        "settings": ["duration", 5],
        "options": {"external_task_id": "a b", "watermark_info": {"enabled": "yes"}, "callback_url": 1e308},
        "contents": [{"type": "first_frame", "url": FRAME}],  # image to video's, not this path's
    }
    response = service.http.post(f"/kling{T2V_PATH}", json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    assert {(e["field"], e["code"]) for e in response.json()["errors"]} == {
        ("prompt", "type"),
        ("settings", "type"),
        ("options.external_task_id", "format"),
        ("options.watermark_info.enabled", "type"),
        ("options.callback_url", "type"),
        ("contents", "unknown_field"),
    }
    frames = {
        "contents": [{"type": "first_frame", "url": FRAME, "id": "x" * 10_000}] * 300,
        "settings": {"duration": 7.5, "resolution": "1080P"},
    }
    response = service.http.post(I2V_PATH, json=frames)
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert {
        ("contents[0].id", "too_long"),
        ("settings.duration", "type"),
        ("settings.resolution", "enum"),
    } <= errors
    assert {("contents[299]", "too_many"), ("contents[299].id", "too_long")} <= errors
    assert simulator.state.tasks() == []


def test_kling_3_0_turbo_tasks_round_trip_to_archived_mp4s(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    text = {
        "prompt": SHOTS,
        "settings": {"duration": 12, "resolution": "1080p", "aspect_ratio": "16:9"},
        "options": {"external_task_id": "t30-t2v"},
    }
    frames = {
        "contents": [{"type": "first_frame", "url": FRAME}, {"type": "prompt", "text": "the lantern sways"}],
        "settings": {"duration": 3},
        "options": {"external_task_id": "t30-i2v"},
    }
    for path, body, prefix, name in ((T2V_PATH, text, "/kling", T2V), (I2V_PATH, frames, "", I2V)):
        view = round_trip(service, simulator, env, path, body, prefix)
        assert view["type"] == name and view["model_name"] == "kling-3.0-turbo"
    (day,) = service.http.get("/v1/usage").json()["data"]["tenants"][0]["days"]
    (model,) = day["models"]
    assert (model["model"], model["tasks"]["succeed"]) == ("kling-3.0-turbo", 2)


def test_cli_submits_3_0_turbo_in_kling_s_shape(service: Service, simulator) -> None:
    args = ("submit", "--type", T2V, "--prompt", "a lantern", "--duration", "14", "--aspect-ratio", "1:1")
    result = run(service.app, *args, "--external-task-id", "cli-t30")
    assert result.exit_code == 0, result.output
    sent = sent_upstream(simulator, "cli-t30")
    assert sent["prompt"] == "a lantern" and sent["settings"] == {"duration": 14, "aspect_ratio": "1:1"}
    refused = run(service.app, "submit", "--type", I2V, "--image", FRAME, "--image-tail", FRAME)
    assert refused.exit_code == 2 and "takes prompt, first_frame only" in refused.stderr
