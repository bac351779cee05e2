"""Video effects (`/v1/videos/effects`, type effects): a preset scene applied to one photo or two. Its
validation per scene group (every problem at once, at paths inside `input`, unknown scenes with the known
ones and a hint), how KLING_EXTRA_FIELDS lets a newer scene or input key through, a task through the
simulator to an archived MP4 with its Base64 photos in the archive's inputs/ and on the dashboard,
lookups by either id at its own path only, and `flask submit --type effects`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kling_simulator.images import tiny_png
from tests import test_task_types
from tests.conftest import Service
from tests.test_image_generation import run
from tests.test_image_types import found_at_its_own_path_only, message, problems
from tests.test_inputs import b64, sent_upstream, stored_request
from tests.test_task_types import archived
from webhook_service.domain import effect_scenes
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.effects_rules import SCENES
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

EFFECTS = "/v1/videos/effects"
LEFT = tiny_png(9, 12, (210, 170, 150))
RIGHT = tiny_png(12, 9, (90, 60, 40))
URL = "https://example.com/face.jpg"
HUG = {"effect_scene": "hug", "input": {"images": [URL, URL], "duration": "5"}}


def valid(body: dict[str, Any], **options: Any) -> bool:
    return task_type("effects").validate(body, **options) == body


def test_effects_live_at_kling_effects_path_and_make_a_video() -> None:
    kind = task_type("effects")
    assert kind.path == EFFECTS and kind.output == "video"
    assert kind.model_of(HUG) == "effects"  # no model named: usage counts it as effects
    assert kind.model_of({**HUG, "input": {**HUG["input"], "model_name": "kling-v1-6"}}) == "kling-v1-6"


def test_each_scene_group_passes_with_what_kling_documents_for_it() -> None:
    assert valid({"effect_scene": "net_the_fish", "input": {"image": b64(LEFT)}})  # the current reference
    assert valid({"effect_scene": "balloon_parade", "input": {"image": URL, "duration": "10"}})  # retired
    first = {"image": URL, "duration": "5", "model_name": "kling-v1-6"}
    assert valid({"effect_scene": "bloombloom", "input": first})
    assert valid({"effect_scene": "squish", "input": {"image": URL}})  # Kling's examples send the image only
    assert valid({"effect_scene": "hug_pro", "input": {"images": [b64(LEFT), URL]}})
    everything = {"images": [URL, b64(RIGHT)], "duration": "10", "model_name": "kling-v1-5", "mode": "pro"}
    assert valid(
        {
            "effect_scene": "heart_gesture",
            "input": everything,
            "callback_url": "https://example.com/hook",
            "external_task_id": "fx-1",
        }
    )
    assert len(SCENES) == len(set(SCENES)) > 300 and {"hug", "bloombloom", "net_the_fish"} <= set(SCENES)
    assert not set(effect_scenes.TWO_IMAGE_SCENES) & set(effect_scenes.SINGLE_IMAGE_SCENES)


def test_every_effects_problem_is_reported_at_its_path_inside_input() -> None:
    body = {
        "effect_scene": "hug",
        "input": {
            "images": [URL, "data:image/png;base64,iVBORw0KGgo="],
            "image": URL,  # a single-image scene's field
            "mode": "fast",
            "model_name": "kling-v2-master",
            "duratoin": "5",
        },
        "watermark_info": {"enabled": True},  # not in Kling's effects reference
        "external_task_id": "with space",
    }
    assert problems("effects", body) == {
        ("input.duration", "missing"),
        ("input.images[1]", "format"),
        ("input.image", "unknown_field"),
        ("input.mode", "enum"),
        ("input.model_name", "enum"),
        ("input.duratoin", "unknown_field"),
        ("watermark_info", "unknown_field"),
        ("external_task_id", "format"),
    }
    assert message("effects", body, "input.duratoin") == "unknown field; did you mean 'duration'?"
    assert message("effects", body, "input.image") == (
        "not taken by hug, one of the first two-person effects; it takes images, duration, model_name, mode"
    )
    assert message("effects", body, "input.duration") == "is required for hug"
    assert problems("effects", {}) == {("effect_scene", "missing"), ("input", "missing")}
    assert problems("effects", {"effect_scene": 7, "input": []}) == {
        ("effect_scene", "type"),
        ("input", "type"),
    }


def test_each_group_has_its_own_limits() -> None:
    one = {"effect_scene": "hug_pro", "input": {"images": [URL]}}
    assert problems("effects", one) == {("input.images", "too_few")}
    three = {"effect_scene": "kiss", "input": {"images": [URL] * 3, "duration": 5}}
    assert problems("effects", three) == {("input.images", "too_many"), ("input.duration", "type")}
    first = {
        "effect_scene": "dizzydizzy",
        "input": {"images": [URL, URL], "duration": "10", "model_name": "kling-v1"},
    }
    assert problems("effects", first) == {
        ("input.image", "missing"),
        ("input.images", "unknown_field"),
        ("input.duration", "enum"),  # the first five make 5 s only
        ("input.model_name", "enum"),  # and with kling-v1-6 only
    }
    newer = {
        "effect_scene": "pet_lion_pro",
        "input": {"image": URL, "model_name": "kling-v1-6", "mode": "pro"},
    }
    assert problems("effects", newer) == {
        ("input.model_name", "unknown_field"),
        ("input.mode", "unknown_field"),
    }
    assert message("effects", newer, "input.mode").startswith(
        "not taken by pet_lion_pro, a single-image effect"
    )
    too_big = b64(bytes(10 * 1024 * 1024 + 1))
    assert problems("effects", {"effect_scene": "fly_fly", "input": {"image": too_big}}) == {
        ("input.image", "too_large")
    }


def test_an_unknown_scene_gets_a_hint_and_the_known_scenes() -> None:
    body = {"effect_scene": "bloomblom", "input": {"image": URL}}
    assert problems("effects", body) == {("effect_scene", "enum")}
    text = message("effects", body, "effect_scene")
    assert text.startswith("unknown effect scene; did you mean 'bloombloom'?")
    assert "effect_scene:<name>" in text and all(scene in text for scene in SCENES)
    # Its input is still checked for what it holds, by the fields either group knows.
    bad = {"effect_scene": "no_such_scene", "input": {"images": [URL], "colour": "red"}}
    assert problems("effects", bad) == {
        ("effect_scene", "enum"),
        ("input.images", "too_few"),
        ("input.colour", "unknown_field"),
    }


def test_extra_fields_let_a_newer_scene_and_input_key_through() -> None:
    new_single = {"effect_scene": "moon_walk", "input": {"image": URL, "duration": "5", "style": "retro"}}
    named = frozenset({"effect_scene:moon_walk", "input.style"})
    assert valid(new_single, extra_fields=named)
    assert problems("effects", new_single, extra_fields=frozenset({"effect_scene:moon_walk"})) == {
        ("input.style", "unknown_field")
    }
    assert valid(new_single, extra_fields=frozenset({"*"}))
    new_pair = {"effect_scene": "moon_dance", "input": {"images": [URL, URL], "mode": "pro"}}
    assert valid(new_pair, extra_fields=frozenset({"*"}))
    # A new scene's input is still checked by type, and a misspelling is refused even with "*".
    broken = {"effect_scene": "moon_dance", "input": {"images": [URL], "durration": "5"}}
    assert problems("effects", broken, extra_fields=frozenset({"*"})) == {
        ("input.images", "too_few"),
        ("input.durration", "unknown_field"),
    }
    misspelt = {"effect_scene": "bloomblom", "input": {"image": URL}}
    assert problems("effects", misspelt, extra_fields=frozenset({"*"})) == {("effect_scene", "enum")}
    # A known scene's keys follow its group even with "*": another group's field is no new field.
    assert problems(
        "effects", {**HUG, "input": {**HUG["input"], "image": URL}}, extra_fields=frozenset({"*"})
    ) == {("input.image", "unknown_field")}


def test_an_invalid_effects_request_is_refused_over_http_with_every_problem(
    service: Service, simulator
) -> None:
    body = {"effect_scene": "kiss", "input": {"images": [URL, 3]}}
    response = service.http.post(f"/kling{EFFECTS}", json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]) for e in response.json()["errors"]}
    assert errors == {("input.images[1]", "type"), ("input.duration", "missing")}
    assert simulator.state.tasks() == []


def test_a_two_person_effect_round_trips_to_an_archived_mp4_with_its_photos_in_inputs(
    running, simulator, env
) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(
        {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.2}]}
    )
    body = {
        "effect_scene": "hug",
        "input": {"images": [b64(LEFT), URL], "duration": "10", "model_name": "kling-v1-6", "mode": "std"},
        "external_task_id": "fx-e2e",
    }
    response = service.http.post(f"/kling{EFFECTS}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["task_info"] == {"external_task_id": "fx-e2e"}

    view = archived(service, "fx-e2e")
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["type"] == "effects" and view["model_name"] == "kling-v1-6"
    (video,) = view["archived_videos"]
    mp4 = (Path(env["ARCHIVE_URL"]) / video["key"]).read_bytes()
    assert video["key"].endswith(".mp4") and mp4[4:8] == b"ftyp"  # a real MP4
    assert video["sha256"] == hashlib.sha256(mp4).hexdigest()
    sent = sent_upstream(simulator, "fx-e2e")
    assert {field: sent[field] for field in body} == body  # the Base64 photo too, exactly as sent

    request, _ = stored_request(service, "fx-e2e")
    assert request["input"]["images"][1] == URL  # a URL stays as it is
    ref = request["input"]["images"][0]
    folder = task_folder(service.services.store.get("fx-e2e"))
    assert ref["archived_input"].startswith(f"{folder}/inputs/input_images_0-")
    assert ref["archived_input"].endswith(".png") and ref["sha256"] == hashlib.sha256(LEFT).hexdigest()
    assert (Path(env["ARCHIVE_URL"]) / ref["archived_input"]).read_bytes() == LEFT
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / folder / "metadata.json").read_text())
    assert metadata["type"] == "effects"
    assert [(i["field"], i["sha256"]) for i in metadata["inputs"]] == [("input.images[0]", ref["sha256"])]

    page = service.http.get("/tasks/fx-e2e").text  # the dashboard shows both photos and the rest, no Base64
    assert "<dt>input.images[0]</dt>" in page and "<dt>input.images[1]</dt>" in page and URL in page
    assert '<img src="/tasks/fx-e2e/inputs/0/thumbnail"' in page and "<dt>input.mode</dt>" in page
    assert b64(LEFT) not in page
    assert service.http.get("/tasks/fx-e2e/inputs/0").content == LEFT

    (task,) = simulator.state.tasks()
    assert task["type"] == "effects"
    view = found_at_its_own_path_only(service, EFFECTS, "fx-e2e", task["task_id"])
    assert [video["duration"] for video in view["task_result"]["videos"]] == ["10"]


@pytest.mark.parametrize("scene", ["bloombloom", "net_the_fish"])
def test_cli_submits_a_single_image_effect_from_a_file(
    running, simulator, tmp_path: Path, scene: str
) -> None:
    service, workers = running
    workers.start()
    photo = tmp_path / "me.png"
    photo.write_bytes(LEFT)
    args = ("submit", "--type", "effects", "--effect-scene", scene, "--image", str(photo), "--duration", "5")
    result = run(service.app, *args, "--external-task-id", f"cli-{scene}", "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("video ")]) == 1
    sent = sent_upstream(simulator, f"cli-{scene}")
    assert sent["effect_scene"] == scene and sent["input"] == {"image": b64(LEFT), "duration": "5"}


def test_cli_puts_two_people_and_extra_input_in_input(service: Service, simulator, tmp_path: Path) -> None:
    photo = tmp_path / "left.png"
    photo.write_bytes(LEFT)
    extra = json.dumps({"input": {"mode": "pro"}})
    args = ("submit", "--type", "effects", "--effect-scene", "kiss", "--images", str(photo), "--images", URL)
    result = run(service.app, *args, "--duration", "5", "--extra", extra, "--external-task-id", "cli-kiss")
    assert result.exit_code == 0, result.output
    assert sent_upstream(simulator, "cli-kiss")["input"] == {
        "images": [b64(LEFT), URL],
        "duration": "5",
        "mode": "pro",
    }
    one = run(service.app, "submit", "--type", "effects", "--effect-scene", "kiss", "--images", URL)
    assert one.exit_code == 2 and "input.images: must have at least 2 items [too_few]" in one.stderr
    assert "input.duration: is required for kiss [missing]" in one.stderr
    wrong_type = run(service.app, "submit", "--images", URL, "--image", URL)
    assert wrong_type.exit_code == 2 and "--images is for --type effects" in wrong_type.output
    assert len(simulator.state.tasks()) == 1
