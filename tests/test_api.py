"""The drop-in API, through both prefixes, against the simulator as a real upstream."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import Service
from tests.support import wait_for

SCENES: dict[str, dict[str, Any]] = {
    "first frame": {
        "model_name": "kling-v1",
        "image": "https://example.com/first-frame.jpg",
        "prompt": "A mouse runs toward the camera, smiling and blinking",
        "mode": "std",
        "duration": "5",
        "aspect_ratio": "16:9",
    },
    "first and last frame": {
        "model_name": "kling-v1",
        "image": "https://example.com/child.jpg",
        "image_tail": "https://example.com/adult.jpg",
        "prompt": "A little girl grows up",
        "mode": "pro",
        "duration": "10",
        "aspect_ratio": "16:9",
    },
    "camera control": {
        "model_name": "kling-v2-master",
        "image": "https://example.com/landscape.jpg",
        "prompt": "Camera slowly zooms in on the mountain peak",
        "camera_control": {"type": "simple", "config": {"zoom": 5}},
        "duration": "10",
        "aspect_ratio": "16:9",
    },
}


@pytest.mark.parametrize("prefix", ["", "/kling"])
@pytest.mark.parametrize("scene", list(SCENES))
def test_seed_scenes_reach_upstream_and_finish(service: Service, simulator, prefix: str, scene: str) -> None:
    body = copy.deepcopy(SCENES[scene])
    response = service.submit(body, prefix=prefix)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["code"] == 0 and answer["request_id"]
    data = answer["data"]
    external_id = data["task_info"]["external_task_id"]
    assert data["task_id"] and external_id.startswith("kws-")
    assert data["task_status"] in ("submitted", "processing", "succeed")
    assert isinstance(data["created_at"], int) and isinstance(data["updated_at"], int)

    (upstream,) = simulator.state.tasks()
    sent = upstream["request"]
    assert {k: v for k, v in sent.items() if k not in ("callback_url", "external_task_id")} == body
    assert sent["external_task_id"] == external_id
    assert sent["callback_url"].startswith(f"{service.url}/callbacks/kling?token=")

    done = wait_for(
        lambda: (t := service.task(external_id))["task_status"] == "succeed" and t, what="succeed"
    )
    assert done["task_id"] == data["task_id"]
    assert done["task_result"]["videos"][0]["url"].endswith(".mp4")
    assert service.http.get(f"{prefix}/v1/videos/image2video/{data['task_id']}").json()["data"] == done


def test_caller_ids_and_callback_url_are_kept(service: Service, simulator) -> None:
    body = {
        **SCENES["first frame"],
        "external_task_id": "order-42",
        "callback_url": "https://hooks.example/x",
    }
    data = service.submit(body).json()["data"]

    assert data["task_info"]["external_task_id"] == "order-42"
    assert simulator.state.tasks()[0]["request"]["callback_url"] != "https://hooks.example/x"
    task = service.services.store.get("order-42")
    assert task is not None and task.client_callback_url == "https://hooks.example/x"
    shown = service.http.get("/v1/tasks/order-42").json()["data"]
    assert shown["client_callback_url"] == "https://hooks.example/…"  # a secret it may carry stays in


def test_reused_external_task_id_is_refused_and_nothing_sent(service: Service, simulator) -> None:
    body = {**SCENES["first frame"], "external_task_id": "same"}
    assert service.submit(body).status_code == 200
    again = service.submit(body)
    assert again.status_code == 400
    assert again.json()["code"] == 1201 and "already used" in again.json()["message"]
    assert len(simulator.state.tasks()) == 1


def test_invalid_request_lists_every_problem_and_sends_nothing(service: Service, simulator) -> None:
    response = service.submit({"prompt": "x" * 2501, "mode": "turbo", "promt": "typo"})

    assert response.status_code == 400
    answer = response.json()
    assert answer["code"] == 1201
    fields = {problem["field"]: problem["code"] for problem in answer["errors"]}
    assert fields == {"image": "missing", "prompt": "too_long", "mode": "enum", "promt": "unknown_field"}
    assert simulator.state.tasks() == []
    assert service.http.get("/v1/videos/image2video").json()["data"] == []


def test_body_that_is_not_json_is_refused(service: Service) -> None:
    response = service.http.post(
        "/v1/videos/image2video", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == 1201


def test_upstream_refusal_comes_back_with_klings_code_and_the_task_says_why(
    service: Service, simulator
) -> None:
    simulator.state.set_default({"create_error": {"http": 400, "code": 1301, "message": "content unsafe"}})
    response = service.submit({**SCENES["first frame"], "external_task_id": "unsafe-1"})

    assert response.status_code == 400
    assert response.json()["code"] == 1301 and response.json()["message"] == "content unsafe"
    task = service.task("unsafe-1")
    assert task["task_status"] == "failed" and task["task_status_msg"] == "content unsafe"
    assert service.services.store.get("unsafe-1").error["code"] == 1301


def test_server_error_after_creation_finds_the_created_task(service: Service, simulator) -> None:
    simulator.state.set_default(
        {"create_error": {"http": 500, "code": 5000, "message": "boom", "after_create": True}}
    )
    response = service.submit({**SCENES["first frame"], "external_task_id": "maybe-1"})

    assert response.status_code == 200, response.text
    assert response.json()["data"]["task_id"] == simulator.state.tasks()[0]["task_id"]
    wait_for(lambda: service.task("maybe-1")["task_status"] == "succeed", what="the found task to finish")
    assert len(simulator.state.tasks()) == 1


def test_unknown_task_is_404(service: Service) -> None:
    response = service.http.get("/kling/v1/videos/image2video/nope")
    assert response.status_code == 404 and response.json()["code"] == 1203


def test_list_is_newest_first_with_klings_bounds(service: Service) -> None:
    for n in range(3):
        service.submit({**SCENES["first frame"], "external_task_id": f"list-{n}"})

    page = service.http.get("/v1/videos/image2video", params={"pageNum": 1, "pageSize": 2}).json()["data"]
    assert [t["task_info"]["external_task_id"] for t in page] == ["list-2", "list-1"]
    page2 = service.http.get("/kling/v1/videos/image2video", params={"pageNum": 2, "pageSize": 2}).json()[
        "data"
    ]
    assert [t["task_info"]["external_task_id"] for t in page2] == ["list-0"]

    for params in ({"pageNum": 0}, {"pageNum": 1001}, {"pageSize": 0}, {"pageSize": 501}, {"pageSize": "x"}):
        bad = service.http.get("/v1/videos/image2video", params=params)
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] in params


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
