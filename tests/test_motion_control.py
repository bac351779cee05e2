"""Kling's unified motion control (`POST /motion-control/kling-3.0` and `/motion-control/kling-2.6`, types
kling-3.0-motion-control and kling-2.6-motion-control): a character image, a motion video by URL, an
optional prompt, kling-3.0 an element; `settings.character_orientation` required (even when `settings`
is absent), audio original or off, 720p or 1080p, no duration; every problem at once, over HTTP too;
every other unified path refusing what is motion control's; and each path through the simulator to an
archived MP4, a Base64 character kept in the archive."""

from __future__ import annotations

from collections import Counter

import pytest

from tests import test_task_types
from tests.conftest import Service
from tests.test_inputs import b64, noise_png, sent_upstream, stored_request
from tests.test_kling26_image_to_video import problems
from tests.test_task_types import run
from tests.test_unified_api import round_trip
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import TASK_TYPES, task_type

running = test_task_types.running  # the service and real workers, archiving at once

TYPES = {
    "kling-3.0-motion-control": "/motion-control/kling-3.0",
    "kling-2.6-motion-control": "/motion-control/kling-2.6",
}
CHARACTER = {"type": "image", "url": "https://example.com/character.png"}
MOTION = {"type": "video", "url": "https://example.com/dance.mp4"}
ELEMENT = {"type": "element", "element_id": "163", "id": "dancer"}
FACING = {"character_orientation": "video"}


@pytest.mark.parametrize(("type_name", "path"), TYPES.items())
def test_motion_control_takes_a_character_a_motion_and_an_orientation(type_name: str, path: str) -> None:
    kind = task_type(type_name)
    assert kind.unified and kind.path == path and kind.output == "video" and kind.pack == "video"
    body = {
        "contents": [{"type": "prompt", "text": "on a rooftop at night"}, CHARACTER, MOTION],
        "settings": {"character_orientation": "image", "audio": "original", "resolution": "1080p"},
        "options": {"external_task_id": "mc-1"},
    }
    assert kind.validate(body) == {
        "contents": body["contents"],
        "settings": body["settings"],
        "external_task_id": "mc-1",
    }
    assert kind.validate({"contents": [MOTION, CHARACTER], "settings": {**FACING, "audio": "off"}})
    assert kind.model_of(body) == path.rsplit("/", 1)[1]


@pytest.mark.parametrize("type_name", TYPES)
def test_motion_control_takes_at_most_one_image(type_name: str) -> None:
    second = {**CHARACTER, "url": "https://example.com/other.png"}
    body = {"contents": [CHARACTER, MOTION, second], "settings": FACING}
    assert problems(type_name, body) == Counter([("contents[2]", "too_many")])


def test_kling_3_0_takes_one_element_and_kling_2_6_none() -> None:
    body = {"contents": [CHARACTER, MOTION, ELEMENT], "settings": FACING}
    assert task_type("kling-3.0-motion-control").validate(body)
    assert problems("kling-2.6-motion-control", body) == Counter([("contents[2].type", "not_supported")])
    second = {**ELEMENT, "id": "other"}
    assert problems("kling-3.0-motion-control", {**body, "contents": [*body["contents"], second]}) == Counter(
        [("contents[3]", "too_many")]
    )


@pytest.mark.parametrize("type_name", TYPES)
def test_every_rule_of_motion_control_is_reported_at_once(type_name: str) -> None:
    body = {
        "contents": [
            {"type": "prompt", "text": "x" * 2501},
            {"type": "prompt", "text": "y"},
            {**MOTION, "url": b64(b"not a video: Kling takes videos by URL")},
            MOTION,
            {"type": "first_frame", "url": CHARACTER["url"]},
            {**CHARACTER, "id": "c1"},
        ],
        "settings": {
            "duration": 10,
            "multi_shot": False,
            "aspect_ratio": "9:16",
            "audio": "native",
            "resolution": "4k",
        },
    }
    assert problems(type_name, body) == Counter(
        [
            ("contents[0].text", "too_long"),
            ("contents[1]", "too_many"),
            ("contents[2].url", "format"),
            ("contents[3]", "too_many"),  # one motion video
            ("contents[4].type", "not_supported"),  # image to video's
            ("contents[5].id", "requires"),  # no id on a character
            ("settings.character_orientation", "missing"),
            ("settings.duration", "not_supported"),  # the motion video's own
            ("settings.multi_shot", "not_supported"),
            ("settings.aspect_ratio", "not_supported"),
            ("settings.audio", "not_supported"),
            ("settings.resolution", "not_supported"),
        ]
    )
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(
            {"contents": [CHARACTER, MOTION], "settings": {**FACING, "resolution": "4k"}}
        )
    message = "motion control makes 720p or 1080p videos (4k is kling-3.0's)"  # every 720p/1080p model's
    assert [(p.field, p.message) for p in caught.value.problems] == [("settings.resolution", message)]
    # Kling's page makes settings optional but holds a required key in it: the problem is that key.
    assert problems(type_name, {"contents": [CHARACTER, MOTION]}) == Counter(
        [("settings.character_orientation", "missing")]
    )
    with pytest.raises(RequestInvalid) as caught:  # neither a character nor a motion: both said
        task_type(type_name).validate(
            {"contents": [{"type": "prompt", "text": "a dance"}], "settings": FACING}
        )
    assert [(p.field, p.code, p.message) for p in caught.value.problems] == [
        ("contents", "missing", "needs one item of type image (the character)"),
        ("contents", "missing", "needs one item of type video (the motion)"),
    ]
    assert problems(type_name, {"settings": {"character_orientation": "left"}}) == Counter(
        [
            ("contents", "missing"),
            ("settings.character_orientation", "enum"),
        ]
    )


@pytest.mark.parametrize("type_name", TYPES)
def test_a_motion_video_by_anything_but_a_url_is_refused_once(type_name: str) -> None:
    for url in ("ftp://example.com/dance.mp4", "http://10.0.0.1:99999/x.mp4", "data:video/mp4;base64,AAAA"):
        with pytest.raises(RequestInvalid) as caught:
            task_type(type_name).validate(
                {"contents": [CHARACTER, {**MOTION, "url": url}], "settings": FACING}
            )
        message = "must be an http or https URL: Kling takes a video by URL only"
        assert [(p.field, p.code, p.message) for p in caught.value.problems] == [
            ("contents[1].url", "format", message)
        ]


def test_a_key_no_item_of_the_path_takes_says_so() -> None:
    for type_name, owners in (
        ("kling-2.6-motion-control", "is not taken by any item of motion control (kling-2.6)"),
        ("kling-3.0-motion-control", "only with type element"),
    ):
        body = {"contents": [{**CHARACTER, "id": "c1"}, MOTION], "settings": FACING}
        with pytest.raises(RequestInvalid) as caught:
            task_type(type_name).validate(body)
        assert [(p.field, p.code, p.message) for p in caught.value.problems] == [
            ("contents[0].id", "requires", owners)
        ]


OTHER_UNIFIED = sorted(name for name, kind in TASK_TYPES.items() if kind.unified and name not in TYPES)


@pytest.mark.parametrize("type_name", OTHER_UNIFIED)
def test_every_other_unified_path_refuses_what_is_motion_controls(type_name: str) -> None:
    """The unified settings and items are one shape: a path that does not take a key or a kind says so."""
    kind = task_type(type_name)
    body: dict[str, object] = {"settings": FACING}
    if "contents" in kind.rules.field_types:
        body["contents"] = [{"type": "prompt", "text": "a dance"}, CHARACTER, MOTION]
    found = problems(type_name, body)
    assert found[("settings.character_orientation", "not_supported")] == 1
    if "contents" in kind.rules.field_types:
        assert (
            found[("contents[1].type", "not_supported")] == found[("contents[2].type", "not_supported")] == 1
        )


def test_an_attackers_body_is_refused_whole_and_nothing_reaches_kling(service: Service, simulator) -> None:
    body = {
        "contents": [
            {"type": "image", "url": "http://[::1"},
            {"type": "video", "url": "http://10.0.0.1:99999/x.mp4"},
            {"type": "element", "element_id": 163, "id": "d" * 257},
            {"type": "prompt", "text": None},
        ],
        "settings": [FACING],
        "options": {"callback_url": "http://localhost:8000/hook", "external_task_id": "x" * 65},
    }
    response = service.http.post(TYPES["kling-3.0-motion-control"], json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    fields = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert fields == {
        ("contents[0].url", "format"),
        ("contents[1].url", "format"),  # a port out of range: no URL
        ("contents[2].element_id", "type"),
        ("contents[2].id", "too_long"),
        ("contents[3].text", "type"),
        ("settings", "type"),  # its type's problem only: character_orientation is not reported missing
        ("options.callback_url", "blocked_address"),
        ("options.external_task_id", "too_long"),
    }
    assert simulator.state.tasks() == []


@pytest.mark.parametrize(("type_name", "path"), TYPES.items())
def test_a_motion_control_task_round_trips_to_an_archived_mp4(
    running, simulator, env, type_name, path
) -> None:
    service, workers = running
    workers.start()
    character = noise_png(300)
    external_id = f"mc-{type_name}"
    body = {
        "contents": [{"type": "image", "url": b64(character)}, MOTION],
        "settings": {"character_orientation": "image", "audio": "off"},
        "options": {"external_task_id": external_id},
    }
    view = round_trip(service, simulator, env, path, body)
    assert view["type"] == type_name and view["model_name"] == path.rsplit("/", 1)[1]
    stored, _ = stored_request(service, external_id)  # the Base64 character lives in the archive
    assert stored["contents"][0]["url"]["size"] == len(character)


def test_cli_submits_motion_control_in_kling_s_shape(service: Service, simulator) -> None:
    """--image is the character, --video the motion; the character faces as in the image unless told."""
    for n, (type_name, facing) in enumerate(
        zip(TYPES, ((), ("--character-orientation", "video")), strict=True)
    ):
        args = ("submit", "--type", type_name, "--prompt", "a dance", "--image", CHARACTER["url"])
        result = run(
            service.app, *args, "--video", MOTION["url"], *facing, "--external-task-id", f"cli-mc{n}"
        )
        assert result.exit_code == 0, result.output
        sent = sent_upstream(simulator, f"cli-mc{n}")
        assert sent["contents"] == [{"type": "prompt", "text": "a dance"}, CHARACTER, MOTION]
        assert sent["settings"] == {"character_orientation": facing[1] if facing else "image"}
