"""Video extension (`/v1/videos/video-extend`, type video-extend), end to end: its validation (every
problem at once, with paths and hints), a text2video task extended through the simulator to an archived
MP4, Kling's `task_info.parent_video` kept, the two tasks linked both ways (API, dashboard, event
payload) within one tenant only, another tenant's video refused exactly as an unknown one, Kling's
documented limits on the video (3 minutes, kling-v1-5, 30 days), retention removing the video index with
the task, and `flask submit --video-id`."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests import test_notify, test_task_types
from tests.conftest import Service
from tests.support import wait_for
from tests.test_image_generation import run
from tests.test_image_types import message, problems
from tests.test_retention import keys_about
from tests.test_task_types import archived
from tests.test_tenants import KEY_A, KEY_B, TENANTS, bearer
from webhook_service.domain.callbacks import receive_callback
from webhook_service.domain.retention import prune
from webhook_service.domain.task_types import task_type
from webhook_service.keys import Keys
from webhook_service.notify.payload import build_event

running = test_task_types.running  # the service and real workers, archiving at once
stack = test_notify.stack  # the service and workers with settings of a test's own

EXTEND = "/v1/videos/video-extend"
T2V = "/v1/videos/text2video"
QUICK = {"steps": [{"status": "processing", "delay": 0}, {"status": "succeed", "delay": 0.2}]}
STUCK = {"steps": [{"status": "processing", "delay": 0}]}  # Kling's own success never comes


def test_video_extend_lives_at_kling_path_and_makes_videos() -> None:
    kind = task_type("video-extend")
    assert kind.path == EXTEND and kind.output == "video"


def test_a_full_body_passes_unchanged() -> None:
    body = {
        "video_id": "c01bbafe-712e-4a00-8265-fe7b4e9b17bf",
        "prompt": "the kite climbs into the clouds",
        "negative_prompt": "blur",
        "cfg_scale": 0.5,
        "watermark_info": {"enabled": True},
        "callback_url": "https://example.com/hook",
        "external_task_id": "ext-1",
    }
    assert task_type("video-extend").validate(body) == body
    assert task_type("video-extend").validate({"video_id": "v"}) == {"video_id": "v"}  # no prompt needed


def test_every_problem_is_reported_with_its_path_and_a_hint() -> None:
    body = {
        "video_ud": "v-1",  # misspelt: video_id is then missing too
        "prompt": "p" * 2501,
        "negative_prompt": 3,
        "cfg_scale": 1.5,
        "model_name": "kling-v1-6",  # the source video's model is used: not a field
        "mode": "pro",
        "duration": "5",
        "task_id": "123",  # one gateway's, not Kling's
        "external_task_id": "with space",
    }
    assert problems("video-extend", body) == {
        ("video_id", "missing"),
        ("video_ud", "unknown_field"),
        ("prompt", "too_long"),
        ("negative_prompt", "type"),
        ("cfg_scale", "range"),
        ("model_name", "unknown_field"),
        ("mode", "unknown_field"),
        ("duration", "unknown_field"),
        ("task_id", "unknown_field"),
        ("external_task_id", "format"),
    }
    assert message("video-extend", body, "video_ud") == "unknown field; did you mean 'video_id'?"
    assert problems("video-extend", {"video_id": ""}) == {("video_id", "too_short")}
    assert problems("video-extend", {"video_id": "a b"}) == {("video_id", "format")}
    assert problems("video-extend", {"video_id": "v" * 129}) == {("video_id", "too_long")}
    assert problems("video-extend", {"video_id": 42}) == {("video_id", "type")}
    with_task_id = {"video_id": "v", "task_id": "123"}
    assert (
        task_type("video-extend").validate(with_task_id, extra_fields=frozenset({"task_id"})) == with_task_id
    )


def make_parent(service: Service, external_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A text2video task through the simulator, until Kling's result names its video: its view."""
    created = service.http.post(
        T2V, json={"prompt": "a kite", "external_task_id": external_id}, headers=headers or {}
    )
    assert created.status_code == 200, created.text
    return wait_for(
        lambda: (
            (view := service.http.get(f"/v1/tasks/{external_id}", headers=headers or {}).json()["data"])
            and view["task_result"]
            and view
        ),
        timeout=30,
        what=f"{external_id}'s video",
    )


def extend(service: Service, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return service.http.post(f"/kling{EXTEND}", json=body, headers=headers or {})


def test_an_extension_round_trips_to_an_archived_mp4_and_links_both_tasks(running, simulator, env) -> None:
    service, workers = running
    workers.start()
    simulator.state.set_default(QUICK)
    parent = make_parent(service, "parent-1")
    (parent_video,) = parent["task_result"]["videos"]

    response = extend(
        service, {"video_id": parent_video["id"], "prompt": "higher", "external_task_id": "ext-1"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["task_info"]["external_task_id"] == "ext-1"
    upstream = simulator.state.tasks()[-1]
    assert upstream["type"] == "video-extend" and upstream["request"]["video_id"] == parent_video["id"]

    view = archived(service, "ext-1")
    assert view["archive_state"] == "archived", view["archive_error"]
    assert view["type"] == "video-extend" and view["model_name"] == parent["model_name"]
    (video,) = view["archived_videos"]
    data = (Path(env["ARCHIVE_URL"]) / video["key"]).read_bytes()
    assert data[4:8] == b"ftyp" and video["sha256"] == hashlib.sha256(data).hexdigest()  # a real MP4
    assert service.http.get(video["url"].removeprefix(service.url)).content == data
    # Kling's parent_video, as Kling reported it: the whole before, and the result is the whole after.
    assert view["parent_video"] == {k: parent_video[k] for k in ("id", "url", "duration")}
    assert float(view["task_result"]["videos"][0]["duration"]) == float(parent_video["duration"]) + 4.5
    link = {"task_id": parent["task_id"], "external_task_id": "parent-1", "type": "text2video"}
    assert view["parent_task"] == {**link, "task_status": "succeed"}
    assert view["extensions"] == []

    ext_id = view["task_id"]
    for prefix in ("", "/kling"):
        for ref in ("ext-1", ext_id):
            kling = service.http.get(f"{prefix}{EXTEND}/{ref}").json()["data"]
            assert kling["task_info"] == {"external_task_id": "ext-1", "parent_video": view["parent_video"]}
            assert kling["task_result"]["videos"][0]["archive_url"]
        listed = service.http.get(f"{prefix}{EXTEND}", params={"pageSize": 5}).json()["data"]
        assert [task["task_id"] for task in listed] == [ext_id]
    assert service.http.get(f"{T2V}/ext-1").status_code == 404  # at its own type's path only
    assert service.http.get(f"{EXTEND}/parent-1").status_code == 404

    parent_view = service.http.get("/v1/tasks/parent-1").json()["data"]
    assert parent_view["parent_video"] is None and parent_view["parent_task"] is None
    assert parent_view["extensions"] == [
        {"task_id": ext_id, "external_task_id": "ext-1", "type": "video-extend", "task_status": "succeed"}
        | {"video_id": parent_video["id"]}
    ]

    svc = service.services
    task = svc.store.get("ext-1")
    assert task is not None
    event = build_event(svc, task, "evt-1", "task.succeeded", datetime.now(UTC))
    assert json.loads(event.payload)["data"]["parent_task"] == {**link, "task_status": "succeed"}

    page = service.http.get("/tasks/ext-1").text
    assert 'id="parent-video"' in page and 'href="/tasks/parent-1"' in page
    parent_page = service.http.get("/tasks/parent-1").text
    assert 'id="extensions"' in parent_page and 'href="/tasks/ext-1"' in parent_page

    # An extension of the extension: its parent is ext-1, whose own parent stays parent-1.
    again = extend(service, {"video_id": task.task_result["videos"][0]["id"], "external_task_id": "ext-2"})
    assert again.status_code == 200, again.text
    chained = archived(service, "ext-2")
    assert chained["parent_task"]["external_task_id"] == "ext-1"
    assert float(chained["task_result"]["videos"][0]["duration"]) == float(parent_video["duration"]) + 9
    assert [
        e["external_task_id"] for e in service.http.get("/v1/tasks/ext-1").json()["data"]["extensions"]
    ] == ["ext-2"]


def test_retention_removes_the_video_index_with_its_tasks(stack, simulator) -> None:
    # The test prunes itself, to see the keys before and after.
    service = stack.start(TASK_RETENTION_S="1", PRUNE_INTERVAL_S="3600", ARCHIVE_RETRY_BASE_S="0")
    simulator.state.set_default(QUICK)
    parent = make_parent(service, "old-parent")
    video_id = parent["task_result"]["videos"][0]["id"]
    assert extend(service, {"video_id": video_id, "external_task_id": "old-ext"}).status_code == 200
    ext_video = archived(service, "old-ext")["task_result"]["videos"][0]["id"]
    archived(service, "old-parent")
    svc, keys = service.services, Keys()
    assert svc.redis.get(keys.video(video_id)) == b"old-parent"
    assert svc.redis.smembers(keys.video_extensions(video_id)) == {b"old-ext"}
    assert svc.redis.get(keys.video(ext_video)) == b"old-ext"

    removed: list[str] = []

    def both_removed() -> bool:
        removed.extend(prune(svc).removed)
        return sorted(removed) == ["old-ext", "old-parent"]

    wait_for(both_removed, timeout=30, interval=0.2, what="both tasks' removal")
    assert keys_about(service, video_id, ext_video, "old-parent", "old-ext") == []
    refused = extend(service, {"video_id": video_id, "external_task_id": "too-late"})
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "not_yours"


def test_another_tenants_video_is_refused_exactly_as_an_unknown_one(services_with, simulator) -> None:
    simulator.state.set_default(QUICK)
    service = services_with(**TENANTS)
    team_a, team_b = bearer(KEY_A), bearer(KEY_B)
    parent = make_parent(service, "job-1", team_a)
    video_id = parent["task_result"]["videos"][0]["id"]

    def refusal(video: str) -> tuple[int, dict[str, Any]]:
        answer = extend(service, {"video_id": video, "external_task_id": "try"}, team_b)
        return answer.status_code, {k: v for k, v in answer.json().items() if k != "request_id"}

    status, theirs = refusal(video_id)
    assert status == 400 and theirs["errors"] == [
        {"field": "video_id", "code": "not_yours", "message": theirs["errors"][0]["message"]}
    ]
    assert "not a video of one of your tasks" in theirs["message"]
    assert refusal("no-such-video") == (400, theirs)  # the same answer, word for word
    assert not [t for t in simulator.state.tasks() if t["type"] == "video-extend"]  # nothing sent

    # Team B's own task of the same name is not linked to team A's.
    assert service.http.get("/v1/tasks/job-1", headers=team_b).status_code == 404
    ok = extend(service, {"video_id": video_id, "external_task_id": "job-2"}, team_a)
    assert ok.status_code == 200, ok.text
    view = wait_for(
        lambda: (v := service.http.get("/v1/tasks/job-2", headers=team_a).json()["data"])["parent_task"] and v
    )
    assert view["parent_task"]["external_task_id"] == "job-1"
    assert service.http.get("/v1/tasks/job-2", headers=team_b).status_code == 404
    extensions = service.http.get("/v1/tasks/job-1", headers=team_a).json()["data"]["extensions"]
    assert [e["external_task_id"] for e in extensions] == ["job-2"]


def kling_says(service: Service, external_id: str, **video: Any) -> None:
    """Kling's success callback for the task, naming one video (as Kling's callbacks do)."""
    task = service.services.store.get(external_id)
    assert task is not None and task.task_id
    body = {
        "task_id": task.task_id,
        "task_status": "succeed",
        "updated_at": video.pop("updated_at", int(time.time() * 1000)),
        "task_result": {"videos": [{"url": "https://example.com/v.mp4", **video}]},
    }
    receive_callback(service.services, external_id, body)


def test_kling_documented_limits_on_the_video_are_checked_before_anything_is_sent(
    service: Service, simulator
) -> None:
    simulator.state.set_default(STUCK)
    for name, model in (("long", "kling-v1"), ("v15", "kling-v1-5"), ("old", "kling-v1")):
        created = service.http.post(
            T2V, json={"prompt": "a kite", "model_name": model, "external_task_id": name}
        )
        assert created.status_code == 200, created.text
    kling_says(service, "long", id="long-video", duration="176.5")
    kling_says(service, "v15", id="v15-video", duration="5")
    kling_says(
        service, "old", id="old-video", duration="5", updated_at=int(time.time() * 1000) - 31 * 86400_000
    )

    def codes(video_id: str) -> list[str]:
        answer = extend(service, {"video_id": video_id})
        assert answer.status_code == 400, answer.text
        return [p["code"] for p in answer.json()["errors"]]

    assert codes("long-video") == ["too_long"]
    assert codes("v15-video") == ["not_supported_by_model"]
    assert codes("old-video") == ["expired"]
    assert not [t for t in simulator.state.tasks() if t["type"] == "video-extend"]


def test_flask_submit_extends_a_video_by_its_id(service: Service, simulator) -> None:
    simulator.state.set_default(QUICK)
    parent = make_parent(service, "cli-parent")
    video_id = parent["task_result"]["videos"][0]["id"]
    result = run(service.app, "submit", "--type", "video-extend", "--video-id", video_id, "--prompt", "on")
    assert result.exit_code == 0, result.output
    assert "external_task_id: kws-" in result.output
    (sent,) = [t for t in simulator.state.tasks() if t["type"] == "video-extend"]
    assert sent["request"]["video_id"] == video_id and sent["request"]["prompt"] == "on"

    refused = run(service.app, "submit", "--type", "video-extend", "--video-id", "unknown-video")
    assert refused.exit_code != 0 and "video_id: is not a video of one of your tasks" in refused.output
    assert "[not_yours]" in refused.output


def test_an_extension_recovered_after_redis_is_lost_is_listed_by_its_parent_again(running, simulator) -> None:
    """Redis lost: `flask recover` records both tasks again from Kling's lists, and the extension is
    linked to its parent again, from what Kling's task says it extended (task_info.parent_video)."""
    service, workers = running
    workers.start()
    simulator.state.set_default(QUICK)
    parent = make_parent(service, "parent-r")
    (parent_video,) = parent["task_result"]["videos"]
    created = extend(service, {"video_id": parent_video["id"], "external_task_id": "ext-r"})
    assert created.status_code == 200, created.text
    archived(service, "ext-r")
    workers.stop()
    service.services.redis.flushdb()

    recovered = run(service.app, "recover", "--since", "1h")
    assert recovered.exit_code == 0, recovered.output
    extensions = service.http.get("/v1/tasks/parent-r").json()["data"]["extensions"]
    assert [(e["external_task_id"], e["video_id"]) for e in extensions] == [("ext-r", parent_video["id"])]
    assert service.http.get("/v1/tasks/ext-r").json()["data"]["parent_task"]["external_task_id"] == "parent-r"
