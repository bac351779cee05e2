"""A request's Base64 images leave Redis: archived when the task is recorded (local directory and S3),
read back with their sha256 checked whenever the request goes upstream, and sent to Kling exactly as
the client sent them. The simulator, which receives the request, is the judge of "exactly"."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from tests.conftest import Service, make_service
from tests.support import wait_for
from webhook_service.domain.archive import archive_task
from webhook_service.domain.archive_layout import task_folder
from webhook_service.domain.submission import dispatch

ASYNC = {"Prefer": "respond-async"}
TRAJECTORY = [{"x": 10, "y": 20}, {"x": 30, "y": 40}]


def noise_png(side: int) -> bytes:
    """A real PNG that does not compress: about 3 * side**2 bytes."""
    picture = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=0)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def non_canonical(data: bytes) -> str:
    """Base64 of `data` whose last character has unused low bits set: it decodes to the same bytes, and
    only a service that keeps what was sent can send it on unchanged."""
    assert len(data) % 3, "needs padding, or no bit is unused"
    text = b64(data)
    at = -3 if text.endswith("==") else -2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = alphabet[alphabet.index(text[at]) | 1]
    changed = text[:at] + odd + text[at + 1 :]
    assert changed != text and base64.b64decode(changed, validate=True) == data
    return changed


def sent_upstream(simulator: Any, external_id: str) -> dict[str, Any]:
    (task,) = [t for t in simulator.state.tasks() if t["external_task_id"] == external_id]
    return task["request"]


def stored_request(service: Service, external_id: str) -> tuple[dict[str, Any], int]:
    """The request as Redis holds it, and what that costs Redis (MEMORY USAGE)."""
    svc = service.services
    key = svc.keys.task_request(external_id)
    return json.loads(svc.redis.get(key)), svc.redis.memory_usage(key, samples=0)


def test_base64_images_live_in_the_archive_and_reach_kling_byte_for_byte(service: Service, simulator) -> None:
    image = noise_png(820)  # 2 MB: 2.7 MB of Base64
    tail = b"\0" + os.urandom(999)  # no image type's first bytes; 1000 is not a multiple of 3
    body = {"image": b64(image), "image_tail": non_canonical(tail), "prompt": "p", "external_task_id": "pic"}

    assert service.submit(body).status_code == 200

    sent = sent_upstream(simulator, "pic")
    assert sent["image"] == body["image"] and sent["image_tail"] == body["image_tail"]
    request, redis_bytes = stored_request(service, "pic")
    assert redis_bytes < 1024  # was 2.7 MB
    folder = task_folder(service.services.store.get("pic"))
    archive = Path(service.app.extensions["webhook_service"].settings.archive_url)
    for field, data in (("image", image), ("image_tail", tail)):
        ref = request[field]
        assert ref["sha256"] == hashlib.sha256(data).hexdigest() and ref["size"] == len(data)
        assert ref["archived_input"].startswith(f"{folder}/inputs/{field}-")
        assert (archive / ref["archived_input"]).read_bytes() == data
    assert request["image"]["content_type"] == "image/png" and request["image_tail"]["content_type"] is None
    assert "base64_tail" in request["image_tail"] and "base64_tail" not in request["image"]


def test_motion_brush_masks_are_archived_and_sent_back_with_their_trajectories(
    service: Service, simulator
) -> None:
    masks = [noise_png(8 + n) for n in range(7)]
    body = {
        "image": "https://example.com/a.jpg",
        "static_mask": b64(masks[0]),
        "dynamic_masks": [{"mask": b64(mask), "trajectories": TRAJECTORY} for mask in masks[1:]],
        "external_task_id": "brush",
    }
    assert service.submit(body).status_code == 200

    sent = sent_upstream(simulator, "brush")
    assert {k: sent[k] for k in body} == body
    request, _ = stored_request(service, "brush")
    assert request["image"] == "https://example.com/a.jpg"  # a URL stays as it is
    assert request["dynamic_masks"][5]["trajectories"] == TRAJECTORY
    assert request["dynamic_masks"][5]["mask"]["sha256"] == hashlib.sha256(masks[6]).hexdigest()
    assert request["dynamic_masks"][5]["mask"]["archived_input"].endswith(".png")
    assert "/inputs/dynamic_masks_5_mask-" in request["dynamic_masks"][5]["mask"]["archived_input"]


def test_a_queued_task_is_sent_with_its_images_read_back(service: Service, simulator) -> None:
    image = b64(noise_png(64))
    response = service.http.post("/v1/videos/image2video", json={"image": image}, headers=ASYNC)
    assert response.status_code == 202
    external_id = response.json()["data"]["task_info"]["external_task_id"]
    assert simulator.state.tasks() == []

    assert dispatch(service.services) == 1  # what the dispatch job runs
    assert sent_upstream(simulator, external_id)["image"] == image


def test_a_resend_after_an_uncertain_create_sends_the_same_images(env, simulator) -> None:
    image = b64(noise_png(64))
    simulator.state.set_scenario("again", {"create_error": {"http": 500, "code": 5000, "message": "oops"}})
    service, server, _ = make_service(env, SUBMIT_WAIT_S="0")
    try:
        assert service.submit({"image": image, "external_task_id": "again"}).status_code == 202
        assert simulator.state.tasks() == []  # Kling failed, and has no such task
        simulator.state.set_scenario("again", {})
        wait_for(
            lambda: dispatch(service.services) and simulator.state.tasks(),
            timeout=15,
            what="the send after the pause",
        )
        assert sent_upstream(simulator, "again")["image"] == image
        events = [h["event"] for h in service.services.store.history("again")]
        assert "create_deferred" in events
    finally:
        server.stop()


@pytest.mark.parametrize("damage", ["deleted", "altered"])
def test_an_image_gone_from_the_archive_fails_the_task_and_nothing_goes_upstream(
    service: Service, simulator, damage: str
) -> None:
    body = {"image": b64(noise_png(32)), "external_task_id": f"lost-{damage}"}
    assert service.http.post("/v1/videos/image2video", json=body, headers=ASYNC).status_code == 202
    request, _ = stored_request(service, body["external_task_id"])
    archive = Path(service.services.settings.archive_url)
    file = archive / request["image"]["archived_input"]
    if damage == "deleted":
        file.unlink()
    else:
        file.write_bytes(noise_png(32))

    dispatch(service.services)

    task = service.task(body["external_task_id"])
    expected = "missing from the archive" if damage == "deleted" else "not the image recorded"
    assert task["task_status"] == "failed" and expected in task["task_status_msg"]
    assert simulator.state.tasks() == []


def test_an_archive_that_cannot_read_an_image_now_is_tried_again_later(service: Service, simulator) -> None:
    image = noise_png(32)
    body = {"image": b64(image), "external_task_id": "unreadable"}
    assert service.http.post("/v1/videos/image2video", json=body, headers=ASYNC).status_code == 202
    file = (
        Path(service.services.settings.archive_url)
        / stored_request(service, "unreadable")[0]["image"]["archived_input"]
    )
    file.unlink()
    file.mkdir()  # still there, but reading it fails as a failing disk or an S3 outage does

    dispatch(service.services)

    assert service.task("unreadable")["task_status"] == "queued" and simulator.state.tasks() == []
    deferred = [h for h in service.services.store.history("unreadable") if h["event"] == "create_deferred"]
    assert "could not read image" in deferred[0]["error"]["message"]
    file.rmdir()
    file.write_bytes(image)
    wait_for(
        lambda: dispatch(service.services) and simulator.state.tasks(),
        timeout=15,
        what="the send after the pause",
    )
    assert sent_upstream(simulator, "unreadable")["image"] == b64(image)


def test_metadata_lists_the_inputs_with_their_sha256(service: Service, simulator) -> None:
    image = noise_png(48)
    body = {"image": b64(image), "static_mask": b64(image[:300]), "external_task_id": "meta"}
    assert service.submit(body).status_code == 200
    wait_for(lambda: service.task("meta")["task_status"] == "succeed", what="the succeed callback")

    archive_task(service.services, "meta")  # what the archive job runs

    folder = Path(service.services.settings.archive_url) / task_folder(service.services.store.get("meta"))
    text = (folder / "metadata.json").read_text()
    metadata = json.loads(text)
    assert [(i["field"], i["sha256"], i["size"]) for i in metadata["inputs"]] == [
        ("image", hashlib.sha256(image).hexdigest(), len(image)),
        ("static_mask", hashlib.sha256(image[:300]).hexdigest(), 300),
    ]
    assert metadata["request"]["image"]["archived_input"] == metadata["inputs"][0]["archived_input"]
    assert body["image"][:100] not in text and "<base64" not in text
    stored = sorted(p.name.split("-")[0] for p in (folder / "inputs").iterdir() if not p.name.startswith("."))
    assert stored == ["image", "request.json", "static_mask"]


def test_inputs_of_a_task_never_archived_are_listed_with_their_sha256(service: Service, simulator) -> None:
    """No output, no metadata.json: the inputs still say what they were for, from the moment the task
    is recorded, so they can be placed and checked after retention removes the task from Redis."""
    image = noise_png(40)
    simulator.state.set_scenario("declined", {"steps": [{"status": "failed", "delay": 0.05}]})
    body = {"image": b64(image), "image_tail": "https://example.com/tail.jpg", "external_task_id": "declined"}
    assert service.submit(body).status_code == 200
    wait_for(lambda: service.task("declined")["task_status"] == "failed", what="the failed callback")

    folder = Path(service.services.settings.archive_url) / task_folder(service.services.store.get("declined"))
    assert not (folder / "metadata.json").exists()
    manifest = json.loads((folder / "inputs" / "request.json").read_text())
    assert (manifest["external_task_id"], manifest["tenant"], manifest["type"]) == (
        "declined",
        "default",
        "image2video",
    )
    (listed,) = manifest["inputs"]
    assert (listed["field"], listed["size"]) == ("image", len(image))
    assert listed["sha256"] == hashlib.sha256(image).hexdigest()
    kept = Path(service.services.settings.archive_url) / listed["archived_input"]
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == listed["sha256"]
    assert manifest["request"]["image_tail"] == "https://example.com/tail.jpg"  # URLs stay as sent
    assert b64(image)[:100] not in json.dumps(manifest)


def test_s3_archive_keeps_the_images_with_their_sha256(env, simulator, bucket: str, moto_url: str) -> None:
    image = noise_png(64)
    s3 = {"ARCHIVE_URL": f"s3://{bucket}/kept", "S3_ENDPOINT_URL": moto_url}
    service, server, _ = make_service(env, **s3)
    try:
        assert service.submit({"image": b64(image), "external_task_id": "cloud"}).status_code == 200
        assert sent_upstream(simulator, "cloud")["image"] == b64(image)
        ref = stored_request(service, "cloud")[0]["image"]
        client = boto3.client("s3", endpoint_url=moto_url)
        stored = client.get_object(Bucket=bucket, Key=f"kept/{ref['archived_input']}")
        assert stored["Body"].read() == image
        assert stored["Metadata"]["sha256"] == hashlib.sha256(image).hexdigest() == ref["sha256"]
    finally:
        server.stop()


@pytest.mark.parametrize("archive", ["local", "s3"])
def test_an_archive_that_refuses_the_images_refuses_the_create_and_records_nothing(
    env, simulator, tmp_path: Path, archive: str, request: pytest.FixtureRequest
) -> None:
    if archive == "local":
        blocked = tmp_path / "a-file-where-the-archive-should-be"
        blocked.write_text("")
        overrides = {"ARCHIVE_URL": str(blocked)}
    else:
        request.getfixturevalue("bucket")  # AWS settings for moto, but the archive names no such bucket
        overrides = {
            "ARCHIVE_URL": "s3://no-such-bucket",
            "S3_ENDPOINT_URL": request.getfixturevalue("moto_url"),
        }
    service, server, _ = make_service(env, **overrides)
    try:
        refused = service.submit({"image": b64(noise_png(16)), "external_task_id": "refused"})

        assert refused.status_code == 503, refused.text
        assert refused.json()["code"] == 5001 and "nothing was recorded" in refused.json()["message"]
        assert service.services.redis.keys("kws:*") == []
        assert simulator.state.tasks() == []
        assert service.http.get("/v1/videos/image2video/refused").status_code == 404
        picture = tmp_path / "picture.png"
        picture.write_bytes(noise_png(16))
        command = ["submit", "--image", str(picture), "--external-task-id", "refused"]
        by_cli = service.app.test_cli_runner().invoke(args=command)
        assert by_cli.exit_code == 3 and "nothing was recorded" in by_cli.output  # 3: try again later
        assert service.services.redis.keys("kws:*") == []
        url_only = service.submit({"image": "https://example.com/a.jpg", "external_task_id": "refused"})
        assert url_only.status_code == 200  # the same id is free, and URLs need no archive
    finally:
        server.stop()
