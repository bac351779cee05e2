"""The image task types beside generations, end to end: virtual try-on (`/v1/images/kolors-virtual-try-on`)
and multi-image to image (`/v1/images/multi-image2image`). For each: its validation (every problem at
once, with paths and hints), a task through the simulator to archived images with their sha256 and
its Base64 inputs in the archive's inputs/, lookups by either id at its own path only, and the CLI."""

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
from tests.test_inputs import b64, sent_upstream, stored_request
from tests.test_task_types import archived
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import TASK_TYPES, Output, task_type

running = test_task_types.running  # the service and real workers, archiving at once

TRY_ON = "/v1/images/kolors-virtual-try-on"
GENERATIONS = "/v1/images/generations"
PERSON = tiny_png(8, 12, (200, 160, 140))
GARMENT_URL = "https://example.com/jacket.png"
TRY_ON_BODY = {"human_image": "https://example.com/person.jpg", "cloth_image": GARMENT_URL}
MULTI = "/v1/images/multi-image2image"
SUBJECTS = [{"subject_image": f"https://example.com/subject-{n}.jpg"} for n in range(4)]


def problems(type_name: str, body: object, **options: Any) -> set[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(body, **options)
    return {(p.field, p.code) for p in caught.value.problems}


def message(type_name: str, body: object, field: str) -> str:
    with pytest.raises(RequestInvalid) as caught:
        task_type(type_name).validate(body)
    return next(p.message for p in caught.value.problems if p.field == field)


def round_trip(service: Service, path: str, body: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """The task created at `path` through the simulator, archived by a worker: its view, each archived
    image checked against its file (a real PNG, its size and sha256) and served at its link."""
    response = service.http.post(f"/kling{path}", json=body)
    assert response.status_code == 200, response.text
    view = archived(service, body["external_task_id"])
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["archived_videos"] == [] and view["archived_images"]
    for n, image in enumerate(view["archived_images"]):
        data = (Path(env["ARCHIVE_URL"]) / image["key"]).read_bytes()
        assert image["key"].endswith(f"/image_{n}.png") and data.startswith(b"\x89PNG\r\n\x1a\n")
        assert image["sha256"] == hashlib.sha256(data).hexdigest() and image["size"] == len(data)
        assert service.http.get(image["url"].removeprefix(service.url)).content == data
    return view


def found_at_its_own_path_only(service: Service, path: str, external_id: str, task_id: str) -> dict[str, Any]:
    """Kling finds a task by either id at its type's path, under / and /kling, and nowhere else; its
    results (videos or images, by its type) link their archived copies. Returns Kling's view of it."""
    (kind,) = (kind for kind in TASK_TYPES.values() if kind.path == path)
    results = "videos" if kind.output is Output.VIDEO else "images"
    for prefix in ("", "/kling"):
        for ref in (external_id, task_id):
            data = service.http.get(f"{prefix}{path}/{ref}").json()["data"]
            assert data["task_id"] == task_id and data["task_info"]["external_task_id"] == external_id
            assert data["task_result"][results] and all(
                r["archive_url"] for r in data["task_result"][results]
            )
        listed = service.http.get(f"{prefix}{path}", params={"pageSize": 5}).json()["data"]
        assert [task["task_id"] for task in listed] == [task_id]
    for other in {kind.path for kind in TASK_TYPES.values() if not kind.unified} - {path}:
        refused = service.http.get(f"{other}/{external_id}")
        assert refused.status_code == 404 and refused.json()["code"] == 1203
        assert service.http.get(other).json()["data"] == []
    return data


def test_try_on_lives_at_kling_try_on_path() -> None:
    kind = task_type("kolors-virtual-try-on")
    assert kind.path == TRY_ON and kind.output == "image"
    assert kind.item_path("a/b") == f"{TRY_ON}/a%2Fb"


def test_a_full_try_on_body_passes_unchanged() -> None:
    body = {
        "model_name": "kolors-virtual-try-on-v1-5",
        "human_image": b64(PERSON),
        "cloth_image": GARMENT_URL,
        "callback_url": "https://example.com/hook",
        "external_task_id": "try-1",
    }
    assert task_type("kolors-virtual-try-on").validate(body) == body
    assert task_type("kolors-virtual-try-on").validate(TRY_ON_BODY) == TRY_ON_BODY  # v1 by default


def test_every_try_on_problem_is_reported_with_its_path_and_a_hint() -> None:
    body = {
        "human_imgae": "https://example.com/person.jpg",
        "cloth_image": "data:image/png;base64,iVBORw0KGgo=",
        "model_name": "kling-v1",  # an image generation model, not a try-on one
        "prompt": "a red jacket",  # try-on takes no prompt
        "n": 2,
        "watermark_info": {"enabled": True},  # not in Kling's try-on reference
        "callback_url": "ftp://example.com/hook",
        "external_task_id": "with space",
    }
    assert problems("kolors-virtual-try-on", body) == {
        ("human_image", "missing"),
        ("human_imgae", "unknown_field"),
        ("cloth_image", "format"),
        ("model_name", "enum"),
        ("prompt", "unknown_field"),
        ("n", "unknown_field"),
        ("watermark_info", "unknown_field"),
        ("callback_url", "format"),
        ("external_task_id", "format"),
    }
    assert (
        message("kolors-virtual-try-on", body, "human_imgae") == "unknown field; did you mean 'human_image'?"
    )
    assert "kolors-virtual-try-on-v1-5" in message("kolors-virtual-try-on", body, "model_name")
    assert problems("kolors-virtual-try-on", {}) == {("human_image", "missing"), ("cloth_image", "missing")}
    assert problems("kolors-virtual-try-on", {**TRY_ON_BODY, "cloth_image": ""}) == {
        ("cloth_image", "too_short")
    }
    assert problems("kolors-virtual-try-on", {**TRY_ON_BODY, "human_image": None}) == {
        ("human_image", "type")
    }
    too_big = b64(bytes(10 * 1024 * 1024 + 1))
    assert problems("kolors-virtual-try-on", {**TRY_ON_BODY, "human_image": too_big}) == {
        ("human_image", "too_large")
    }


def test_new_try_on_fields_pass_with_extra_fields() -> None:
    body = {**TRY_ON_BODY, "watermark_info": {"enabled": False}}
    assert (
        task_type("kolors-virtual-try-on").validate(body, extra_fields=frozenset({"watermark_info"})) == body
    )
    assert problems(
        "kolors-virtual-try-on", {**TRY_ON_BODY, "cloth_imag": "x"}, extra_fields=frozenset({"*"})
    ) == {
        ("cloth_imag", "unknown_field")  # a misspelling is refused even when every new field passes
    }


def test_an_invalid_try_on_request_is_refused_over_http_with_every_problem(
    service: Service, simulator
) -> None:
    response = service.http.post(TRY_ON, json={"humanImage": "https://example.com/p.jpg", "n": 1})
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
    assert set(errors) == {
        ("human_image", "missing"),
        ("cloth_image", "missing"),
        ("humanImage", "unknown_field"),
        ("n", "unknown_field"),
    }
    assert errors[("humanImage", "unknown_field")] == "unknown field; did you mean 'human_image'?"
    assert simulator.state.tasks() == []


def test_a_try_on_round_trips_to_an_archived_image_with_its_person_in_inputs(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    body = {"human_image": b64(PERSON), "cloth_image": GARMENT_URL, "external_task_id": "try-e2e"}

    view = round_trip(service, TRY_ON, body, env)
    assert view["type"] == "kolors-virtual-try-on" and len(view["archived_images"]) == 1
    assert view["model_name"] == "kolors-virtual-try-on-v1"  # the type's default, as usage counts it
    upstream = sent_upstream(simulator, "try-e2e")
    assert upstream["human_image"] == body["human_image"] and upstream["cloth_image"] == GARMENT_URL
    request, _ = stored_request(service, "try-e2e")
    assert request["cloth_image"] == GARMENT_URL  # a URL stays as it is
    ref = request["human_image"]
    folder = task_folder(service.services.store.get("try-e2e"))
    assert ref["archived_input"].startswith(f"{folder}/inputs/human_image-") and ref[
        "archived_input"
    ].endswith(".png")
    assert ref["sha256"] == hashlib.sha256(PERSON).hexdigest()
    assert (Path(env["ARCHIVE_URL"]) / ref["archived_input"]).read_bytes() == PERSON
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / folder / "metadata.json").read_text())
    assert metadata["type"] == "kolors-virtual-try-on"
    assert [(i["field"], i["sha256"]) for i in metadata["inputs"]] == [("human_image", ref["sha256"])]

    (task,) = simulator.state.tasks()
    assert task["type"] == "kolors-virtual-try-on"
    found_at_its_own_path_only(service, TRY_ON, "try-e2e", task["task_id"])


def test_cli_submits_a_try_on_from_files_and_waits_for_its_image(running, simulator, tmp_path: Path) -> None:
    service, workers = running
    workers.start()
    person = tmp_path / "person.png"
    person.write_bytes(PERSON)
    args = ("submit", "--type", "kolors-virtual-try-on", "--human-image", str(person))
    result = run(
        service.app,
        *args,
        "--cloth-image",
        GARMENT_URL,
        "--external-task-id",
        "cli-try",
        "--wait",
        "--timeout",
        "60",
    )
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("image 0: ")]) == 1
    upstream = sent_upstream(simulator, "cli-try")
    assert upstream["human_image"] == b64(PERSON) and upstream["cloth_image"] == GARMENT_URL
    refused = run(service.app, "submit", "--type", "kolors-virtual-try-on", "--human-image", GARMENT_URL)
    assert refused.exit_code == 2 and "cloth_image: is required [missing]" in refused.stderr


def test_multi_image2image_lives_at_kling_multi_image_path() -> None:
    kind = task_type("multi-image2image")
    assert kind.path == MULTI and kind.output == "image"


def test_a_full_multi_image2image_body_passes_unchanged() -> None:
    body = {
        "model_name": "kling-v2-1",
        "prompt": "x" * 2500,
        "subject_image_list": [{"subject_image": b64(PERSON)}, *SUBJECTS[:3]],
        "scene_image": "https://example.com/beach.jpg",
        "style_image": b64(PERSON),
        "n": 9,
        "aspect_ratio": "21:9",
        "watermark_info": {"enabled": False},
        "callback_url": "https://example.com/hook",
        "external_task_id": "multi-1",
    }
    assert task_type("multi-image2image").validate(body) == body
    minimal = {"subject_image_list": SUBJECTS[:1]}  # kling-v2, one image, no prompt: all Kling's defaults
    assert task_type("multi-image2image").validate(minimal) == minimal


def test_every_multi_image2image_problem_is_reported_with_its_path_and_a_hint() -> None:
    body = {
        "subject_image_list": [
            "https://example.com/a.jpg",  # one gateway's bare string: Kling takes objects
            {"subject_imag": "https://example.com/b.jpg"},
            {"subject_image": "data:image/png;base64,iVBORw0KGgo="},
            {"subject_image": "https://example.com/d.jpg", "weight": 1},
        ],
        "scence_image": "https://example.com/scene.jpg",  # a gateway export's spelling
        "style_image": 7,
        "negative_prompt": "blur",  # not Kling's for this type
        "prompt": "x" * 2501,
        "model_name": "kling-v1",
        "n": 10,
        "aspect_ratio": "5:4",
    }
    assert problems("multi-image2image", body) == {
        ("subject_image_list[0]", "type"),
        ("subject_image_list[1].subject_image", "missing"),
        ("subject_image_list[1].subject_imag", "unknown_field"),
        ("subject_image_list[2].subject_image", "format"),
        ("subject_image_list[3].weight", "unknown_field"),
        ("scence_image", "unknown_field"),
        ("style_image", "type"),
        ("negative_prompt", "unknown_field"),
        ("prompt", "too_long"),
        ("model_name", "enum"),
        ("n", "range"),
        ("aspect_ratio", "enum"),
    }
    hint = message("multi-image2image", body, "subject_image_list[1].subject_imag")
    assert hint == "unknown field; did you mean 'subject_image'?"
    assert message("multi-image2image", body, "scence_image").startswith(
        "unknown field; did you mean 'scene_image'"
    )
    assert "subject_image" in message("multi-image2image", body, "subject_image_list[0]")


def test_multi_image2image_subject_count_and_n() -> None:
    assert problems("multi-image2image", {}) == {("subject_image_list", "missing")}
    assert problems("multi-image2image", {"subject_image_list": []}) == {("subject_image_list", "too_few")}
    five = {"subject_image_list": SUBJECTS + SUBJECTS[:1]}
    assert problems("multi-image2image", five) == {("subject_image_list", "too_many")}
    for bad in (0, 10, "2", 2.0, True, None):
        assert {f for f, _ in problems("multi-image2image", {**five, "n": bad})} == {
            "subject_image_list",
            "n",
        }
    body = {"subject_image_list": SUBJECTS[:1], "negative_prompt": "blur"}
    assert task_type("multi-image2image").validate(body, extra_fields=frozenset({"negative_prompt"})) == body


def test_an_invalid_multi_image2image_request_is_refused_over_http(service: Service, simulator) -> None:
    body = {"subject_image_list": [{"image": "https://example.com/a.jpg"}], "n": 0}
    response = service.http.post(f"/kling{MULTI}", json=body)
    assert response.status_code == 400 and response.json()["code"] == 1201
    errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
    assert set(errors) == {
        ("subject_image_list[0].subject_image", "missing"),
        ("subject_image_list[0].image", "unknown_field"),
        ("n", "range"),
    }
    assert errors[("subject_image_list[0].image", "unknown_field")] == "unknown field; allowed: subject_image"
    assert simulator.state.tasks() == []


def test_a_multi_image2image_task_round_trips_with_its_subjects_in_inputs(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    scene = tiny_png(10, 6, (20, 90, 200))
    body = {
        "subject_image_list": [SUBJECTS[0], {"subject_image": b64(PERSON)}],
        "scene_image": b64(scene),
        "prompt": "the two of them on a beach",
        "n": 2,
        "external_task_id": "multi-e2e",
    }

    view = round_trip(service, MULTI, body, env)
    assert view["type"] == "multi-image2image" and len(view["archived_images"]) == 2
    assert view["model_name"] == "kling-v2"
    sent = sent_upstream(simulator, "multi-e2e")
    assert {field: sent[field] for field in body} == body  # Base64 too, exactly as sent
    request, _ = stored_request(service, "multi-e2e")
    assert request["subject_image_list"][0] == SUBJECTS[0]  # a URL stays as it is
    folder = task_folder(service.services.store.get("multi-e2e"))
    for field, ref, data in (
        ("subject_image_list_1_subject_image", request["subject_image_list"][1]["subject_image"], PERSON),
        ("scene_image", request["scene_image"], scene),
    ):
        assert ref["archived_input"].startswith(f"{folder}/inputs/{field}-")
        assert ref["sha256"] == hashlib.sha256(data).hexdigest()
        assert (Path(env["ARCHIVE_URL"]) / ref["archived_input"]).read_bytes() == data
    metadata = json.loads((Path(env["ARCHIVE_URL"]) / folder / "metadata.json").read_text())
    assert [i["field"] for i in metadata["inputs"]] == ["scene_image", "subject_image_list[1].subject_image"]

    page = service.http.get("/tasks/multi-e2e").text  # the dashboard shows each subject, no Base64
    assert "<dt>subject_image_list[1].subject_image</dt>" in page and SUBJECTS[0]["subject_image"] in page
    assert b64(PERSON) not in page

    (task,) = simulator.state.tasks()
    assert task["type"] == "multi-image2image"
    found_at_its_own_path_only(service, MULTI, "multi-e2e", task["task_id"])


def test_cli_submits_a_multi_image2image_task_through_extra(running, simulator) -> None:
    service, workers = running
    workers.start()
    extra = json.dumps({"subject_image_list": SUBJECTS[:2]})
    args = ("submit", "--type", "multi-image2image", "--extra", extra, "--n", "2", "--prompt", "a duo")
    result = run(service.app, *args, "--external-task-id", "cli-multi", "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if line.startswith("image ")]) == 2
    upstream = sent_upstream(simulator, "cli-multi")
    assert upstream["subject_image_list"] == SUBJECTS[:2] and upstream["n"] == 2
    refused = run(service.app, "submit", "--type", "multi-image2image", "--prompt", "a duo")
    assert refused.exit_code == 2 and "subject_image_list: is required [missing]" in refused.stderr
