"""Kling O1's unified omni video (`POST /omni-video/kling-o1`, type kling-o1-omni-video): kling-3.0-omni's
contents rules (shared) with O1's limits (a 2500-character prompt, no element beside both frames, 3 to
10 s and 5 or 10 from a first frame alone, audio original or off, 720p or 1080p, an aspect ratio when
nothing else gives the shape, no multi-shot); every problem at once, over HTTP too; and through the
simulator to an archived MP4."""

from __future__ import annotations

from collections import Counter

import pytest

from tests import test_task_types
from tests.conftest import Service
from tests.test_inputs import b64
from tests.test_kling26_image_to_video import problems
from tests.test_unified_api import round_trip
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

TYPE = "kling-o1-omni-video"
PATH = "/omni-video/kling-o1"
IMAGE = "https://example.com/cat.png"
VIDEO = "https://example.com/walk.mp4"
FIRST = {"type": "first_frame", "url": IMAGE}
ELEMENT = {"type": "element", "element_id": "163", "id": "cat"}


def test_kling_o1_takes_omni_contents_with_its_own_settings() -> None:
    kind = task_type(TYPE)
    assert kind.unified and kind.path == PATH and kind.output == "video" and kind.pack == "video"
    prompt_only = {
        "contents": [{"type": "prompt", "text": "a cat"}],
        "settings": {"aspect_ratio": "1:1", "duration": 7},
    }
    assert kind.validate(prompt_only) == prompt_only  # 3 to 10 s, as O1's page says
    edit = {
        "contents": [
            {"type": "prompt", "text": "make @video_1 snowy, as @image_1"},
            {"type": "base_video", "url": VIDEO, "id": "video_1"},
            {"type": "refer_image", "url": IMAGE, "id": "image_1"},
        ],
        "settings": {"audio": "original", "resolution": "1080p", "duration": 3},
    }
    assert kind.validate(edit)  # a reference video gives the shape: no aspect_ratio needed
    assert kind.validate({"contents": [FIRST, ELEMENT], "settings": {"duration": 8}})  # not a frame alone
    assert kind.validate({"contents": [FIRST], "settings": {"duration": 10, "audio": "off"}})
    assert kind.model_of(edit) == "kling-o1"


def test_every_rule_of_kling_o1_is_reported_at_once() -> None:
    body = {
        "contents": [
            {"type": "prompt", "text": "shot 1, 2, " + "x" * 2500 + ";"},  # one text: too long, not shots
            FIRST,
            {"type": "last_frame", "url": IMAGE},
            ELEMENT,
            {"type": "feature_video", "url": IMAGE.replace("https://", "ftp://")},
            {"type": "base_video", "url": VIDEO},
            {"type": "voice", "voice_id": "v", "id": "v1"},
        ],
        "settings": {"multi_shot": True, "audio": "native", "resolution": "4k", "duration": 11},
    }
    assert problems(TYPE, body) == Counter(
        [
            ("contents[0].text", "too_long"),
            ("contents[3]", "not_supported"),  # an element beside both frames
            ("contents[4].url", "format"),  # a video by URL only
            ("contents[5]", "too_many"),  # one reference video
            ("contents[1]", "not_supported"),  # frames with a base_video (kling-3.0-omni's rule, shared)
            ("contents[2]", "not_supported"),
            ("contents[6].type", "not_supported"),  # kling-2.6's voices
            ("settings.multi_shot", "not_supported"),
            ("settings.audio", "not_supported"),
            ("settings.resolution", "not_supported"),
            ("settings.duration", "not_supported"),
        ]
    )
    assert problems(TYPE, {"contents": [{"type": "prompt", "text": "a cat"}]}) == Counter(
        [
            ("settings.aspect_ratio", "missing")  # nothing else gives the video its shape
        ]
    )
    assert problems(TYPE, {"contents": [FIRST], "settings": {"duration": 7}}) == Counter(
        [("settings.duration", "not_supported")]
    )
    assert problems(
        TYPE, {"contents": [{"type": "last_frame", "url": IMAGE}], "settings": {"aspect_ratio": "1:1"}}
    ) == Counter(
        [
            ("contents", "requires")  # a last frame needs a first
        ]
    )
    assert problems(TYPE, {"contents": [FIRST], "settings": {"character_orientation": "video"}}) == Counter(
        [("settings.character_orientation", "not_supported")]
    )


def said(body: dict[str, object]) -> list[tuple[str, str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(TYPE).validate(body)
    return [(p.field, p.code, p.message) for p in caught.value.problems]


def test_a_setting_o1_refuses_is_refused_once_beside_a_reference_video() -> None:
    """O1's own limits come first: omni's reference-video rules do not refuse the same value again."""
    base = {"type": "base_video", "url": VIDEO}
    for video in (base, {**base, "type": "feature_video"}):
        found = said({"contents": [video], "settings": {"audio": "native", "multi_shot": True}})
        assert [field for field, _, _ in found] == ["settings.multi_shot", "settings.audio"]
    found = said({"contents": [{**base, "type": "feature_video"}], "settings": {"audio": "original"}})
    assert found == [("settings.audio", "not_supported", "can only be off with a feature_video")]


def test_a_video_url_is_refused_once_as_a_video() -> None:
    for url in ("ftp://example.com/walk.mp4", "data:video/mp4;base64,AAAA", b64(b"a video")):
        for kind in ("feature_video", "base_video"):
            found = said({"contents": [{"type": kind, "url": url}], "settings": {"aspect_ratio": "1:1"}})
            message = "must be an http or https URL: Kling takes a video by URL only"
            assert found == [("contents[0].url", "format", message)]


def test_a_mistyped_item_leaves_shape_and_duration_unjudged() -> None:
    """The item whose kind failed its type may be what gives the shape or keeps a first frame company."""
    body = {"contents": [FIRST, {"type": "refer_imag", "url": IMAGE}], "settings": {"duration": 7}}
    assert problems(TYPE, body) == Counter([("contents[1].type", "enum")])
    body = {"contents": [{"type": "prompt", "text": "a cat"}, {"type": "first_fram", "url": IMAGE}]}
    assert problems(TYPE, body) == Counter([("contents[1].type", "enum")])


def test_an_attackers_body_is_refused_whole_and_nothing_reaches_kling(service: Service, simulator) -> None:
    body = {
        "contents": [{"type": "refer_image", "url": "A" * 10_001}] * 9 + [{"type": "prompt", "text": 42}],
        "settings": {"duration": "10", "aspect_ratio": "21:9"},
        "options": {"callback_url": "http://127.0.0.1:6379/", "watermark_info": {"enabled": "yes"}},
    }
    response = service.http.post(PATH, json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert fields == {
        *((f"contents[{n}].url", "format") for n in range(9)),  # neither a URL nor whole Base64
        ("contents", "too_many"),  # 9 reference images, 7 at most
        ("contents[9].text", "type"),
        ("settings.duration", "type"),
        ("settings.aspect_ratio", "enum"),
        ("options.callback_url", "blocked_address"),
        ("options.watermark_info.enabled", "type"),
    }
    assert simulator.state.tasks() == []


def test_a_kling_o1_task_round_trips_to_an_archived_mp4(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    body = {
        "contents": [{"type": "prompt", "text": "the cat @cat walks in"}, FIRST, ELEMENT],
        "settings": {"duration": 7, "resolution": "720p", "audio": "off"},
        "options": {"external_task_id": "o1-1"},
    }
    view = round_trip(service, simulator, env, PATH, body)
    assert view["type"] == TYPE and view["model_name"] == "kling-o1"
