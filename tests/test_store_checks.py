"""What a create body names, checked against what the service has recorded: a video Kling cannot extend
(an effect's, a multi-image video's, a unified task's) refused naming its maker's type; the store's
problems (a video or session not the caller's, a taken external_task_id) reported together with the
body's own, in one 400; lip-sync's and identify-face's video held to Kling's 30 days and its lengths."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Service
from tests.test_tenants import KEY_A, KEY_B, TENANTS, bearer
from tests.test_video_extend import STUCK, extend, kling_says
from webhook_service.domain.callbacks import receive_callback
from webhook_service.domain.tenants import upstream_id

IMAGE = "https://example.com/a.jpg"
DAY_MS = 86400_000
LIP_SYNC = "/v1/videos/lip-sync"
IDENTIFY = "/v1/videos/identify-face"
SPEECH = {"mode": "text2video", "text": "Hello there", "voice_id": "uk_man2"}


def create(service: Service, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    answer = service.http.post(path, json=body, headers=headers or {})
    assert answer.status_code == 200, answer.text


def errors(answer: httpx.Response) -> set[tuple[str, str]]:
    assert answer.status_code == 400, answer.text
    return {(e["field"], e["code"]) for e in answer.json()["errors"]}


def made(service: Service, external_id: str, video_id: str, duration: str = "5.1", **when: int) -> None:
    """Kling's success for a /v1 task of the caller's, naming one video of that length."""
    kling_says(service, external_id, id=video_id, duration=duration, **when)


def test_a_video_kling_cannot_extend_is_refused_naming_the_type_that_made_it(
    service: Service, simulator
) -> None:
    simulator.state.set_default(STUCK)
    create(
        service,
        "/v1/videos/effects",
        {"effect_scene": "hug_pro", "input": {"images": [IMAGE, IMAGE]}, "external_task_id": "fx"},
    )
    create(
        service,
        "/v1/videos/multi-image2video",
        {"image_list": [{"image": IMAGE}], "prompt": "a dog", "external_task_id": "mi"},
    )
    create(service, "/text-to-video/kling-3.0", {"prompt": "a kite", "options": {"external_task_id": "u3"}})
    create(service, "/v1/videos/image2video", {"image": IMAGE, "external_task_id": "i2v"})
    made(service, "fx", "fx-video")
    made(service, "mi", "mi-video")
    made(service, "i2v", "i2v-video")
    unified = service.services.store.get("u3")
    assert unified is not None and unified.task_id
    body = {
        "id": unified.task_id,
        "status": "succeeded",
        "external_id": "u3",
        "update_time": int(time.time() * 1000),
    }
    body["outputs"] = [
        {"type": "video", "id": "u3-video", "url": "https://example.com/v.mp4", "duration": "5"}
    ]
    receive_callback(service.services, "u3", body)

    for video_id, maker in (
        ("fx-video", "effects"),
        ("mi-video", "multi-image2video"),
        ("u3-video", "kling-3.0-text-to-video"),
    ):
        answer = extend(service, {"video_id": video_id})
        assert answer.json()["errors"] == [
            {
                "field": "video_id",
                "code": "not_supported",
                "message": f"was made by a task of type {maker}: Kling extends only videos made by "
                "text2video, image2video or an earlier video-extend",
            }
        ]
    assert not [t for t in simulator.state.tasks() if t["type"] == "video-extend"]  # nothing was sent
    # image2video's video is one Kling extends: the service sends it (the simulator, which never made
    # the video this test reported, refuses it in Kling's own words).
    sent = extend(service, {"video_id": "i2v-video"}).json()
    assert "errors" not in sent and sent["message"] == "video_id 'i2v-video' is not a video of this account"


def test_the_store_s_problems_come_in_the_same_answer_as_the_body_s_own(services_with, simulator) -> None:
    simulator.state.set_default(STUCK)
    service = services_with(**TENANTS)
    team_a, team_b = bearer(KEY_A), bearer(KEY_B)
    create(service, "/v1/videos/text2video", {"prompt": "a kite", "external_task_id": "job-a"}, team_a)
    made(service, upstream_id("team-a", "job-a"), "a-video")

    def refused(path: str, body: dict[str, Any], headers: dict[str, str] = team_b) -> set[tuple[str, str]]:
        return errors(service.http.post(path, json=body, headers=headers))

    # Team B names team A's video with a misspelt field beside it: both come back at once.
    assert refused("/v1/videos/video-extend", {"video_id": "a-video", "promt": "on"}) == {
        ("promt", "unknown_field"),
        ("video_id", "not_yours"),
    }
    lip_sync = {"input": {**SPEECH, "video_id": "a-video", "voise_id": "x"}}
    assert refused(LIP_SYNC, lip_sync) == {
        ("input.voise_id", "unknown_field"),
        ("input.video_id", "not_yours"),
    }
    face = {"session_id": "never-given", "face_choose": [], "external_task_id": "with space"}
    assert refused("/v1/videos/advanced-lip-sync", face) == {
        ("face_choose", "too_few"),
        ("external_task_id", "format"),
        ("session_id", "not_yours"),
    }
    # Team A's own external_task_id, used again, with another problem: `taken` with it.
    again = {"prompt": "", "external_task_id": "job-a"}
    assert refused("/v1/videos/text2video", again, team_a) == {
        ("prompt", "too_short"),
        ("external_task_id", "taken"),
    }
    unified = {"prompt": "x", "settings": {"duration": "5"}, "options": {"external_task_id": "job-a"}}
    create(
        service, "/text-to-video/kling-3.0", {"prompt": "x", "options": {"external_task_id": "u-a"}}, team_a
    )
    unified["options"]["external_task_id"] = "u-a"
    assert refused("/text-to-video/kling-3.0", unified, team_a) == {
        ("settings.duration", "type"),
        ("options.external_task_id", "taken"),
    }
    # A malformed id is the body's problem only: nothing is looked up with it.
    assert refused("/v1/videos/video-extend", {"video_id": "a b", "mode": "pro"}) == {
        ("video_id", "format"),
        ("mode", "unknown_field"),
    }
    assert [t["type"] for t in simulator.state.tasks()] == ["text2video", "text2video"]  # nothing else sent


def test_lip_sync_and_identify_face_take_only_videos_kling_documents_they_can(
    service: Service, simulator
) -> None:
    simulator.state.set_default(STUCK)
    old = int(time.time() * 1000) - 31 * DAY_MS
    for name, duration, when in (
        ("five", "5.1", {}),
        ("ten", "10.2", {}),
        ("three", "3.0", {}),
        ("fifteen", "15.1", {}),
        ("long", "61", {}),
        ("old", "5.1", {"updated_at": old}),
    ):
        create(service, "/v1/videos/text2video", {"prompt": "a face", "external_task_id": name})
        made(service, name, f"{name}-video", duration, **when)

    def lip_sync(video_id: str) -> httpx.Response:
        return service.http.post(LIP_SYNC, json={"input": {**SPEECH, "video_id": video_id}})

    assert errors(lip_sync("three-video")) == {("input.video_id", "too_short")}
    assert errors(lip_sync("fifteen-video")) == {("input.video_id", "too_long")}
    assert errors(lip_sync("old-video")) == {("input.video_id", "expired")}
    too_long = lip_sync("fifteen-video").json()["errors"][0]["message"]
    assert too_long == "is 15.1 s long: Kling lip-syncs videos of 5 to 10 s only"
    assert "cannot lip-sync it" in lip_sync("old-video").json()["errors"][0]["message"]
    assert not [t for t in simulator.state.tasks() if t["type"] == "lip-sync"]
    assert lip_sync("five-video").status_code == 200 and lip_sync("ten-video").status_code == 200

    def identify(video_id: str) -> httpx.Response:
        return service.http.post(IDENTIFY, json={"video_id": video_id})

    assert errors(identify("long-video")) == {("video_id", "too_long")}
    assert errors(identify("old-video")) == {("video_id", "expired")}
    assert simulator.state.face_sessions() == []
    # Up to 60 s for faces: sent to Kling (whose simulator never made the video, and says so).
    assert "errors" not in identify("fifteen-video").json()
