"""Multi-image to video (`/v1/videos/multi-image2video`) and image expansion (`/v1/images/editing/expand`,
one path level deeper than the other types) end to end: their validation (every problem at once, with
paths and hints; expansion's area rule), a task through the simulator to an archived video or images
with its Base64 inputs in the archive's inputs/, lookups by either id at its own path only, and the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from kling_simulator.images import tiny_png
from tests import test_task_types
from tests.conftest import Service
from tests.test_image_types import found_at_its_own_path_only, message, problems, round_trip
from tests.test_inputs import b64, sent_upstream, stored_request
from tests.test_task_types import archived, run
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.task_types import task_type

running = test_task_types.running  # the service and real workers, archiving at once

MI2V = "/v1/videos/multi-image2video"
EXPAND = "/v1/images/editing/expand"
DOG = tiny_png(9, 7, (240, 240, 235))
GARMENT = "https://example.com/jacket.png"
ELEMENTS = [{"image": f"https://example.com/element-{n}.jpg"} for n in range(4)]
MI2V_BODY = {"image_list": ELEMENTS[:2], "prompt": "the dog puts on the jacket"}
# Kling's own example: (1 + 0.299) x (1 + 1.3094) = 2.9999, just inside three times the area.
KLING_RATIOS = {
    "up_expansion_ratio": 0.1495,
    "down_expansion_ratio": 0.1495,
    "left_expansion_ratio": 0.6547,
    "right_expansion_ratio": 0.6547,
}
WAIT = ("--wait", "--timeout", "60")
EXPAND_BODY = {"image": "https://example.com/dog.png", **KLING_RATIOS}


def ratios(up: object, down: object, left: object, right: object) -> dict[str, object]:
    return dict(zip(KLING_RATIOS, (up, down, left, right), strict=True))


def test_each_lives_at_kling_path_and_expand_one_level_deeper() -> None:
    video, expand = task_type("multi-image2video"), task_type("expand")
    assert video.path == MI2V and video.output == "video"
    assert expand.path == EXPAND and expand.output == "image"
    assert expand.item_path("a/b") == f"{EXPAND}/a%2Fb"


def test_a_full_multi_image2video_body_passes_unchanged() -> None:
    body = {
        "model_name": "kling-v1-6",
        "image_list": [{"image": b64(DOG)}, *ELEMENTS[:3]],
        "prompt": "x" * 2500,
        "negative_prompt": "",
        "mode": "pro",
        "duration": "10",
        "aspect_ratio": "9:16",
        "watermark_info": {"enabled": True},
        "callback_url": "https://example.com/hook",
        "external_task_id": "mi2v-1",
    }
    assert task_type("multi-image2video").validate(body) == body
    assert task_type("multi-image2video").validate(MI2V_BODY) == MI2V_BODY  # kling-v1-6, std, 5 s, 16:9


def test_every_multi_image2video_problem_is_reported_with_its_path_and_a_hint() -> None:
    body = {
        "image_list": [
            "https://example.com/a.jpg",  # a bare string: Kling takes {"image": ...}
            {"imgae": "https://example.com/b.jpg"},
            {"image": "data:image/png;base64,iVBORw0KGgo="},
            {"image": "https://example.com/d.jpg", "subject": True},
        ],
        "prompt": "",
        "model_name": "kling-v2-master",  # image2video's, not this type's
        "mode": "fast",
        "duration": 5,
        "aspect_ratio": "4:3",
        "cfg_scale": 0.5,  # in some gateways' copies of image2video's fields, not in Kling's reference
        "image_tail": "https://example.com/t.jpg",
        "callback_url": "ftp://example.com/hook",
    }
    assert problems("multi-image2video", body) == {
        ("image_list[0]", "type"),
        ("image_list[1].image", "missing"),
        ("image_list[1].imgae", "unknown_field"),
        ("image_list[2].image", "format"),
        ("image_list[3].subject", "unknown_field"),
        ("prompt", "too_short"),
        ("model_name", "enum"),
        ("mode", "enum"),
        ("duration", "type"),
        ("aspect_ratio", "enum"),
        ("cfg_scale", "unknown_field"),
        ("image_tail", "unknown_field"),
        ("callback_url", "format"),
    }
    assert message("multi-image2video", body, "image_list[0]") == (
        'must be an object with "image" (a URL or Base64), not a string'
    )
    assert message("multi-image2video", body, "image_list[1].imgae") == "unknown field; did you mean 'image'?"
    assert message("multi-image2video", body, "model_name") == "must be one of: kling-v1-6"
    assert message("multi-image2video", body, "duration") == 'must be the string "5" or "10", not a number'


def test_multi_image2video_needs_one_to_four_images_and_a_prompt() -> None:
    assert problems("multi-image2video", {}) == {("image_list", "missing"), ("prompt", "missing")}
    empty = {**MI2V_BODY, "image_list": []}
    assert problems("multi-image2video", empty) == {("image_list", "too_few")}
    five = {**MI2V_BODY, "image_list": ELEMENTS + ELEMENTS[:1]}
    assert problems("multi-image2video", five) == {("image_list", "too_many")}
    assert problems("multi-image2video", {**MI2V_BODY, "prompt": "x" * 2501}) == {("prompt", "too_long")}
    too_big = {**MI2V_BODY, "image_list": [{"image": b64(bytes(10 * 1024 * 1024 + 1))}]}
    assert problems("multi-image2video", too_big) == {("image_list[0].image", "too_large")}
    with_cfg = {**MI2V_BODY, "cfg_scale": 0.5}
    extra = frozenset({"cfg_scale"})
    assert task_type("multi-image2video").validate(with_cfg, extra_fields=extra) == with_cfg


def test_a_full_expand_body_passes_unchanged() -> None:
    body = {
        **EXPAND_BODY,
        "image": b64(DOG),
        "prompt": "",  # Kling's example sends an empty prompt
        "n": 9,
        "watermark_info": {"enabled": False},
        "callback_url": "https://example.com/hook",
        "external_task_id": "exp-1",
    }
    assert task_type("expand").validate(body) == body
    for edge in (ratios(2, 0, 0, 0), ratios(0.5, 0.5, 0.25, 0.25), ratios(0, 0, 1, 1), ratios(0, 0, 0, 0)):
        assert task_type("expand").validate({**EXPAND_BODY, **edge}) == {**EXPAND_BODY, **edge}  # at most 3


def test_every_expand_problem_is_reported_with_its_path() -> None:
    body = {
        "image": "data:image/png;base64,iVBORw0KGgo=",
        "up_expansion_ratio": -0.1,
        "down_expansion_ratio": "0.2",
        "left_expansion_ratio": None,
        "bottom_expansion_ratio": 0.1,  # one gateway's name for down
        "prompt": "x" * 2501,
        "n": 0,
        "model_name": "kling-v1",  # expansion takes no model
        "negative_prompt": "blur",
        "external_task_id": "with space",
    }
    assert problems("expand", body) == {
        ("image", "format"),
        ("up_expansion_ratio", "range"),
        ("down_expansion_ratio", "type"),
        ("left_expansion_ratio", "type"),
        ("right_expansion_ratio", "missing"),
        ("bottom_expansion_ratio", "unknown_field"),
        ("prompt", "too_long"),
        ("n", "range"),
        ("model_name", "unknown_field"),
        ("negative_prompt", "unknown_field"),
        ("external_task_id", "format"),
    }  # no area problem while a ratio is itself wrong
    assert "'down_expansion_ratio'" in message("expand", body, "bottom_expansion_ratio")
    assert message("expand", body, "up_expansion_ratio") == "must be between 0 and 2"
    assert problems("expand", {}) == {("image", "missing")} | {(name, "missing") for name in KLING_RATIOS}
    for bad in (2.01, True, float("inf"), float("nan")):
        assert problems("expand", {**EXPAND_BODY, "up_expansion_ratio": bad}) == {
            ("up_expansion_ratio", "type" if bad is True else "range")
        }


@pytest.mark.parametrize(
    ("sides", "times"),
    [((1, 1, 0.5, 0), "4.5"), ((2, 0, 0.01, 0), "3.03"), ((0.5, 0.5, 0.3, 0.3), "3.2"), ((2, 2, 2, 2), "25")],
)
def test_an_expansion_past_three_times_the_area_is_refused(sides: tuple[float, ...], times: str) -> None:
    body = {**EXPAND_BODY, **ratios(*sides)}
    assert problems("expand", body) == {("", "area")}
    assert message("expand", body, "") == (
        f"the expanded image would be {times} times the original's area, (1 + up + down) x "
        "(1 + left + right); Kling allows at most 3"
    )


def test_invalid_requests_are_refused_over_http_with_every_problem(service: Service, simulator) -> None:
    response = service.http.post(f"/kling{MI2V}", json={"image_list": [{"url": "https://example.com/a.jpg"}]})
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
    assert set(errors) == {
        ("image_list[0].image", "missing"),
        ("image_list[0].url", "unknown_field"),
        ("prompt", "missing"),
    }
    assert errors[("image_list[0].url", "unknown_field")] == "unknown field; allowed: image"
    response = service.http.post(EXPAND, json={**EXPAND_BODY, **ratios(1, 1, 1, 1)})
    assert response.status_code == 400 and response.json()["code"] == 1201
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [("", "area")]
    assert "9 times the original's area" in response.json()["message"]
    assert simulator.state.tasks() == []


def test_a_multi_image2video_task_round_trips_with_its_elements_in_inputs(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    body = {**MI2V_BODY, "image_list": [ELEMENTS[0], {"image": b64(DOG)}], "external_task_id": "mi2v-e2e"}
    response = service.http.post(f"/kling{MI2V}", json=body)
    assert response.status_code == 200, response.text

    view = archived(service, "mi2v-e2e")
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["type"] == "multi-image2video" and view["model_name"] == "kling-v1-6"
    video = Path(env["ARCHIVE_URL"]) / view["archived_videos"][0]["key"]
    assert video.suffix == ".mp4" and video.read_bytes()[4:8] == b"ftyp"  # a real MP4
    sent = sent_upstream(simulator, "mi2v-e2e")
    assert {field: sent[field] for field in body} == body  # Base64 too, exactly as sent
    request, _ = stored_request(service, "mi2v-e2e")
    assert request["image_list"][0] == ELEMENTS[0]  # a URL stays as it is
    ref = request["image_list"][1]["image"]
    folder = task_folder(service.services.store.get("mi2v-e2e"))
    assert ref["archived_input"].startswith(f"{folder}/inputs/image_list_1_image-")
    assert ref["sha256"] == hashlib.sha256(DOG).hexdigest()
    assert (Path(env["ARCHIVE_URL"]) / ref["archived_input"]).read_bytes() == DOG
    metadata = json.loads((video.parent / "metadata.json").read_text())
    assert metadata["type"] == "multi-image2video"
    assert [i["field"] for i in metadata["inputs"]] == ["image_list[1].image"]

    page = service.http.get("/tasks/mi2v-e2e").text  # the dashboard shows each element, no Base64
    assert "<dt>image_list[1].image</dt>" in page and ELEMENTS[0]["image"] in page
    assert b64(DOG) not in page

    (task,) = simulator.state.tasks()
    assert task["type"] == "multi-image2video"
    found_at_its_own_path_only(service, MI2V, "mi2v-e2e", task["task_id"])


def test_an_expand_task_round_trips_to_n_archived_images_with_its_image_in_inputs(
    running, simulator, env
) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    body: dict[str, Any] = {**EXPAND_BODY, "image": b64(DOG), "n": 2, "external_task_id": "exp-e2e"}

    view = round_trip(service, EXPAND, body, env)
    assert view["type"] == "expand" and len(view["archived_images"]) == 2
    assert view["model_name"] == "expand"  # no model: usage counts expansions under the type's name
    sent = sent_upstream(simulator, "exp-e2e")
    assert {field: sent[field] for field in body} == body  # the Base64 image too, exactly as sent
    request, _ = stored_request(service, "exp-e2e")
    folder = task_folder(service.services.store.get("exp-e2e"))
    assert request["image"]["archived_input"].startswith(f"{folder}/inputs/image-")
    assert (Path(env["ARCHIVE_URL"]) / request["image"]["archived_input"]).read_bytes() == DOG
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / folder / "metadata.json").read_text())
    assert metadata["type"] == "expand" and [i["field"] for i in metadata["inputs"]] == ["image"]

    (task,) = simulator.state.tasks()
    assert task["type"] == "expand"
    found_at_its_own_path_only(service, EXPAND, "exp-e2e", task["task_id"])
    listed = run(service.app, "tasks", "list", "--type", "expand")
    assert "exp-e2e" in listed.stdout


def test_cli_submits_both_from_files_and_waits_for_their_results(running, simulator, tmp_path: Path) -> None:
    service, workers = running
    workers.start()
    dog = tmp_path / "dog.png"
    dog.write_bytes(DOG)
    video = ("submit", "--type", "multi-image2video", "--image-list", str(dog), "--image-list", GARMENT)
    result = run(service.app, *video, "--prompt", "a dog", "--external-task-id", "cli-mi2v", *WAIT)
    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if line.startswith("video ")]
    upstream = sent_upstream(simulator, "cli-mi2v")
    assert upstream["image_list"] == [{"image": b64(DOG)}, {"image": GARMENT}]

    expand = ("submit", "--type", "expand", "--image", str(dog), "--expand", "0.2", "0.2", "0.5", "0.5")
    result = run(service.app, *expand, "--n", "2", "--external-task-id", "cli-exp", *WAIT)
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("image ")]) == 2
    sent = sent_upstream(simulator, "cli-exp")
    assert {field: sent.get(field) for field in (*KLING_RATIOS, "image", "n")} == {
        **ratios(0.2, 0.2, 0.5, 0.5),
        "image": b64(DOG),
        "n": 2,
    }

    too_far = ("--expand", "1", "1", "1", "0")
    refused = run(service.app, "submit", "--type", "expand", "--image", GARMENT, *too_far)
    assert refused.exit_code == 2 and "6 times the original's area" in refused.stderr
    refused = run(service.app, "submit", "--type", "multi-image2video", "--prompt", "a dog")
    assert refused.exit_code == 2 and "image_list: is required [missing]" in refused.stderr
