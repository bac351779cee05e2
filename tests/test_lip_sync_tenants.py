"""Lip-sync between tenants sharing one Kling account: a tenant lip-syncs, and reads the faces of, only
videos of its own tasks (another tenant's video is refused word for word as an unknown one, and
nothing reaches Kling), any video by its URL, and names in advanced lip-sync only a face session that
identify-face answered to it, kept for the 24 hours Kling keeps a session."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Service
from tests.test_lip_sync import ADVANCED, FACE, IDENTIFY, LIP_SYNC, SUCCEED, TEXT_INPUT, VIDEO_URL
from tests.test_tenants import KEY_A, KEY_ADMIN, KEY_B, TENANTS, bearer
from tests.test_video_extend import make_parent
from webhook_service.domain.ownership import FACE_SESSION_TTL_S

A, B, ADMIN = bearer(KEY_A), bearer(KEY_B), bearer(KEY_ADMIN)
BY_ID = {key: value for key, value in TEXT_INPUT.items() if key != "video_url"}
SPOKEN = {**FACE, "audio_id": "825451760499568680"}


def upstream_ids(simulator: Any) -> list[str]:
    """The external_task_ids of the tasks Kling was asked to create, oldest first."""
    return [task["external_task_id"] for task in simulator.state.tasks()]


def without_request_id(answer: httpx.Response) -> tuple[int, dict[str, Any]]:
    return answer.status_code, {key: value for key, value in answer.json().items() if key != "request_id"}


def test_a_tenant_lip_syncs_and_identifies_faces_only_in_its_own_videos(
    services_with: Any, simulator: Any
) -> None:
    simulator.state.set_default(SUCCEED)
    service: Service = services_with(**TENANTS)
    video = make_parent(service, "job-1", A)["task_result"]["videos"][0]["id"]

    def lip_sync(video_id: str, headers: dict[str, str]) -> httpx.Response:
        body = {"input": {**BY_ID, "video_id": video_id}, "external_task_id": "ls-1"}
        return service.http.post(LIP_SYNC, json=body, headers=headers)

    def identify(video_id: str, headers: dict[str, str]) -> httpx.Response:
        return service.http.post(f"/kling{IDENTIFY}", json={"video_id": video_id}, headers=headers)

    for ask, field in ((lip_sync, "input.video_id"), (identify, "video_id")):
        status, theirs = without_request_id(ask(video, B))
        assert status == 400 and theirs["code"] == 1201
        (problem,) = theirs["errors"]
        assert (problem["field"], problem["code"]) == (field, "not_yours")
        assert problem["message"].startswith("is not a video of one of your tasks")
        assert problem["message"].endswith(f"or send the video itself as {field.replace('_id', '_url')}")
        assert without_request_id(ask("no-such-video", B)) == (400, theirs)  # word for word
        # An admin acts as its own tenant here: Kling would act on any video of the account.
        assert ask(video, ADMIN).status_code == 400
    assert upstream_ids(simulator) == ["team-a~job-1"] and simulator.state.face_sessions() == []

    # A video by its URL is the caller's own file; A's own video by its id is A's to use.
    by_url = {"input": TEXT_INPUT, "external_task_id": "b-by-url"}
    assert service.http.post(LIP_SYNC, json=by_url, headers=B).status_code == 200
    assert service.http.post(IDENTIFY, json={"video_url": VIDEO_URL}, headers=B).status_code == 200
    mine = lip_sync(video, A)
    assert mine.status_code == 200, mine.text
    faces = identify(video, A)
    assert faces.status_code == 200 and faces.json()["data"]["face_data"], faces.text
    assert upstream_ids(simulator) == ["team-a~job-1", "team-b~b-by-url", "team-a~ls-1"]


def test_a_face_session_is_named_only_by_the_tenant_it_was_answered_to(
    services_with: Any, simulator: Any
) -> None:
    simulator.state.set_default(SUCCEED)
    service: Service = services_with(**TENANTS)
    answered = service.http.post(IDENTIFY, json={"video_url": VIDEO_URL}, headers=A)
    assert answered.status_code == 200, answered.text
    session = answered.json()["data"]["session_id"]
    redis, key = service.services.redis, service.services.keys.face_session(session)
    assert redis.get(key) == b"team-a"
    assert FACE_SESSION_TTL_S - 60 < redis.ttl(key) <= FACE_SESSION_TTL_S == 24 * 3600  # then it goes

    def advanced(session_id: str, headers: dict[str, str], name: str) -> httpx.Response:
        body = {"session_id": session_id, "face_choose": [SPOKEN], "external_task_id": name}
        return service.http.post(ADVANCED, json=body, headers=headers)

    status, theirs = without_request_id(advanced(session, B, "b-1"))
    assert status == 400 and theirs["code"] == 1201
    assert [(e["field"], e["code"]) for e in theirs["errors"]] == [("session_id", "not_yours")]
    assert "identify-face" in theirs["errors"][0]["message"]
    assert without_request_id(advanced("no-such-session", B, "b-1")) == (400, theirs)
    assert advanced(session, ADMIN, "ops-1").status_code == 400
    assert upstream_ids(simulator) == []

    mine = advanced(session, A, "a-1")
    assert mine.status_code == 200, mine.text
    (sent,) = simulator.state.tasks()
    assert sent["external_task_id"] == "team-a~a-1" and sent["request"]["session_id"] == session
