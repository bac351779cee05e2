"""Kling 2.6's unified text-to-video (`POST /text-to-video/kling-2.6`, type kling-2.6-text-to-video): the
unified body with 2.6's limits (a 2500-character prompt, 5 or 10 s, 720p or 1080p, native audio at 1080p
only, no multi-shot), every problem at once; and through the simulator to an archived MP4, found at
`/tasks` in the unified shape and counted under its model."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests import test_task_types
from tests.test_unified_api import round_trip
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

TYPE = "kling-2.6-text-to-video"
PATH = "/text-to-video/kling-2.6"


def problems(body: dict[str, Any]) -> Counter[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(TYPE).validate(body)
    return Counter((p.field, p.code) for p in caught.value.problems)


def test_kling_2_6_lives_at_its_unified_path_and_takes_its_own_settings() -> None:
    kind = task_type(TYPE)
    assert kind.unified and kind.path == PATH and kind.output == "video" and kind.pack == "video"
    body = {
        "prompt": "a lighthouse at dusk",
        "settings": {"audio": "native", "resolution": "1080p", "aspect_ratio": "9:16", "duration": 10},
        "options": {"external_task_id": "lh-1", "watermark_info": {"enabled": True}},
    }
    recorded = kind.validate(body)
    assert recorded == {
        "prompt": body["prompt"],
        "settings": body["settings"],
        "external_task_id": "lh-1",
        "watermark_info": {"enabled": True},
    }
    assert kind.validate({"prompt": "x", "settings": {"audio": "off"}})  # 720p, the default, is silent
    assert kind.model_of(body) == "kling-2.6"


def test_original_audio_is_refused_naming_the_paths_that_take_it() -> None:
    with pytest.raises(RequestInvalid) as caught:
        task_type(TYPE).validate({"prompt": "x", "settings": {"audio": "original"}})
    message = "keeps a reference or motion video's sound: omni video's, O1's and motion control's"
    message += " (native or off here)"
    assert [(p.field, p.message) for p in caught.value.problems] == [("settings.audio", message)]


ONE_SHOT = [
    "kling-2.6-text-to-video",
    "kling-2.6-image-to-video",
    "kling-2.5-turbo-text-to-video",
    "kling-2.5-turbo-image-to-video",
]


@pytest.mark.parametrize("type_name", ONE_SHOT)
def test_a_one_shot_model_sends_a_prompt_written_as_shots_as_plain_text(type_name: str) -> None:
    """Kling 2.6 and 2.5 Turbo make one shot: no shot rule applies (misnumbered, 11 s for a 5 s video)."""
    shots = "shot 1, 2, a cat wakes; shot 3, 9, it stretches; and then"
    kind = task_type(type_name)
    if "contents" in kind.rules.field_types:
        first = {"type": "first_frame", "url": "https://example.com/cat.png"}
        body: dict[str, Any] = {"contents": [{"type": "prompt", "text": shots}, first]}
    else:
        body = {"prompt": shots}
    assert kind.validate(body) == body


def test_every_limit_of_kling_2_6_is_reported_at_once() -> None:
    body = {
        "prompt": "x" * 2501,
        "negative_prompt": "blur",  # not in the unified API
        "settings": {"multi_shot": True, "resolution": "4k", "duration": 7, "audio": "original"},
        "options": {"external_task_id": ""},
    }
    assert problems(body) == Counter(
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
    assert problems({"prompt": "x", "settings": {"audio": "native"}}) == Counter(
        [("settings.audio", "requires")]
    )
    assert problems({"prompt": "x", "settings": {"audio": "native", "resolution": "720p"}}) == Counter(
        [("settings.audio", "requires")]
    )
    assert problems({"prompt": "x", "settings": {"duration": "5"}}) == Counter(
        [("settings.duration", "type")]
    )
    assert problems({}) == Counter([("prompt", "missing")])


def test_a_kling_2_6_task_round_trips_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    body = {
        "prompt": "a lighthouse at dusk",
        "settings": {"duration": 10, "resolution": "1080p", "audio": "native"},
        "options": {"external_task_id": "lh-2"},
    }
    view = round_trip(service, simulator, env, PATH, body)
    assert view["type"] == TYPE and view["model_name"] == "kling-2.6"
    assert service.http.get(f"/v1/videos/text2video/{view['task_id']}").status_code == 404  # not a /v1 task
