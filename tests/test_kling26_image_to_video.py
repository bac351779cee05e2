"""Kling 2.6's unified image-to-video (`POST /image-to-video/kling-2.6`, type kling-2.6-image-to-video):
a first frame, a last frame at 1080p only, a 2500-character prompt, up to 2 voices of Kling's voice
library with native audio only (checked as /v1 image2video's voice_list is), 2.6's settings; every
problem at once, over HTTP too; and through the simulator to an archived MP4, found at `/tasks` in the
unified shape, in `/v1/tasks?type=` and counted under its model."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests import test_task_types
from tests.conftest import Service
from tests.test_unified_api import round_trip
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

TYPE = "kling-2.6-image-to-video"
PATH = "/image-to-video/kling-2.6"
FRAME = "https://example.com/first-frame.png"
FIRST = {"type": "first_frame", "url": FRAME}


def problems(type_name: str, body: dict[str, Any]) -> Counter[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(body)
    return Counter((p.field, p.code) for p in caught.value.problems)


def test_kling_2_6_image_to_video_takes_frames_a_prompt_and_voices() -> None:
    kind = task_type(TYPE)
    assert kind.unified and kind.path == PATH and kind.output == "video" and kind.pack == "video"
    body = {
        "contents": [
            {"type": "prompt", "text": "The man <<<voice_1>>> says: welcome"},
            FIRST,
            {"type": "last_frame", "url": "https://example.com/last.png"},
            {"type": "voice", "voice_id": "829824295735410756", "id": "voice_1"},
            {"type": "voice", "voice_id": "829824295735410757", "id": "voice_2"},
        ],
        "settings": {"audio": "native", "resolution": "1080p", "duration": 10},
        "options": {"external_task_id": "i26-1"},
    }
    assert kind.validate(body) == {
        "contents": body["contents"],
        "settings": body["settings"],
        "external_task_id": "i26-1",
    }
    assert kind.validate({"contents": [FIRST], "settings": {"audio": "off", "duration": 5}})
    assert kind.model_of(body) == "kling-2.6"


def test_every_rule_of_kling_2_6_image_to_video_is_reported_at_once() -> None:
    voice = {"type": "voice", "voice_id": "v", "id": "voice_1"}
    body = {
        "contents": [
            {"type": "last_frame", "url": FRAME},
            {"type": "last_frame", "url": FRAME},
            {"type": "prompt", "text": "x" * 2501},
            {"type": "prompt", "text": "y"},
            voice,
            {**voice, "id": "voice_2", "voice_id": ""},
            {**voice, "id": "voice_1"},
            {"type": "element", "element_id": "1", "id": "e1"},
            {"type": "first_frame", "url": FRAME, "voice_id": "v"},
        ],
        "settings": {
            "aspect_ratio": "16:9",
            "multi_shot": False,
            "duration": 7,
            "character_orientation": "image",
        },
    }
    assert problems(TYPE, body) == Counter(
        [
            ("contents[1]", "too_many"),  # one last frame
            ("contents[0]", "requires"),  # a last frame at 1080p only (720p is the default)
            ("contents[1]", "requires"),
            ("contents[2].text", "too_long"),  # 2500, not kling-3.0's 3072
            ("contents[3]", "too_many"),  # one prompt
            ("contents[4]", "requires"),  # voices speak with native audio only (off is the default)
            ("contents[5]", "requires"),
            ("contents[6]", "requires"),
            ("contents[5].voice_id", "too_short"),  # as /v1's voice_list[].voice_id
            ("contents[6].id", "duplicate"),
            ("contents[6]", "too_many"),  # 2 voices
            ("contents[7].type", "not_supported"),  # kling-3.0's elements
            ("contents[8].voice_id", "requires"),  # a voice's key on a frame
            ("settings.aspect_ratio", "not_supported"),  # the first frame decides it
            ("settings.multi_shot", "not_supported"),
            ("settings.duration", "not_supported"),
            ("settings.character_orientation", "not_supported"),  # motion control's
        ]
    )
    assert problems(TYPE, {"contents": [FIRST], "settings": {"audio": "native"}}) == Counter(
        [("settings.audio", "requires")]
    )
    # The settings as sent, for native audio as for a last frame: one bad key hides neither; each
    # problem is at its own field and names it, the fix the same.
    last = {"type": "last_frame", "url": FRAME}
    with pytest.raises(RequestInvalid) as caught:
        task_type(TYPE).validate(
            {"contents": [FIRST, last], "settings": {"audio": "native", "duration": "5"}}
        )
    assert [(p.field, p.code, p.message) for p in caught.value.problems] == [
        ("settings.duration", "type", "must be an integer from 3 to 15 (a JSON number, not a string)"),
        (
            "settings.audio",
            "requires",
            'Kling 2.6 makes native audio at 1080p only: set settings.resolution to "1080p"',
        ),
        (
            "contents[1]",
            "requires",
            'Kling 2.6 takes a last frame at 1080p only: set settings.resolution to "1080p"',
        ),
    ]
    assert problems(
        TYPE, {"contents": [FIRST], "settings": {"audio": "original", "resolution": "4k"}}
    ) == Counter(
        [
            ("settings.audio", "not_supported"),
            ("settings.resolution", "not_supported"),
        ]
    )
    assert problems(
        TYPE, {"contents": [voice], "settings": {"audio": "native", "resolution": "1080p"}}
    ) == Counter(
        [
            ("contents", "missing")  # a first frame is required
        ]
    )
    assert problems(TYPE, {}) == Counter([("contents", "missing")])


def test_an_attackers_body_is_refused_whole_and_nothing_reaches_kling(service: Service, simulator) -> None:
    body = {
        "contents": [
            {"type": "first_frame", "url": "data:image/png;base64,AAAA"},
            {"type": "voice", "voice_id": 7, "id": ["x"]},
            {"type": "prompt", "text": "x" * 100_000},
            "first_frame",
        ],
        "settings": {"duration": 1e308, "resolution": None, "audio": True},
        "options": {"callback_url": "http://169.254.169.254/latest/meta-data", "external_task_id": "a b"},
        "model_name": "kling-v2-6",
    }
    response = service.http.post(PATH, json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert fields == {
        ("contents[0].url", "format"),
        ("contents[1].voice_id", "type"),
        ("contents[1].id", "type"),  # no `requires` on the voice: the settings' problems say why
        ("contents[2].text", "too_long"),
        ("contents[3]", "type"),
        ("settings.duration", "type"),
        ("settings.resolution", "type"),
        ("settings.audio", "type"),
        ("options.callback_url", "blocked_address"),  # the service would never call it
        ("options.external_task_id", "format"),
        ("model_name", "unknown_field"),  # the path names the model
    }
    assert simulator.state.tasks() == []


def test_a_kling_2_6_image_to_video_task_round_trips_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    body = {
        "contents": [FIRST, {"type": "voice", "voice_id": "829824295735410756", "id": "voice_1"}],
        "settings": {"duration": 5, "resolution": "1080p", "audio": "native"},
        "options": {"external_task_id": "i26-2"},
    }
    view = round_trip(service, simulator, env, PATH, body)
    assert view["type"] == TYPE and view["model_name"] == "kling-2.6"
    assert service.http.get(f"/v1/videos/image2video/{view['task_id']}").status_code == 404  # not a /v1 task
