"""Image generation (`/v1/images/generations`) end to end: its validation, a task through the simulator
to archived images (named and typed by their bytes, with their sha256), lookups at its own path only,
polls when its callbacks are lost, its events and messages, and the CLI."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from tests import test_task_types
from tests.conftest import Service
from tests.test_task_types import archived
from webhook_service.domain.events import EventType, event_id
from webhook_service.domain.problems import RequestInvalid
from webhook_service.domain.task_types import task_type
from webhook_service.notify.payload import build_event
from webhook_service.notify.render import email_message, slack_message

running = test_task_types.running  # the service and real workers, archiving at once

IMAGES = "/v1/images/generations"
PROMPT = {"prompt": "a paper kite over a green hill"}
ASYNC = {"Prefer": "respond-async"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(64) + b"\xff\xd9"


def problems(body: object, **options: Any) -> set[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        task_type("generations").validate(body, **options)
    return {(p.field, p.code) for p in caught.value.problems}


def test_the_type_lives_at_kling_images_path() -> None:
    kind = task_type("generations")
    assert kind.path == IMAGES and kind.output == "image"
    assert kind.item_path("a/b") == f"{IMAGES}/a%2Fb"


def test_a_full_body_passes_unchanged() -> None:
    body = {
        **PROMPT,
        "model_name": "kling-v1-5",
        "image": "https://example.com/face.png",
        "image_reference": "subject",
        "image_fidelity": 0.5,
        "human_fidelity": 1,  # an integer is a number: Kling's own example sends 1
        "resolution": "2k",
        "n": 9,
        "aspect_ratio": "21:9",
        "watermark_info": {"enabled": False},
        "callback_url": "https://example.com/hook",
        "external_task_id": "img-1",
    }
    assert task_type("generations").validate(body) == body
    assert task_type("generations").validate({**PROMPT, "negative_prompt": "rain"})  # text-to-image


def test_every_problem_is_reported_with_its_path() -> None:
    body = {
        "promt": "typo",
        "model_name": "kling-v2-master",  # a video model
        "n": 10,
        "aspect_ratio": "5:4",
        "resolution": "4k",
        "image_fidelity": 1.5,
        "image_reference": "style",
        "duration": "5",  # a video field
        "watermark_info": {"enabled": "yes"},
    }
    assert problems(body) == {
        ("prompt", "missing"),
        ("promt", "unknown_field"),
        ("model_name", "enum"),
        ("n", "range"),
        ("aspect_ratio", "enum"),
        ("resolution", "enum"),
        ("image_fidelity", "range"),
        ("image_reference", "enum"),
        ("image", "missing"),  # image_reference needs an image
        ("duration", "unknown_field"),
        ("watermark_info.enabled", "type"),
    }
    with pytest.raises(RequestInvalid) as caught:
        task_type("generations").validate({**PROMPT, "image_refrence": "face"})
    assert caught.value.problems[0].message == "unknown field; did you mean 'image_reference'?"


def test_prompt_and_n_limits() -> None:
    assert problems({}) == {("prompt", "missing")}
    assert problems({"prompt": ""}) == {("prompt", "too_short")}
    assert problems({"prompt": "x" * 2501}) == {("prompt", "too_long")}
    assert problems({**PROMPT, "negative_prompt": "x" * 2501}) == {("negative_prompt", "too_long")}
    for bad in (0, 10, "2", 2.0, True, None):
        assert {field for field, _ in problems({**PROMPT, "n": bad})} == {"n"}, bad
    assert task_type("generations").validate({"prompt": "x" * 2500, "n": 1})


def test_reference_image_rules() -> None:
    image = {**PROMPT, "image": "https://example.com/face.png"}
    assert problems({**image, "model_name": "kling-v1-5"}) == {("image_reference", "missing")}
    assert task_type("generations").validate({**image, "model_name": "kling-v2"})  # only kling-v1-5 needs it
    assert problems({**image, "image_reference": "face", "human_fidelity": 0.4}) == {
        ("human_fidelity", "requires")
    }
    assert problems({**PROMPT, "human_fidelity": 0.4}) == {("human_fidelity", "requires")}
    assert problems({**image, "negative_prompt": "blur"}) == {("negative_prompt", "not_supported")}
    assert task_type("generations").validate({**image, "negative_prompt": ""})  # Kling's own example
    assert problems({**PROMPT, "image": "data:image/png;base64,iVBORw0KGgo="}) == {("image", "format")}


def test_new_kling_fields_pass_with_extra_fields() -> None:
    body = {**PROMPT, "model_name": "kling-v3", "element_list": [{"element_id": 1}]}
    assert problems(body) == {("element_list", "unknown_field")}
    assert task_type("generations").validate(body, extra_fields=frozenset({"element_list"})) == body


def test_an_image_task_round_trips_to_archived_pngs(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.2}]})
    body = {**PROMPT, "n": 3, "aspect_ratio": "1:1", "external_task_id": "img-e2e"}
    response = service.http.post(f"/kling{IMAGES}", json=body)
    assert response.status_code == 200, response.text
    (upstream,) = simulator.state.tasks()
    assert upstream["type"] == "generations" and upstream["request"]["n"] == 3

    view = archived(service, "img-e2e")
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["type"] == "generations" and view["archived_videos"] == []
    images = view["archived_images"]
    assert [image["image_index"] for image in images] == [0, 1, 2]
    folder = Path(env["ARCHIVE_URL"])
    for n, image in enumerate(images):
        path = folder / image["key"]
        data = path.read_bytes()
        assert path.name == f"image_{n}.png" and data.startswith(b"\x89PNG\r\n\x1a\n")
        assert image["content_type"] == "image/png" and image["size"] == len(data)
        assert image["sha256"] == hashlib.sha256(data).hexdigest()
        served = service.http.get(image["url"].removeprefix(service.url))
        assert served.content == data and served.headers["content-type"] == "image/png"
    metadata = json.loads((folder / images[0]["key"]).with_name("metadata.json").read_text())
    assert metadata["type"] == "generations"
    assert [(i["key"], i["sha256"]) for i in metadata["images"]] == [(i["key"], i["sha256"]) for i in images]

    kling = service.http.get(f"{IMAGES}/img-e2e").json()["data"]
    assert [image["index"] for image in kling["task_result"]["images"]] == [0, 1, 2]
    assert all(image["archive_url"] for image in kling["task_result"]["images"])
    assert (
        service.http.get(f"/kling{IMAGES}/{upstream['task_id']}").json()["data"]["task_id"]
        == upstream["task_id"]
    )
    for video_path in ("/v1/videos/image2video", "/v1/videos/text2video"):
        refused = service.http.get(f"{video_path}/img-e2e")  # Kling finds it at its own path only
        assert refused.status_code == 404 and refused.json()["code"] == 1203
        assert service.http.get(video_path).json()["data"] == []
    listed = service.http.get(IMAGES, params={"pageSize": 5}).json()["data"]
    assert [task["task_info"]["external_task_id"] for task in listed] == ["img-e2e"]

    page = service.http.get("/tasks/img-e2e").text  # the dashboard shows them
    assert '<img src="/tasks/img-e2e/images/2" alt="image 2">' in page
    shown = service.http.get("/tasks/img-e2e/images/2")
    assert shown.headers["content-type"] == "image/png" and shown.content.startswith(b"\x89PNG")


def test_the_archived_event_carries_the_images_and_says_image_ready(running, simulator) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default({"steps": [{"status": "succeed", "delay": 0.1}]})
    assert service.http.post(IMAGES, json={**PROMPT, "external_task_id": "img-msg"}).status_code == 200
    archived(service, "img-msg")
    svc = service.services
    task = svc.store.get("img-msg")
    assert task is not None
    event = build_event(
        svc, task, event_id("img-msg", EventType.ARCHIVED), "task.archived", datetime.now(UTC)
    )
    (image,) = event.data["archived_images"]
    assert image["url"].endswith("/v1/tasks/img-msg/images/0") and image["sha256"]
    slack = slack_message(event, svc.settings.public_base_url)
    assert "Image ready" in slack["text"]
    buttons = [b for block in slack["blocks"] if block["type"] == "actions" for b in block["elements"]]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [("See the image", image["url"])]
    mail = email_message(event, svc.settings.public_base_url, "svc@example.com", ("ops@example.com",))
    assert mail["Subject"].startswith("Image ready") and f"See the image: {image['url']}" in str(mail)


def test_an_image_is_typed_by_its_bytes_not_its_url(running, simulator, env) -> None:
    """A JPEG at a URL ending .png, served as video/mp4 (the simulator's extra files all are): a .jpg."""
    service, workers = running
    workers.start()
    simulator.state.add_file("photo.png", data=JPEG)
    simulator.state.add_file("page.png", data=b"<html>not found</html>")
    simulator.state.set_default(
        {"steps": [{"status": "succeed", "delay": 0.1}], "video_files": ["photo.png"]}
    )
    simulator.state.set_scenario("img-html", {"video_files": ["page.png"]})
    for external_id in ("img-jpeg", "img-html"):
        assert service.http.post(IMAGES, json={**PROMPT, "external_task_id": external_id}).status_code == 200

    (image,) = archived(service, "img-jpeg")["archived_images"]
    assert image["key"].endswith("/image_0.jpg") and image["content_type"] == "image/jpeg"
    assert (Path(env["ARCHIVE_URL"]) / image["key"]).read_bytes() == JPEG
    assert image["sha256"] == hashlib.sha256(JPEG).hexdigest()
    failed = archived(service, "img-html")
    assert failed["archive_state"] == "archive_failed" and failed["archive_error"]["reason"] == "not_an_image"
    assert failed["archived_images"] == []


def test_an_image_task_whose_callbacks_are_lost_is_polled_at_its_own_path(running, simulator) -> None:
    service, workers = running
    simulator.state.set_default({"steps": test_task_types.SILENT_STEPS})
    body = {**PROMPT, "n": 2, "external_task_id": "img-silent"}
    assert service.http.post(IMAGES, json=body, headers=ASYNC).status_code == 202
    workers.start()
    view = archived(service, "img-silent")
    assert view["archive_state"] == "archived" and len(view["archived_images"]) == 2
    assert simulator.state.callbacks() == []
    entries = service.services.store.history("img-silent")
    assert ("poll", "succeed") in [
        (e["source"], e["status"]) for e in entries if e.get("outcome") == "applied"
    ]


def test_an_invalid_image_request_is_refused_with_every_problem(service: Service, simulator) -> None:
    response = service.http.post(IMAGES, json={"n": 0, "image_reference": "face", "promtp": "x"})
    assert response.status_code == 400
    errors = {(e["field"], e["code"]): e["message"] for e in response.json()["errors"]}
    assert set(errors) == {
        ("prompt", "missing"),
        ("n", "range"),
        ("image", "missing"),
        ("promtp", "unknown_field"),
    }
    assert errors[("promtp", "unknown_field")] == "unknown field; did you mean 'prompt'?"
    assert simulator.state.tasks() == []


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def test_cli_submits_an_image_task_and_waits_for_its_images(running, simulator) -> None:
    service, workers = running
    workers.start()
    args = (
        "submit",
        "--type",
        "generations",
        "--prompt",
        "a fox",
        "--n",
        "2",
        "--external-task-id",
        "cli-img",
    )
    result = run(service.app, *args, "--wait", "--timeout", "60")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("image ")]
    assert len(lines) == 2 and all(".png" in line for line in lines)
    (upstream,) = simulator.state.tasks()
    assert upstream["type"] == "generations" and upstream["request"] == {
        "prompt": "a fox",
        "n": 2,
        "external_task_id": "cli-img",
        "callback_url": upstream["request"]["callback_url"],
    }
    refused = run(service.app, "submit", "--type", "generations", "--n", "12")
    assert refused.exit_code == 2 and "prompt: is required [missing]" in refused.stderr
